"""The §15.1 operations through a real `imgproxy serve`: hostile values from many clients at
once are 4xx naming the parameter or the limit, never 500; huge blurs at once all render in
bounded time; explicit defaults share the plain URL's ETag."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support import images
from tests.support.processes import served

CLIENTS = 16
COSTLY = ("trim=0", "trim=255", "pixelate=2", "pixelate=256", "sharpen=10", "blur=100&pad=1024")
HOSTILE = [  # (query, what the 4xx must name)
    ("w=100&rot=45", "rot:"),
    ("w=100&rot=-90", "rot:"),
    ("w=100&rot=99999999999999999999", "rot:"),
    ("w=100&flip=sideways", "flip:"),
    ("w=100&crop=1,2,3", "crop:"),
    ("w=100&crop=-5,0,10,10", "crop:"),
    ("w=100&crop=0,0,0,0", "crop:"),
    ("w=100&crop=5000,0,10,10", "crop:"),  # wholly outside the 640x480 source
    ("w=100&crop=0,0,1e9,1", "crop:"),
    ("w=100&crop=0.5,0.5,2.0,0.5", "crop:"),
    ("w=100&crop=%00,%ff,\u00e9,x", "crop:"),
    ("w=100&trim=256", "trim:"),
    ("w=100&trim=-1", "trim:"),
    ("w=100&blur=100000", "blur:"),
    ("w=100&blur=nan", "blur:"),
    ("w=100&blur=-1", "blur:"),
    ("w=100&blur=0", "blur:"),
    ("w=100&sharpen=1e308", "sharpen:"),
    ("w=100&pixelate=0", "pixelate:"),
    ("w=100&pixelate=65536", "pixelate:"),
    ("w=100&pad=2048", "pad:"),
    ("w=100&pad=1,2,3,-4", "pad:"),
    ("w=100&pad=" + ",".join(["1"] * 1000), "pad:"),
    ("w=4096&enlarge=1&pad=1", "limits.max_output_dimension"),
    ("w=4000&h=4000&fit=pad&pad=1024", "limits.max_output_dimension"),
    ("pad=1024,1024,1024,1024&w=3000&enlarge=1", "limits.max_output_dimension"),
    ("trim=0&w=4000&enlarge=1", "limits.max_output_dimension"),  # known once trimmed
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("operations")
    media = root / "media"
    media.mkdir()
    (media / "photo.jpg").write_bytes(images.jpeg((640, 480)))
    (media / "large.jpg").write_bytes(images.jpeg((2048, 1536)))
    strip = images.photo((1000, 10))
    strip.paste((255, 255, 255), (0, 0, 498, 10))
    strip.paste((255, 255, 255), (502, 0, 1000, 10))
    (media / "strip.png").write_bytes(images.encode(strip, "PNG"))  # trims to 4x10
    config = root / "imgproxy.toml"
    config.write_text(
        '[limits]\nrender_concurrency = 2\n[stores.media]\nkind = "fs"\nroot = "media"\n'
    )
    with served(config) as running:
        yield running.url
    assert "Traceback" not in running.stderr, running.stderr[-3000:]


def test_hostile_values_from_many_clients_are_4xx_naming_the_parameter(server: str) -> None:
    asks = [case for _ in range(3) for case in HOSTILE]

    def ask(case: tuple[str, str]) -> tuple[str, str, int, str]:
        query, named = case
        path = "/media/strip.png" if query.startswith("trim") else "/media/photo.jpg"
        response = httpx.get(f"{server}{path}?{query}", timeout=60)
        return query, named, response.status_code, response.text

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(ask, asks))
    for query, named, status, text in answers:
        assert status == 400, (query, status, text[:300])
        assert named in text, (query, text[:300])
    assert httpx.get(f"{server}/healthz").status_code == 200


def test_huge_blurs_and_costly_operations_at_once_render_in_bounded_time(server: str) -> None:
    """Distinct renditions (no coalescing) of a 2048x1536 output at the largest sigma: a
    blur's work is two resizes and a blur of a copy 1/169 of the output."""
    queries = [f"w=2048&blur={100 - i / 10:g}&q=50" for i in range(CLIENTS)]
    # and the other operations at their costliest: trim reads a whole decode, pixelate's
    # smallest and largest blocks, sharpen's largest sigma
    queries += [f"w={2048 - i}&{op}&q=50" for i, op in enumerate(COSTLY)]

    def ask(query: str) -> tuple[int, float]:
        began = time.perf_counter()
        response = httpx.get(f"{server}/media/large.jpg?{query}", timeout=120)
        assert response.status_code == 200, response.text[:300]
        width = int(query.split("&")[0].removeprefix("w="))
        padded = 2048 if "pad=" in query else 0
        assert images.decode(response.content).width == width + padded
        return response.status_code, time.perf_counter() - began

    began = time.perf_counter()
    with ThreadPoolExecutor(len(queries)) as pool:
        answers = list(pool.map(ask, queries))
    elapsed = time.perf_counter() - began
    print(f"{len(queries)} costly renders of 2048x1536 at once: {elapsed:.1f} s")
    assert [status for status, _ in answers] == [200] * len(queries)
    assert elapsed < 60


def test_operations_share_renditions_as_their_meanings_do(server: str) -> None:
    def etag(query: str) -> str:
        response = httpx.get(f"{server}/media/photo.jpg?{query}")
        assert response.status_code == 200, response.text
        return response.headers["etag"]

    assert etag("w=300") == etag("w=300&rot=0&pad=0&crop=0,0,1.0,1.0")
    assert etag("w=100&crop=160,120,320,240") == etag("w=100&crop=0.25,0.25,0.5,0.5")
    assert etag("w=300") != etag("w=300&rot=90") != etag("w=300&rot=90&flip=h")
    rotated = httpx.get(f"{server}/media/photo.jpg?w=300&rot=90&pad=4&blur=1")
    assert images.decode(rotated.content).size == (300 + 8, 400 + 8)
