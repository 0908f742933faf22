"""Two URLs that share one cached rendition still get their own headers (SPEC §6), in either
order, through the core, the ASGI app, the WSGI middleware and `imgproxy serve`; and the
responses kept ready for fast hits leave with the memory tier's entries (SPEC §11.1)."""

from __future__ import annotations

import asyncio
import gc
import random
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imgproxy import ImageProxy, pipeline
from imgproxy.messages import ImageRequest, ImageResponse
from imgproxy.services import Services
from imgproxy.wsgi import ImageProxyMiddleware as WsgiMiddleware
from tests.edges.test_edges import call
from tests.support import LiveServer, images, settings_for, write_config
from tests.support.processes import served

WEBP = "image/webp,*/*"
IMMUTABLE = "public, max-age=31536000, immutable"
PLAIN = "public, max-age=86400"

# Pairs of URLs that share one rendition (same ETag), with what each must say on its own:
# (query, Accept, expected Vary, expected Cache-Control).
Expect = tuple[str, str, str | None, str]
PAIRS: dict[str, tuple[Expect, Expect]] = {
    "auto-vs-explicit": (
        ("w=142&fm=webp", WEBP, None, PLAIN),
        ("w=142&fm=auto", WEBP, "Accept", PLAIN),
    ),
    "version-vs-none": (("w=144&v=3", "", None, IMMUTABLE), ("w=144", "", None, PLAIN)),
    "preset-versioned": (("p=small", "", None, PLAIN), ("p=small&v=2", "", None, IMMUTABLE)),
    "jpeg-vs-auto-versioned": (
        ("w=90&fm=jpeg", "image/jpeg", None, PLAIN),
        ("w=90&fm=auto&v=9", "image/jpeg", "Accept", IMMUTABLE),
    ),
    "placeholder-versioned": (
        ("fm=thumbhash", "", None, PLAIN),
        ("fm=thumbhash&v=1", "", None, IMMUTABLE),
    ),
    "metadata-versioned": (("fm=json", "", None, PLAIN), ("fm=json&v=4", "", None, IMMUTABLE)),
}
ORDERS = pytest.mark.parametrize("order", ["given", "reversed"])
CASES = pytest.mark.parametrize("pair", sorted(PAIRS))

Get = Callable[[str, str], tuple[int, dict[str, str], bytes]]


def check_pair(get: Get, pair: str, order: str) -> None:
    """Each URL twice (cold, then a hit), interleaved with the other, in the given order:
    every answer carries that URL's own Vary and Cache-Control, and the same bytes."""
    first, second = PAIRS[pair] if order == "given" else PAIRS[pair][::-1]
    seen: dict[str, tuple[str, bytes]] = {}
    for query, accept, vary, caching in (first, second, first, second):
        status, headers, body = get(query, accept)
        assert status == 200, (query, body[:200])
        assert headers.get("vary") == vary, (query, headers)
        assert headers["cache-control"] == caching, (query, headers)
        seen.setdefault(query, (headers["etag"], body))
        assert (headers["etag"], body) == seen[query]
    (etag_a, body_a), (etag_b, body_b) = seen.values()
    if not pair.startswith("metadata"):  # a metadata answer has its own ETag per version
        assert (etag_a, body_a) == (etag_b, body_b), "the pair no longer shares a rendition"


def core_get(services: Services) -> Get:
    def get(query: str, accept: str) -> tuple[int, dict[str, str], bytes]:
        headers = {"accept": accept} if accept else {}
        request = ImageRequest("GET", "/media/photo.jpg", query, headers)
        response: ImageResponse = asyncio.run(pipeline.serve(services, request))
        return response.status, dict(response.headers), response.body

    return get


@CASES
@ORDERS
def test_the_core_gives_each_url_its_own_headers(media: Path, pair: str, order: str) -> None:
    services = Services.build(settings_for(media))
    check_pair(core_get(services), pair, order)
    asyncio.run(services.close())


def http_get(client: httpx.Client, prefix: str = "") -> Get:
    def get(query: str, accept: str) -> tuple[int, dict[str, str], bytes]:
        headers = {"accept": accept} if accept else {}
        response = client.get(f"{prefix}/media/photo.jpg?{query}", headers=headers)
        return response.status_code, dict(response.headers), response.content

    return get


@CASES
@ORDERS
def test_the_asgi_app_gives_each_url_its_own_headers(
    media: Path, serve: Callable[..., LiveServer], pair: str, order: str
) -> None:
    server = serve(ImageProxy(settings_for(media)))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        check_pair(http_get(client), pair, order)


def wsgi_get(app: WsgiMiddleware) -> Get:
    def get(query: str, accept: str) -> tuple[int, dict[str, str], bytes]:
        extra = {"HTTP_ACCEPT": accept} if accept else {}
        status, headers, body = call(app, "/img/media/photo.jpg", query, **extra)
        return int(status.split()[0]), headers, body

    return get


@CASES
@ORDERS
def test_the_wsgi_middleware_gives_each_url_its_own_headers(
    media: Path, pair: str, order: str
) -> None:
    def host(environ: object, start_response: Callable[..., object]) -> list[bytes]:
        start_response("404 Not Found", [])
        return [b""]

    app = WsgiMiddleware(host, ImageProxy(settings_for(media)), prefix="/img")
    check_pair(wsgi_get(app), pair, order)


def test_the_server_gives_each_url_its_own_headers(media: Path, tmp_path: Path) -> None:
    """Every pair, both orders, against one `imgproxy serve` with two workers: a worker's
    kept responses may have been made for either URL of a pair."""
    config = write_config(tmp_path, media, server={"workers": 2})
    with served(config) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for pair in sorted(PAIRS):
            for order in ("given", "reversed"):
                # A fresh rendition per pair and order: w differs, so nothing is warm yet.
                check_pair(http_get(client), pair, order)


def test_kept_responses_leave_with_the_memory_tier(media: Path) -> None:
    """With an 8 MiB memory tier, 40 distinct ~1.2 MiB renditions, each asked twice (so a
    ready response is kept for its hit), leave at most the tier's budget of bodies alive:
    Python's own allocations, traced, stay within the budget plus a fixed base."""
    noise = Image.frombytes("RGB", (640, 640), random.Random(7).randbytes(640 * 640 * 3))
    (media / "noise.png").write_bytes(images.encode(noise, "PNG"))
    budget = 8 * 1024 * 1024
    services = Services.build(settings_for(media, cache={"memory_bytes": budget}))

    async def flood() -> list[int]:
        sizes = []
        for width in range(560, 600):
            request = ImageRequest("GET", "/media/noise.png", f"w={width}&fm=png")
            response = await pipeline.serve(services, request)
            assert response.status == 200
            again = await pipeline.serve(services, request)
            assert again.body is response.body  # a memory hit
            sizes.append(len(response.body))
        return sizes

    tracemalloc.start()
    try:
        sizes = asyncio.run(flood())
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert min(sizes) > 900_000  # so 40 of them are far more than the budget
    assert held <= budget + 4 * 1024 * 1024, f"{held / 2**20:.1f} MiB held after the flood"
    asyncio.run(services.close())
