"""SPEC §11 under load, as correctness properties (no timings): past the queue a request is
refused before it reads a byte; memory is bounded by the render slots, not by the queue."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from PIL import Image

from imgproxy import StoredFile, pipeline, render
from imgproxy.job import RenderJob
from imgproxy.messages import ImageRequest, ImageResponse
from imgproxy.render import Decoded
from imgproxy.services import Services
from tests.support import CountingStore, settings_for, write_config
from tests.support.processes import sampled_rss, served


class GatedStore(CountingStore):
    """Counts reads, and holds each read at `gate` while it is closed."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = asyncio.Event()
        self.gate.set()

    async def open(self, file: StoredFile) -> AsyncIterator[bytes]:
        self.reads += 1
        await self.gate.wait()
        async for chunk in super(CountingStore, self).open(file):
            yield chunk


def test_past_the_queue_a_request_is_refused_before_it_reads_a_byte(media: Path) -> None:
    store = GatedStore(media)
    # No decode kept past its render: w=11 reads the source rather than sharing w=10's.
    settings = settings_for(
        media, limits={"render_concurrency": 1, "render_queue": 1}, render={"decode_linger": 0}
    )
    services = Services.build(settings, stores={"media": store})

    def get(path: str, query: str) -> asyncio.Task[ImageResponse]:
        request = ImageRequest("GET", path, query)
        return asyncio.get_running_loop().create_task(pipeline.serve(services, request))

    async def scenario() -> None:
        assert (await get("/media/photo.jpg", "w=10")).status == 200  # facts now known
        assert store.reads == 1  # rendering it: its facts were learned from its head
        store.gate.clear()
        running = get("/media/photo.jpg", "w=11")  # takes the slot, held in its read
        while store.reads < 2:
            await asyncio.sleep(0.001)
        waiting = get("/media/photo.jpg", "w=12")  # waits for the slot, holding nothing
        await asyncio.sleep(0.05)
        assert store.reads == 2
        assert services.executor.queued == 1
        for path, query in [
            ("/media/photo.jpg", "w=13"),  # known facts: a render
            ("/media/wide.png", "w=13"),  # never seen: learning needs a slot too
        ]:
            refused = await get(path, query)
            assert refused.status == 503, (path, query)
            assert dict(refused.headers)["retry-after"] == "1"
        assert store.reads == 2  # the refused requests read nothing
        store.gate.set()
        assert (await running).status == 200
        assert (await waiting).status == 200
        assert services.executor.queued == 0
        assert services.executor.running == 0

    asyncio.run(scenario())
    asyncio.run(services.close())


def grainy_jpeg(size: tuple[int, int], quality: int = 90) -> bytes:
    """A photo-like JPEG: smooth gradients plus grain, so it compresses like a real photo."""
    width, height = size
    rng = np.random.default_rng(7)
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    base = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1)
    noisy = base + rng.normal(0, 18, (height, width, 3)).astype(np.float32)
    pixels = np.clip(noisy, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def test_memory_is_bounded_by_the_render_slots_not_by_the_queue(tmp_path: Path) -> None:
    """64 concurrent cold renders of a 24 MP JPEG, 2 slots: the server's peak RSS grows by
    what 2 renders hold (source bytes, a DCT-scaled decode, the output), not by 64 sources."""
    folder = tmp_path / "media"
    folder.mkdir()
    source = grainy_jpeg((6000, 4000))
    (folder / "big.jpg").write_bytes(source)
    limits = {"render_concurrency": 2, "render_queue": 64}
    with served(write_config(tmp_path, folder, limits=limits)) as serving:
        base = serving.url
        server = psutil.Process(serving.process.pid)
        assert httpx.get(f"{base}/media/big.jpg?w=300", timeout=60).status_code == 200
        resting = server.memory_info().rss

        async def burst() -> list[int]:
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(timeout=120, limits=limits) as client:
                replies = await asyncio.gather(
                    *(client.get(f"{base}/media/big.jpg?w={301 + n}") for n in range(64))
                )
            return [reply.status_code for reply in replies]

        with sampled_rss(server) as peak:
            statuses = asyncio.run(burst())
        assert statuses == [200] * 64
        grown = peak[0] - resting
        # One render holds the source, the decode (at most 1/2 scale here: 6 MP RGB) and
        # transient copies; twice that per slot, for two slots, is a generous bound that a
        # server reading all 64 sources (64 x the source size) cannot meet.
        per_render = 2 * (len(source) + 3000 * 2000 * 3)
        assert grown < 2 * per_render, (grown, len(source))
        assert 64 * len(source) > 2 * 2 * per_render  # the bound tells the two apart


def test_a_render_past_its_budget_answers_422_and_its_slot_waits_for_the_thread(
    media: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """limits.max_render_seconds: the request answers when the budget passes; the abandoned
    work keeps its slot until its thread is done, so it cannot oversubscribe the CPU."""
    release = threading.Event()
    real = render.decode

    def stuck(data: bytes, job: RenderJob) -> Decoded:
        release.wait(30)
        return real(data, job)

    limits = {"render_concurrency": 1, "render_queue": 0, "max_render_seconds": 0.2}
    # No decode kept past its render: each request here decodes its own.
    services = Services.build(settings_for(media, limits=limits, render={"decode_linger": 0}))

    async def scenario() -> None:
        def get(query: str) -> Awaitable[ImageResponse]:
            return pipeline.serve(services, ImageRequest("GET", "/media/photo.jpg", query))

        assert (await get("w=10")).status == 200  # facts known, before the render is stuck
        monkeypatch.setattr(render, "decode", stuck)
        late = await get("w=11")
        assert late.status == 422
        assert b"took more than 0.2 s" in late.body
        assert (await get("w=12")).status == 503  # the stuck thread still holds the slot
        release.set()
        while services.executor.queued or services.executor.running:
            await asyncio.sleep(0.01)
        for _ in range(100):
            if (await get("w=13")).status == 200:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the slot was never freed")

    asyncio.run(scenario())
    asyncio.run(services.close())
