"""Settings -> Services: the composition root. Everything a request needs is built here once
(stores, cache tiers, render executor, metrics, memos) and handed to the pipeline; nothing
else in the package builds a collaborator of its own.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from imgproxy import render
from imgproxy.cache import CacheTier
from imgproxy.cache.disk import DiskTier
from imgproxy.cache.memory import MemoryTier
from imgproxy.cache.tiered import TieredCache
from imgproxy.dialects import build_dialects
from imgproxy.errors import ConfigError
from imgproxy.extras import require
from imgproxy.messages import ImageRequest
from imgproxy.metrics import Metrics
from imgproxy.mounts import Mounted, close_stores, mount_stores
from imgproxy.policy import ANY
from imgproxy.presets import check_presets
from imgproxy.render.executor import RenderExecutor
from imgproxy.settings import CacheSettings, Settings
from imgproxy.sharing import SharedDecodes
from imgproxy.signing import Signer
from imgproxy.source import Sources
from imgproxy.stores import Store, StoredFile
from imgproxy.targets import Targets
from imgproxy.variant import Variants
from imgproxy.watermarks import check_watermarks

Authorize = Callable[[ImageRequest, StoredFile], Awaitable[bool]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    settings: Settings
    mounts: Mapping[str, Mounted]
    targets: Targets
    sources: Sources
    decodes: SharedDecodes
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
        check(settings)
        mounts = mount_stores(settings, stores or {})
        check_watermarks(settings, mounts)  # a Python store may hold them too
        limits = settings.limits
        executor = RenderExecutor(
            concurrency=limits.render_concurrency,
            queue=limits.render_queue,
            inflight_bytes=limits.inflight_bytes,
        )
        metrics = Metrics(queue_depth=lambda: executor.queued, in_flight=lambda: executor.running)
        cache = TieredCache(build_tiers(settings), on_lookup=metrics.cache)
        sources = Sources(executor, cache)
        return cls(
            settings=settings,
            mounts=mounts,
            targets=_targets(settings, mounts),
            sources=sources,
            decodes=_decodes(settings, executor, sources, metrics),
            variants=_variants(settings),
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


def _targets(settings: Settings, mounts: Mapping[str, Mounted]) -> Targets:
    """The URL's judge: its keys, presets, dialects and watermark names are the deployment's,
    so they are built once here, not per request."""
    return Targets(
        mounts,
        Signer(settings.security),
        settings.presets,
        build_dialects(settings, mounts),
        settings.watermarks.keys(),
    )


def _decodes(
    settings: Settings, executor: RenderExecutor, sources: Sources, metrics: Metrics
) -> SharedDecodes:
    """Renditions of one version asked for at once share a decode (SPEC §11): it takes the
    executor's render slots and reads through the same sources as a lone render."""
    return SharedDecodes(
        executor,
        sources,
        metrics,
        linger=settings.render.decode_linger,
        linger_bytes=settings.render.linger_bytes,
    )


def _variants(settings: Settings) -> Variants:
    """The response side: headers and encoder options from settings, AVIF only where this
    host's Pillow writes it."""
    return Variants(
        cache_control=settings.cache.cache_control,
        avif=render.AVIF_AVAILABLE,
        avif_speed=settings.render.avif_speed,
        webp_effort=settings.render.webp_effort,
        client_hints=settings.server.client_hints,
    )


def build_tiers(settings: Settings) -> list[CacheTier]:
    """Fastest first: memory, disk, then Redis and an object store, shared by every instance
    (SPEC §6, §12.2)."""
    check_tiers(settings)
    cache: CacheSettings = settings.cache
    tiers: list[CacheTier] = []
    if cache.memory_bytes:
        tiers.append(MemoryTier(cache.memory_bytes))
    if cache.disk_path:
        folder = settings.base_dir / cache.disk_path
        try:
            tiers.append(DiskTier(folder, max_bytes=cache.disk_bytes))
        except OSError as exc:  # what check_tiers cannot foresee (a race, a full disk)
            raise ConfigError(f"cache.disk_path: cannot use {folder}: {exc.strerror}") from None
    if cache.redis_url:
        from imgproxy.cache.redis import RedisTier  # only deployments with Redis load its client

        tiers.append(
            RedisTier(
                cache.redis_url,
                ttl=cache.redis_ttl,
                max_bytes=cache.redis_bytes,
                lock_seconds=cache.lock_seconds,
                concurrency=cache.redis_concurrency,
            )
        )
    if cache.s3_bucket:
        from imgproxy.cache.objects import ObjectStoreTier

        tiers.append(ObjectStoreTier(cache))
    return tiers


def check(settings: Settings) -> None:
    """What building the Services needs, checked before anything is built or written: the
    presets parse, each format a policy names is one this host reads, and each cache tier
    can be made. Services.build and validate (`imgproxy check` and `serve`) both run it, so
    `check` refuses what `serve` would."""
    check_presets(settings)
    check_formats(settings)
    check_tiers(settings)


def check_formats(settings: Settings) -> None:
    """A name no decoder here reads (`WEBPP`) is refused by its key, as `webp` is; HEIF
    needs its extra."""
    policies = {"policy": settings.policy}
    for name, store in settings.stores.items():
        if store.policy != settings.policy:  # its own overrides
            policies[f"stores.{name}"] = store.policy
    for prefix, policy in policies.items():
        for key in ("image_formats", "approved_image_formats"):
            names = tuple(name for name in getattr(policy, key) if name != ANY)
            for name in render.unreadable(names):
                raise ConfigError(f"{prefix}.{key}: {name!r} is not a format Pillow reads")
            if "HEIF" in names:
                require("pi_heif", extra="heif", feature=f"HEIF in {prefix}.{key}")


def check_tiers(settings: Settings) -> None:
    """Each configured tier's extra is installed and its disk folder exists or can be made;
    nothing is created, written or contacted."""
    cache = settings.cache
    if cache.disk_path:
        folder = settings.base_dir / cache.disk_path
        problem = _uncreatable(folder)
        if problem is not None:
            raise ConfigError(f"cache.disk_path: cannot create {folder}: {problem}")
    if cache.redis_url:
        require("redis", extra="redis", feature="cache.redis_url")
    if cache.s3_bucket:
        require("obstore", extra="s3", feature="cache.s3_bucket")


def _uncreatable(folder: Path) -> str | None:
    """Why `folder` cannot be made or written to, found without making it; None if it can."""
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


async def validate(settings: Settings) -> None:
    """What `imgproxy check` and `serve` verify before anything runs: `check` (presets,
    formats, what the cache tiers need), every store builds and every watermark names one.
    No cache tier is built and nothing is written."""
    check(settings)
    mounts = mount_stores(settings, {})
    try:
        check_watermarks(settings, mounts)
    finally:
        await close_stores(mounts)
