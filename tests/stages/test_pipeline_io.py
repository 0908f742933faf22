"""What each path costs: a 304 for a known version reads no byte and renders nothing, a
cache hit renders nothing, concurrent cold requests render once (overload: test_load.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imgproxy import ImageProxy
from tests.support import CountingStore, LiveServer, Serve, settings_for

Counted = tuple[CountingStore, ImageProxy, httpx.Client]


@pytest.fixture
def counted(media: Path, serve: Serve) -> Iterator[Counted]:
    store = CountingStore(media)
    proxy = ImageProxy(settings_for(media), stores={"media": store})
    server: LiveServer = serve(proxy)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield store, proxy, client


@pytest.mark.parametrize(
    "url", ["/media/photo.jpg?w=100", "/media/photo.jpg", "/media/photo.jpg?fm=json"]
)
def test_304_reads_no_bytes_and_renders_nothing(counted: Counted, url: str) -> None:
    store, proxy, client = counted
    first = client.get(url)
    assert first.status_code == 200
    reads, heads, renders = store.reads, store.heads, proxy.services.metrics.renders
    for headers in (
        {"if-none-match": first.headers["etag"]},
        {"if-modified-since": first.headers["last-modified"]},
    ):
        again = client.get(url, headers=headers)
        assert again.status_code == 304
    assert (store.reads, store.heads) == (reads, heads)
    assert proxy.services.metrics.renders == renders
    assert store.stats >= 3  # but the version was looked up every time


def test_cache_hit_reads_nothing_and_renders_nothing(counted: Counted) -> None:
    store, proxy, client = counted
    first = client.get("/media/photo.jpg?w=120")
    reads, heads, renders = store.reads, store.heads, proxy.services.metrics.renders
    assert renders == 1
    for _ in range(5):
        assert client.get("/media/photo.jpg?w=120").content == first.content
        assert client.get("/media/photo.jpg?fit=contain&w=120&enlarge=0").content == first.content
    assert (store.reads, store.heads, proxy.services.metrics.renders) == (reads, heads, renders)


def test_concurrent_cold_requests_render_once(counted: Counted) -> None:
    _store, proxy, client = counted

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=30) as http:
            return await asyncio.gather(
                *(http.get("/media/photo.jpg?w=333&fm=webp") for _ in range(50))
            )

    responses = asyncio.run(burst())
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert proxy.services.metrics.renders == 1
