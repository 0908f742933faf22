"""Settings -> Services: the composition root. Everything a request needs is built here once
(stores, cache tiers, render executor, metrics, memos) and handed to the pipeline; nothing
else in the package builds a collaborator of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from imgproxy import render
from imgproxy.cache import CacheTier
from imgproxy.cache.disk import DiskTier
from imgproxy.cache.memory import MemoryTier
from imgproxy.cache.tiered import TieredCache
from imgproxy.extras import require
from imgproxy.messages import ImageRequest
from imgproxy.metrics import Metrics
from imgproxy.mounts import Mounted, check_presets, close_stores, mount_stores
from imgproxy.render.executor import RenderExecutor
from imgproxy.settings import CacheSettings, Settings
from imgproxy.signing import Signer
from imgproxy.source import Sources
from imgproxy.stores import Store, StoredFile
from imgproxy.targets import Targets
from imgproxy.variant import Variants

Authorize = Callable[[ImageRequest, StoredFile], Awaitable[bool]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    settings: Settings
    mounts: Mapping[str, Mounted]
    targets: Targets
    sources: Sources
    variants: Variants
    cache: TieredCache
    executor: RenderExecutor
    metrics: Metrics
    authorize: Authorize | None
    accel: str  # the X-Accel-Redirect location prefix; empty: off
    timing: bool  # Server-Timing
    access_log: bool  # a line per request (logs.py)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        stores: Mapping[str, Store] | None = None,
        authorize: Authorize | None = None,
    ) -> Services:
        check_presets(settings)
        mounts = mount_stores(settings, stores or {})
        limits = settings.limits
        executor = RenderExecutor(
            concurrency=limits.render_concurrency,
            queue=limits.render_queue,
            inflight_bytes=limits.inflight_bytes,
        )
        metrics = Metrics(queue_depth=lambda: executor.queued, in_flight=lambda: executor.running)
        cache = TieredCache(build_tiers(settings), on_lookup=metrics.cache)
        return cls(
            settings=settings,
            mounts=mounts,
            targets=Targets(mounts, Signer(settings.security), settings.presets),
            sources=Sources(executor, cache),
            variants=Variants(
                cache_control=settings.cache.cache_control,
                avif=render.AVIF_AVAILABLE,
                avif_speed=settings.render.avif_speed,
            ),
            cache=cache,
            executor=executor,
            metrics=metrics,
            authorize=authorize,
            accel=settings.cache.accel_redirect,
            timing=settings.server.timing,
            access_log=settings.server.access_log,
        )

    async def close(self) -> None:
        self.executor.shutdown()
        await self.cache.close()
        await close_stores(self.mounts)


def build_tiers(settings: Settings) -> list[CacheTier]:
    """Fastest first: memory, disk, then Redis and an object store, shared by every instance
    (SPEC §6, §12.2)."""
    cache: CacheSettings = settings.cache
    tiers: list[CacheTier] = []
    if cache.memory_bytes:
        tiers.append(MemoryTier(cache.memory_bytes))
    if cache.disk_path:
        tiers.append(DiskTier(settings.base_dir / cache.disk_path, max_bytes=cache.disk_bytes))
    if cache.redis_url:
        require("redis", extra="redis", feature="cache.redis_url")
        from imgproxy.cache.redis import RedisTier  # only deployments with Redis load its client

        tiers.append(
            RedisTier(
                cache.redis_url,
                ttl=cache.redis_ttl,
                max_bytes=cache.redis_bytes,
                lock_seconds=cache.lock_seconds,
            )
        )
    if cache.s3_bucket:
        from imgproxy.cache.objects import ObjectStoreTier  # loads obstore, or names the extra

        tiers.append(ObjectStoreTier(cache))
    return tiers


async def validate(settings: Settings) -> None:
    """What `imgproxy check` and `serve` verify before anything runs: presets parse, every
    store builds, and a format a policy names can be decoded here (HEIF needs its extra).
    No cache tier is built and nothing is written."""
    check_presets(settings)
    policies = [settings.policy, *(store.policy for store in settings.stores.values())]
    if any("HEIF" in (*p.image_formats, *p.approved_image_formats) for p in policies):
        require("pi_heif", extra="heif", feature="HEIF in a policy")
    await close_stores(mount_stores(settings, {}))
