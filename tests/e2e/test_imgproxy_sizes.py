"""imgproxy URLs whose sizes depend on the source's (SPEC §15.3), against a real `imgproxy
serve`: imgproxy's own expected sizes (its processing_test.go, on its 200x100 geometry.png),
in URLs made by the PyPI builder; where the image lands on the canvas; and the same
rendition as the native URL that says the same, whichever is asked first."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from tests.e2e.test_imgproxy_urls import KEY, SALT, case, sign
from tests.support import images, write_config
from tests.support.foreign_builder import build_urls
from tests.support.processes import Served, served

RED, BLUE = (255, 0, 0), (0, 0, 255)

# imgproxy's processing_test.go (v4), source 200x100: (width, height) -> the output size,
# for each resizing type, plain, with enlarge, and with extend.
FIT = {
    "": [(50, 50, 50, 25), (50, 20, 40, 20), (20, 50, 20, 10), (300, 300, 200, 100),
         (300, 50, 100, 50), (100, 300, 100, 50), (0, 50, 100, 50), (50, 0, 50, 25),
         (0, 200, 200, 100), (300, 0, 200, 100)],
    "el": [(50, 50, 50, 25), (50, 20, 40, 20), (20, 50, 20, 10), (300, 300, 300, 150),
           (300, 125, 250, 125), (250, 300, 250, 125), (0, 50, 100, 50), (50, 0, 50, 25),
           (0, 200, 400, 200), (300, 0, 300, 150)],
    "ex": [(50, 50, 50, 50), (50, 20, 50, 20), (20, 50, 20, 50), (300, 300, 300, 300),
           (300, 125, 300, 125), (250, 300, 250, 300), (0, 50, 100, 50), (50, 0, 50, 25),
           (0, 200, 200, 200), (300, 0, 300, 100)],
}  # fmt: skip
FILL = {
    "": [(50, 50, 50, 50), (50, 20, 50, 20), (20, 50, 20, 50), (300, 300, 200, 100),
         (300, 50, 200, 50), (100, 300, 100, 100), (0, 50, 100, 50), (50, 0, 50, 25),
         (0, 200, 200, 100), (300, 0, 200, 100)],
    "el": [(50, 50, 50, 50), (50, 20, 50, 20), (20, 50, 20, 50), (300, 300, 300, 300),
           (300, 125, 300, 125), (250, 300, 250, 300), (0, 50, 100, 50), (50, 0, 50, 25),
           (0, 200, 400, 200), (300, 0, 300, 150)],
    "ex": [(50, 50, 50, 50), (50, 20, 50, 20), (20, 50, 20, 50), (300, 300, 300, 300),
           (300, 125, 300, 125), (250, 300, 250, 300), (300, 50, 300, 50),
           (100, 300, 100, 300), (0, 50, 100, 50), (50, 0, 50, 25), (0, 200, 200, 200),
           (300, 0, 300, 100)],
}  # fmt: skip
FILL_DOWN = {
    "": [(50, 50, 50, 50), (50, 20, 50, 20), (20, 50, 20, 50), (300, 300, 100, 100),
         (300, 125, 200, 83), (250, 300, 83, 100), (0, 50, 100, 50), (50, 0, 50, 25),
         (0, 200, 200, 100), (300, 0, 200, 100)],
    "el": FILL["el"],
    "ex": FILL["ex"],
}  # fmt: skip
IMGPROXY_SIZES = [
    (kind, extra, (w, h), (ow, oh))
    for kind, table in (("fit", FIT), ("fill", FILL), ("fill-down", FILL_DOWN))
    for extra, rows in table.items()
    for w, h, ow, oh in rows
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("imgproxy-sizes")
    media = root / "media"
    media.mkdir()
    geometry = Image.new("RGB", (200, 100), RED)
    geometry.paste(BLUE, (100, 0, 200, 100))  # left half red, right half blue
    geometry.save(media / "geometry.png")
    for name in ("photo.jpg", *(f"photo{n}.jpg" for n in range(8))):
        (media / name).write_bytes(images.jpeg((640, 480)))
    for index in range(8):
        Image.new("RGB", (200, 100), RED).save(media / f"fresh{index}.png")
    for width, height in ((1, 9), (2000, 3), (1, 1), (7, 5)):
        Image.new("RGB", (width, height), RED).save(media / f"s{width}x{height}.png")
    config = write_config(
        root, media, **{"dialects.imgproxy": {"store": "media", "keys": [KEY], "salts": [SALT]}}
    )
    with served(config) as running:
        yield running
    assert "Traceback" not in running.stderr, running.stderr[-3000:]


def size_of(response: httpx.Response) -> tuple[int, int]:
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content)).size


def test_imgproxys_own_expected_sizes(server: Served) -> None:
    cases = [
        case("geometry.png", *(["ex:1"] if extra == "ex" else []), width=w, height=h,
             resizing_type=kind, enlarge=extra == "el")
        for kind, extra, (w, h), _ in IMGPROXY_SIZES
    ]  # fmt: skip
    urls = build_urls(KEY, SALT, cases)
    with httpx.Client(base_url=server.url + "/imgproxy", timeout=30) as http:
        got = {url: size_of(http.get(url)) for url in urls}
    want = {url: expected for url, (*_, expected) in zip(urls, IMGPROXY_SIZES, strict=True)}
    assert got == want
    assert len(want) == 94


@pytest.mark.parametrize(
    ("options", "size"),
    [
        ("rs:force:50:0", (50, 100)),  # force keeps the source's side where the box's is 0
        ("rs:force:0:40", (200, 40)),
        ("rs:force:400:50", (200, 25)),  # no enlarge: scaled back until no side grows
        ("rs:force:400:50:1", (400, 50)),
        ("dpr:2/el:1", (400, 200)),  # dpr without a box enlarges, with enlarge only
        ("dpr:2", (200, 100)),
        ("rs:fill:300:50/rot:90", (100, 50)),  # sized after the rotation (100x200)
        ("rs:auto:300:50", (200, 50)),  # auto is fill for two landscapes
        ("rs:fill:300:50:0:1/pd:5", (310, 60)),  # imgproxy's padding after the extension
        # without enlarge, dpr is capped to what the source allows (1 here), and so are
        # the extension's box and the padding it scales
        ("rs:fit:300:300/dpr:2/pd:10", (220, 120)),
        ("rs:fit:300:300:0:1/dpr:2", (300, 300)),
        ("rs:fill:300:300:0:1/dpr:3/pd:1:2", (304, 302)),
        ("dpr:2/pd:5", (210, 110)),
        ("rs:fit:100:50/dpr:3/pd:5", (220, 120)),  # capped to 2, the source's 200x100
        ("rs:fit:300:300:1/dpr:2/pd:5", (620, 320)),  # enlarge: the whole dpr
    ],
)
def test_sizes_imgproxy_documents(server: Served, options: str, size: tuple[int, int]) -> None:
    assert size_of(httpx.get(server.url + sign(f"/{options}/plain/geometry.png"))) == size


@pytest.mark.parametrize(
    ("options", "source", "size"),
    [
        # A fill-down crop side that rounds to 0 px is no crop on that side: the whole 1x9.
        ("rs:fill-down:234:59", "1x9", (1, 9)),
        # Extended to the whole box, a longer side cut to it from its start (3x2000 turned).
        ("rs:fill-down:355:8:0:1/dpr:1.5/rot:270", "2000x3", (355, 8)),
        # Enlarged from one pixel: the region kept is at least that pixel.
        ("rs:auto:87:34:1:1/dpr:1.5/rot:180", "1x1", (131, 51)),
        # Each side scaled by its own factor, halves rounded up as Go rounds them.
        ("rs:fill:0:1947:1/dpr:1.5", "7x5", (4089, 2921)),
    ],
)
def test_sizes_on_extreme_sources(
    server: Served, options: str, source: str, size: tuple[int, int]
) -> None:
    """Cases an independent model of imgproxy's sizing (written from its Go source) found
    answered otherwise here, over thousands of random URLs."""
    assert size_of(httpx.get(server.url + sign(f"/{options}/plain/s{source}.png"))) == size


def colour(image: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    pixel = image.convert("RGB").getpixel((x, y))
    assert isinstance(pixel, tuple)
    return (pixel[0], pixel[1], pixel[2])


def test_the_image_is_kept_by_gravity_and_extended_about_the_centre(server: Served) -> None:
    def get(options: str) -> Image.Image:
        response = httpx.get(server.url + sign(f"/{options}/plain/geometry.png"))
        assert response.status_code == 200, response.text
        return Image.open(io.BytesIO(response.content))

    west = get("rs:fill:60:100/g:we/f:png")  # 200x100 cut to 60x100 on its red side
    assert west.size == (60, 100) and colour(west, 55, 50) == RED
    east = get("rs:fill:60:100/g:ea/f:png")
    assert east.size == (60, 100) and colour(east, 4, 50) == BLUE
    framed = get("rs:fill:300:300:0:1/bg:00ff00/f:png")  # centred: 100 px above and below
    assert framed.size == (300, 300)
    assert colour(framed, 150, 99) == (0, 255, 0) and colour(framed, 150, 200) == (0, 255, 0)
    assert colour(framed, 51, 100) == RED and colour(framed, 249, 199) == BLUE
    assert colour(framed, 49, 150) == (0, 255, 0)


@pytest.mark.parametrize("first", ["imgproxy", "native"])
def test_one_rendition_with_the_native_url_that_says_the_same(server: Served, first: str) -> None:
    """A sized imgproxy URL and the native URL it becomes, asked at once on a source neither
    has been asked for, the one or the other first: one answer, the same bytes and ETag. A
    source large enough keeps its plain mapping."""
    n = 0 if first == "imgproxy" else 1
    pairs = [
        # imgproxy's centre: 25.5 px above rounds to even, 26
        ("/rs:fill:300:50/plain/fresh{n}.png",
         "/media/fresh{n}.png?crop=0,26,200,50&w=200&h=50&fit=fill&enlarge=1"),
        ("/rs:fill:300:300:0:1/plain/fresh{n}.png",
         "/media/fresh{n}.png?w=200&h=100&fit=fill&enlarge=1&pad=100,50,100,50"),
        ("/rs:force:50:0/plain/fresh{n}.png", "/media/fresh{n}.png?w=50&h=100&fit=fill&enlarge=1"),
        ("/rs:fill:120:90/plain/photo{n}.jpg", "/media/photo{n}.jpg?w=120&h=90&fit=cover"),
    ]  # fmt: skip

    async def both(urls: list[str]) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            return await asyncio.gather(*(http.get(u) for u in urls * 8))

    for index, (foreign, native) in enumerate(pairs):
        names = {"n": 2 * index + n}
        urls = [sign(foreign.format(**names)), native.format(**names)]
        answers = asyncio.run(both(urls if first == "imgproxy" else urls[::-1]))
        assert {a.status_code for a in answers} == {200}, answers[0].text
        assert len({a.content for a in answers}) == 1, foreign
        assert len({a.headers["etag"] for a in answers}) == 1, foreign


def test_sized_urls_past_the_limits_many_at_once(server: Served) -> None:
    """Sizes a URL takes from the source (dpr, extend, force, enlarge) stay within
    limits.max_output_dimension (4096 here) and max_output_pixels: 48 such URLs at once get
    their answer or a 400, never a 500, and the server answers on."""
    options = [
        "dpr:4/el:1", "rs:fill:4000:4000:1/dpr:4", "rs:force:4096:0:1/dpr:3",
        "rs:fit:4096:4096:1:1", "rs:fill:4096:10:0:1/dpr:4/pd:500", "rs:auto:1:4096:1:1",
    ]  # fmt: skip
    urls = [sign(f"/{o}/plain/{f}") for o in options for f in ("photo.jpg", "s1x9.png")] * 4
    with ThreadPoolExecutor(48) as pool:
        answers = list(pool.map(lambda u: httpx.get(server.url + u, timeout=60), urls))
    assert {a.status_code for a in answers} <= {200, 400}
    assert 400 in {a.status_code for a in answers}
    for answer in answers:
        if answer.status_code == 200:
            assert max(size_of(answer)) <= 4096
    assert httpx.get(server.url + "/healthz").status_code == 200
