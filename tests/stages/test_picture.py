"""`imgproxy.picture` (SPEC §13): parsed, every URL it emits answers 200 from a real server in
the type and width it claims; widths are unique and capped at the source's; the `<img>`'s
width/height have the rendition's shape; `alt` is escaped; no store is read."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from imgproxy import ImageProxy, Settings, picture
from tests.support import Serve, images, settings_for


class Parsed(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))


def parse(markup: str) -> list[tuple[str, dict[str, str]]]:
    parser = Parsed()
    parser.feed(markup)
    return parser.elements


def candidates(srcset: str) -> list[tuple[str, int]]:
    found = []
    for item in srcset.split(","):
        url, width = item.strip().rsplit(" ", 1)
        found.append((url, int(width.removesuffix("w"))))
    return found


@pytest.fixture
def signed(media: Path) -> Settings:
    return settings_for(media, security={"keys": ["k1"]})


@pytest.mark.parametrize(
    ("params", "source", "shape"),
    [
        ({}, (640, 480), 640 / 480),
        ({"h": 100, "fit": "cover"}, (640, 480), 200 / 100),
        ({"q": 70}, None, None),  # the source's size unknown: no width/height attributes
    ],
)
def test_every_url_answers_in_the_claimed_type_and_width(
    media: Path,
    serve: Serve,
    signed: Settings,
    params: dict[str, Any],
    source: tuple[int, int] | None,
    shape: float | None,
) -> None:
    width, height = source if source else (None, None)
    markup = picture(
        "media",
        "photo.jpg",
        widths=[200, 400, 400, 1200, 200],
        settings=signed,
        mount="/m",
        alt='a "photo" <script>',
        width=width,
        height=height,
        **params,
    )
    elements = parse(markup)
    assert [tag for tag, _ in elements] == ["picture", "source", "source", "img"]
    (_, avif), (_, webp), (_, img) = elements[1:]
    assert (avif["type"], webp["type"]) == ("image/avif", "image/webp")
    assert img["alt"] == 'a "photo" <script>' and "<script>" not in markup
    assert (img["loading"], img["decoding"], img["sizes"]) == ("lazy", "async", "100vw")
    proxy = ImageProxy(signed)
    with httpx.Client(base_url=serve(proxy).url, timeout=30) as http:
        for attributes, media_type in (
            (avif, "image/avif"),
            (webp, "image/webp"),
            (img, "image/jpeg"),
        ):
            listed = candidates(attributes["srcset"])
            widths = [w for _, w in listed]
            assert widths == sorted(set(widths))  # no duplicates
            if source:
                assert widths == [200, 400, 640]  # 1200 is capped at the source's 640
            for url, claimed in listed:
                response = http.get(url.removeprefix("/m"))
                assert response.status_code == 200, url
                assert response.headers["content-type"] == media_type
                got = images.decode(response.content).size
                # Unknown source size: a candidate past the source comes back at its size
                # (never enlarged); known: candidates were capped, so exactly as claimed.
                assert got[0] == (claimed if source else min(claimed, 640)), (url, got)
                if shape is not None:
                    assert abs(got[0] / got[1] - shape) < 0.02
        src = http.get(img["src"].removeprefix("/m"))
        assert src.status_code == 200
    if shape is None:
        assert "width" not in img
    else:
        assert abs(int(img["width"]) / int(img["height"]) - shape) < 0.01
        assert int(img["width"]) == widths[-1]


def test_no_store_is_read(signed: Settings) -> None:
    """The source need not exist: picture() builds URLs from settings alone."""
    markup = picture("media", "gone/never.png", widths="320, 640", settings=signed)
    assert markup.count("320w") == 3 and markup.count("640w") == 3


def test_widths_are_checked(signed: Settings) -> None:
    with pytest.raises(ValueError, match="widths"):
        picture("media", "a.jpg", widths=[], settings=signed)
    with pytest.raises(ValueError, match="widths"):
        picture("media", "a.jpg", widths=[0, 100], settings=signed)


def test_the_jinja_global_is_markup_not_escaped_twice(signed: Settings) -> None:
    import jinja2

    from imgproxy.contrib.jinja import install

    env = jinja2.Environment(autoescape=True)
    install(env.globals, signed, mount="/media")
    page = env.from_string(
        "{{ imgproxy_picture('media', 'photo.jpg', widths=[100, 200], alt=title) }}"
    ).render(title="<b>x</b>")
    assert page.startswith("<picture><source") and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "&amp;lt;" not in page


def test_no_candidate_passes_the_output_limit_and_unknowns_are_unknown(
    media: Path, serve: Serve, signed: Settings
) -> None:
    """h scales with the widths: a tall box capped by max_output_dimension keeps its shape
    (every URL still answers 200); a width of 0 is "unknown", and alt=None is empty."""
    markup = picture(
        "media",
        "photo.jpg",
        widths=[200, 3000, 9000],
        settings=signed,
        h=400,
        fit="cover",
        width=0,
        height=0,
        alt=None,
    )
    elements = parse(markup)
    img = elements[-1][1]
    assert img["alt"] == "" and "width" in img  # the box's shape is still known
    with httpx.Client(base_url=serve(ImageProxy(signed)).url, timeout=30) as http:
        urls = [url for _, attrs in elements[1:] for url, _ in candidates(attrs["srcset"])]
        for url in [*urls, img["src"]]:
            assert http.get(url).status_code == 200, url
    assert "w=0" not in markup


# What browsers that show neither AVIF nor WebP send for an <img> (old Safari, IE 11), and
# what a client that names no image type sends.
LEGACY_ACCEPTS = ("image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5", "*/*")


@pytest.mark.parametrize(
    ("name", "image", "fallback"),
    [
        (
            "alpha.webp",
            images.encode(images.decode(images.rgba_png((320, 240))), "WEBP"),
            "image/png",
        ),
        ("opaque.webp", images.encode(images.photo((320, 240)), "WEBP"), "image/jpeg"),
        ("opaque.avif", images.encode(images.photo((320, 240)), "AVIF"), "image/jpeg"),
        (
            "no-extension",
            images.encode(images.decode(images.rgba_png((320, 240))), "WEBP"),
            "image/png",
        ),
        ("photo.jpg", images.jpeg((320, 240)), "image/jpeg"),
        ("alpha.png", images.rgba_png((320, 240)), "image/png"),
    ],
)
def test_the_img_is_one_every_browser_shows(
    media: Path, serve: Serve, signed: Settings, name: str, image: bytes, fallback: str
) -> None:
    """SPEC §13: the `<img>` of a WebP or AVIF source is a JPEG, or a PNG when the source has
    alpha, for every browser that reaches it; the `<source>`s stay AVIF and WebP."""
    (media / name).write_bytes(image)
    elements = parse(picture("media", name, widths=[100, 200], settings=signed))
    (_, avif), (_, webp), (_, img) = elements[1:]
    urls = [url for url, _ in candidates(img["srcset"])] + [img["src"]]
    with httpx.Client(base_url=serve(ImageProxy(signed)).url, timeout=30) as http:
        for accept in LEGACY_ACCEPTS:
            for url in urls:
                answer = http.get(url, headers={"accept": accept})
                assert answer.status_code == 200, url
                assert answer.headers["content-type"] == fallback, (url, accept)
                assert images.decode(answer.content).format == fallback.split("/")[1].upper()
        for attributes, media_type in ((avif, "image/avif"), (webp, "image/webp")):
            for url, _ in candidates(attributes["srcset"]):
                assert http.get(url).headers["content-type"] == media_type
