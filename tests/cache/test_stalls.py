"""A shared tier whose server stalls (it accepts connections and never answers) costs a
worker at most `cache.s3_concurrency` (the bucket) or `cache.redis_concurrency` connections
and waiting requests, however many cold requests arrive before its breaker opens (SPEC
§11.1): the rest are misses, rendered at once, and their writes are skipped, never queued
behind the stall."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from imgproxy.cache import CacheKey, Rendition, objects
from imgproxy.sections import CacheSettings
from imgproxy.server.app import create_app
from tests.support import Serve, settings_for
from tests.support.stalls import stalled_endpoint

COLD = 96  # distinct renditions asked at once: more than the bound, as a flood would be
BOUND = 8
TIMEOUT = 2.0  # the object-store tier's timeout, shortened so the test takes seconds
REDIS_TIMEOUT = 1.0  # the Redis tier's socket timeout


def bucket_at(endpoint: str) -> dict[str, Any]:
    return {
        "s3_bucket": "renditions",
        "s3_endpoint_url": endpoint,
        "s3_access_key_id": "AKIASTALLED0000",
        "s3_secret_access_key": "stalled-secret",
        "s3_concurrency": BOUND,
    }


def redis_at(endpoint: str) -> dict[str, Any]:
    return {"redis_url": endpoint.replace("http://", "redis://"), "redis_concurrency": BOUND}


@pytest.mark.parametrize(
    ("tier", "timeout", "spare"),
    [(bucket_at, TIMEOUT, 0), (redis_at, REDIS_TIMEOUT, 1)],  # Redis: + the purge listener
    ids=["s3", "redis"],
)
def test_a_stalled_tier_holds_at_most_its_bound_of_connections(
    media: Path,
    serve: Serve,
    monkeypatch: pytest.MonkeyPatch,
    tier: Callable[[str], dict[str, Any]],
    timeout: float,
    spare: int,
) -> None:
    """96 cold renditions at once through a real server whose shared tier points at a
    stalled endpoint: the endpoint accepts at most the tier's concurrency (8) connections
    (before: one per request, 96), every request is a 200 within the tier's timeout and a
    render, most of them without waiting on the stall at all (before: every one), and
    /healthz answers meanwhile."""
    monkeypatch.setattr(objects, "TIMEOUT", TIMEOUT)
    with stalled_endpoint() as (endpoint, accepted):
        cache = {"disk_path": "", **tier(endpoint)}
        server = serve(create_app(settings_for(media, cache=cache, limits={"render_queue": COLD})))

        async def flood() -> tuple[list[int], list[float], float]:
            limits = httpx.Limits(max_connections=COLD + 8)
            async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:
                start = time.monotonic()

                async def one(width: int) -> tuple[int, float]:
                    response = await http.get(f"/media/photo.jpg?w={width}")
                    return response.status_code, time.monotonic() - start

                async def health() -> float:
                    await asyncio.sleep(0.3)  # while the first requests wait on the stall
                    asked = time.monotonic()
                    assert (await http.get("/healthz")).status_code == 200
                    return time.monotonic() - asked

                answers, healthz = await asyncio.gather(
                    asyncio.gather(*(one(16 + i) for i in range(COLD))), health()
                )
            return [status for status, _ in answers], [t for _, t in answers], healthz

        statuses, seconds, healthz = asyncio.run(flood())
        assert statuses == [200] * COLD
        assert len(accepted) <= BOUND + spare, f"the stalled endpoint accepted {len(accepted)}"
        assert max(seconds) < timeout + 10, f"the last answer took {max(seconds):.1f} s"
        # Before, all 96 waited it out; now 8 do, and the rest only for 88 renders on two
        # render slots (which a loaded machine may stretch past a 1 s timeout for a few).
        waited = sum(t >= timeout for t in seconds)
        assert waited <= COLD // 2, f"{waited} requests waited out the tier's timeout"
        assert healthz < 1.0, f"/healthz took {healthz:.2f} s during the stall"


def test_writes_to_a_stalled_object_store_are_skipped_past_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """64 renditions written at once to a stalled store (its breaker shut: no read has
    failed yet): 8 PUTs go out and wait out the timeout, the other 56 are skipped at once
    (before: 64 connections, and every write, so every response that waits on it, took the
    whole timeout)."""
    monkeypatch.setattr(objects, "TIMEOUT", TIMEOUT)
    with stalled_endpoint() as (endpoint, accepted):
        tier = objects.ObjectStoreTier(
            CacheSettings(
                s3_bucket="renditions",
                s3_endpoint_url=endpoint,
                s3_access_key_id="AKIASTALLED0000",
                s3_secret_access_key="stalled-secret",
                s3_concurrency=BOUND,
            )
        )

        async def writes() -> list[float]:
            start = time.monotonic()

            async def put(index: int) -> float:
                key = CacheKey(f"S{index:023d}", f"R{index:023d}", "webp")
                await tier.put(key, Rendition(b"x" * 1000, "image/webp"))
                return time.monotonic() - start

            return await asyncio.gather(*(put(index) for index in range(64)))

        seconds = asyncio.run(writes())
        assert len(accepted) <= BOUND, f"the stalled endpoint accepted {len(accepted)}"
        assert sum(t < 1.0 for t in seconds) >= 64 - BOUND, sorted(seconds)
