"""A Variant of a source -> its bytes (or, behind nginx, its file): the cache tiers first,
then one render per rendition, within this process (single-flight) and across processes
sharing Redis (a lock; the others wait for the result to land)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from imgproxy import render, timing
from imgproxy.cache import CacheKey, CacheTier, Located, Rendition, TieredCache
from imgproxy.cache.disk import DiskTier
from imgproxy.cache.flight import SingleFlight
from imgproxy.cache.memory import MemoryTier
from imgproxy.cache.redis import LOCK_SECONDS, RedisTier
from imgproxy.metrics import Metrics
from imgproxy.render.executor import RenderExecutor
from imgproxy.settings import Settings


class Renditions:
    def __init__(self, settings: Settings, executor: RenderExecutor, metrics: Metrics) -> None:
        cache = settings.cache
        tiers: list[CacheTier] = []
        self.memory = MemoryTier(cache.memory_bytes) if cache.memory_bytes else None
        self.disk = None
        self.redis = None
        if self.memory is not None:
            tiers.append(self.memory)
        if cache.disk_path:
            self.disk = DiskTier(settings.base_dir / cache.disk_path, max_bytes=cache.disk_bytes)
            tiers.append(self.disk)
        if cache.redis_url:
            self.redis = RedisTier(cache.redis_url, ttl=cache.redis_ttl)
            tiers.append(self.redis)
        self.cache = TieredCache(
            tiers, on_lookup=metrics.cache, locate=bool(cache.accel_redirect and self.disk)
        )
        self.executor = executor
        self.metrics = metrics
        self.flights: SingleFlight[Rendition] = SingleFlight()

    async def get(
        self,
        key: CacheKey,
        job: render.RenderJob,
        read: Callable[[], Awaitable[bytes]],
        *,
        modified: float | None,
    ) -> Rendition | Located:
        with timing.measure("cache"):
            cached = await self.cache.get(key)
        if cached is not None:
            return cached
        return await self.flights.run(key.rendition, lambda: self._make(key, job, read, modified))

    async def bytes_of(self, key: CacheKey, found: Rendition | Located) -> Rendition | None:
        """The bytes behind a located disk hit, for responses nginx cannot send (404s)."""
        if isinstance(found, Rendition):
            return found
        return await self.disk.get(key) if self.disk is not None else None

    async def _make(
        self,
        key: CacheKey,
        job: render.RenderJob,
        read: Callable[[], Awaitable[bytes]],
        modified: float | None,
    ) -> Rendition:
        if self.memory is not None:
            # A flight that just ended stored it here after this request's lookup.
            done = await self.memory.get(key)
            if done is not None:
                return done
        claimed = await self.redis.claim(key) if self.redis is not None else True
        if not claimed and self.redis is not None:
            landed = await self.redis.wait(key, timeout=LOCK_SECONDS)
            if landed is not None:
                await self.cache.put(key, landed)
                return landed
        try:
            if self.redis is not None and claimed:
                # Checked again under the lock: another instance may have stored it between
                # our first lookup and our claim (it stores before it releases).
                landed = await self.redis.get(key)
                if landed is not None:
                    await self.cache.put(key, landed)
                    return landed
            began = time.perf_counter()
            data = await read()
            fetched = time.perf_counter()
            rendered = await self.executor.run(render.render, data, job)
            self.metrics.fetch_seconds.observe(fetched - began)
            self.metrics.render_seconds.observe(time.perf_counter() - fetched)
            self.metrics.renders += 1
            timing.record("fetch", fetched - began)
            for stage, seconds in rendered.timings.items():
                timing.record(stage, seconds)
            rendition = Rendition(rendered.body, job.output.media_type, modified)
            await self.cache.put(key, rendition)
            return rendition
        finally:
            if claimed and self.redis is not None:
                await self.redis.release(key)

    async def purge(self, source: str) -> int:
        return await self.cache.purge(source)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.close()
