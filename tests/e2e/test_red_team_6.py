"""Red-team findings against SPEC §11.1 (every resource bounded), sixth pass."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from imgproxy.asgi import ImageProxy
from imgproxy.job import MarkJob
from imgproxy.render.budget import Budget
from imgproxy.render.watermark import ScaledMarks
from imgproxy.response import content_disposition
from tests.support import images, settings_for

MEMO_LIMIT = 256 * 1024
TIER_BYTES = 512 * 1024


def test_scaled_marks_hold_no_more_than_their_bound() -> None:
    """The scaled-mark memo counted only pixels: an output too small for the mark inside its
    margins kept a None weighing 0 bytes, and a mark scaled to a few pixels weighed a few
    bytes for a kilobyte held. Every `wm=` URL picks its output size, so distinct small sizes
    (w=1..32 under a 16 px margin: 131,072 of them) grew a render process by 33 MB past the
    16 MiB bound, counted as nothing. Sent here from 8 render threads at once."""
    mark_png = images.encode(Image.new("RGBA", (200, 50), (255, 0, 0, 128)), "PNG")
    mark = MarkJob(
        "se", 0.6, 0.2, 16, None, 50_000_000, (200, 50), len(mark_png), ("m", "logo.png", "v1")
    )
    kept = ScaledMarks(MEMO_LIMIT)
    unfit = [(w, h) for w in range(1, 33) for h in range(1, 201)]  # inside the margins: None
    tiny = [(w, h) for w in range(40, 80) for h in range(33, 73)]  # marks of a few pixels

    def scale(output: tuple[int, int]) -> None:
        kept.get(mark, mark_png, output, Budget(10))

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(scale, unfit + tiny))
        gc.collect()  # a decode's reference cycles: garbage, not held
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept.bytes <= MEMO_LIMIT
    assert held < MEMO_LIMIT * 3 // 2, f"{held >> 10} KiB held by a {MEMO_LIMIT >> 10} KiB memo"


def _held_after(media: Path, name: str, memory_bytes: int) -> int:
    """Bytes a proxy holds after 4 URLs (a thumbor URL under four cache-busters, which thumbor
    ignores) asked each of 250 tiny renditions, 96 clients at once."""
    settings = settings_for(
        media,
        cache={"memory_bytes": memory_bytes},
        dialects={"thumbor": {"store": "media", "allow_unsafe": True}},
    )
    urls = [
        f"/thumbor/unsafe/{1 + n % 50}x{1 + n // 50}/{name}?cb={r}"
        for n in range(250)
        for r in range(4)
    ]

    async def flood(proxy: ImageProxy) -> None:
        transport = httpx.ASGITransport(app=proxy)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            gate = asyncio.Semaphore(96)

            async def one(url: str) -> None:
                async with gate:
                    assert (await client.get(url)).status_code == 200

            await asyncio.gather(*(one(url) for url in urls))

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        proxy = ImageProxy(settings)
        asyncio.run(flood(proxy))
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_ready_responses_count_against_the_memory_tier(tmp_path: Path) -> None:
    """The memory tier counted each entry as its body plus 200 B, and each of the up to 4
    ready 200s kept on it (one per URL sharing the rendition) as 400 B; measured, the entry
    holds about 1.3 KB and each ready response about 950 B: renditions each asked by four
    URLs held 2.25 times `cache.memory_bytes`. The tier's share is what the same requests
    leave held with it, less what they leave without one."""
    media = tmp_path / "media"
    media.mkdir()
    name = "p" * 96 + ".jpg"  # a Content-Disposition of 2 x 100 characters: still kept
    (media / name).write_bytes(images.jpeg((64, 48)))
    held = _held_after(media, name, TIER_BYTES) - _held_after(media, name, 0)
    assert held < TIER_BYTES * 11 // 10, f"{held >> 10} KiB held by a {TIER_BYTES >> 10} KiB tier"


def test_headers_sent_again_and_again_hold_no_more_than_their_bound(tmp_path: Path) -> None:
    """The ASGI edge kept each response's encoded header list by the id of its tuple, 8192 of
    them whatever their size: an original's headers are a new tuple each time, so one URL
    asked over and over filled it (a 250-byte file name: 3.3 KB each, 27 MB a worker; an
    http store's 2,000-character name: 41 MB). 3000 HEADs of one original, 32 at once."""
    media = tmp_path / "media"
    media.mkdir()
    name = "n" * 246 + ".jpg"
    (media / name).write_bytes(images.jpeg((64, 48)))
    proxy = ImageProxy(settings_for(media))

    async def heads() -> int:
        transport = httpx.ASGITransport(app=proxy)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            assert (await client.head(f"/media/{name}")).status_code == 200
            gate = asyncio.Semaphore(32)

            async def one(_: int) -> None:
                async with gate:
                    assert (await client.head(f"/media/{name}")).status_code == 200

            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            await asyncio.gather(*(one(n) for n in range(3000)))
            gc.collect()
            return tracemalloc.get_traced_memory()[0] - before

    tracemalloc.start()
    try:
        held = asyncio.run(heads())
    finally:
        tracemalloc.stop()
    assert held < 4 * 2**20, f"{held >> 20} MiB held after 3000 HEADs of one URL"


MEMO_CHARS = 256 * 1024


def test_distinct_long_names_hold_no_more_than_the_memos_weigh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variant keeps its headers, where the stored name comes back escaped (Content-
    Disposition: up to 9 characters a character of the name), but the variants' memo weighed
    its URL only, and Content-Disposition had a cache of its own, 4096 names counted and not
    weighed (with an http store's 2,000-character names, 16 MB a worker). 2000 originals with
    248-byte non-ASCII names, 32 HEADs at once, with the memos' weight bound made small: the
    text the variants keep is within it, and the names' headers are kept nowhere else."""
    for module in ("imgproxy.targets", "imgproxy.variant"):
        monkeypatch.setattr(f"{module}.URL_CHARS", MEMO_CHARS)
    media = tmp_path / "media"
    media.mkdir()
    first = media / "first.png"
    first.write_bytes(images.encode(Image.new("RGB", (4, 4)), "PNG"))
    names = [f"{'é' * 120}{n:04d}.png" for n in range(2000)]
    for name in names:
        (media / name).hardlink_to(first)
    proxy = ImageProxy(settings_for(media))

    async def heads() -> None:
        transport = httpx.ASGITransport(app=proxy)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            gate = asyncio.Semaphore(32)

            async def one(name: str) -> None:
                async with gate:
                    assert (await client.head(f"/media/{quote(name)}")).status_code == 200

            await asyncio.gather(*(one(name) for name in names))

    asyncio.run(heads())
    text = 0
    for ident, variant in proxy.services.variants._known.items():
        key = ident[0]  # the Target's key: its raw path and query
        assert isinstance(key, tuple)
        text += sum(map(len, key)) + sum(len(k) + len(v) for k, v in variant.headers)
    assert 0 < text <= MEMO_CHARS, f"{text} characters of URLs and headers kept"
    # Written for a name, dropped by its variant: nothing of it stays.
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for name in names:
            content_disposition(name, "webp")
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 64 * 1024, f"{held >> 10} KiB kept by 2000 names' Content-Disposition"
