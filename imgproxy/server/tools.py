"""`imgproxy check`, `sign`, `purge` and `warm`: a configuration's stores and bounds, a signed
URL, a source's renditions removed from every cache, or rendered ahead of its visitors."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from urllib.parse import quote, urlsplit

from imgproxy import maintenance
from imgproxy.asgi import ImageProxy
from imgproxy.conditional import surrogate_key
from imgproxy.errors import BadRequest
from imgproxy.extras import require
from imgproxy.server import purging
from imgproxy.server.serving import refuse_unsigned
from imgproxy.services import Services, validate
from imgproxy.settings import CONFIG_ENV, RESERVED_STORE_NAMES, STORE_NAME, Settings
from imgproxy.urls import sign_url


def check(settings: Settings, args: argparse.Namespace) -> int:
    asyncio.run(validate(settings))  # builds every store; no cache tier, nothing written
    refuse_unsigned(settings, settings.server.host)  # as `serve` would
    if args.config:
        print(f"config file: {os.path.abspath(args.config)} (from {args.source_of_config})")
    else:
        print(f"config file: none (no --config, ${CONFIG_ENV} not set): built-in defaults")
    print(f"config ok: {len(settings.stores)} store(s), {len(settings.presets)} preset(s)")
    for name, store in settings.stores.items():
        options = store.describe()
        state = "approved" if store.approved else "not approved"
        print(f"  /{name}/  kind={store.kind}  {options}  ({state} by default)")
    if settings.cache.redis_url:
        print(asyncio.run(_redis_usage(settings)))
    if settings.cache.s3_bucket:
        print(asyncio.run(_s3_bounds(settings)))
    if not settings.security.keys:
        print(unsigned_bounds(settings), end="")
    return 0


async def _redis_usage(settings: Settings) -> str:
    """One line on what bounds the Redis tier: its own budget, and Redis's `maxmemory`."""
    require("redis", extra="redis", feature="cache.redis_url")
    from imgproxy.cache.redis import RedisTier

    cache = settings.cache
    tier = RedisTier(cache.redis_url, ttl=cache.redis_ttl, max_bytes=cache.redis_bytes)
    budget = f"cache.redis_bytes = {cache.redis_bytes / 2**20:.0f} MiB"
    try:
        kept, maxmemory, policy = await tier.usage()
    except Exception as exc:  # check reports; it does not fail for a Redis that is down
        return f"  redis: {budget}; Redis did not answer ({exc})"
    finally:
        await tier.close()
    limit = f"maxmemory {maxmemory / 2**20:.0f} MiB" if maxmemory else "no maxmemory"
    line = f"  redis: {budget}, {kept / 2**20:.1f} MiB kept; Redis: {limit}, {policy}"
    if maxmemory and maxmemory < cache.redis_bytes:
        line += " (below the budget: writes will be refused before it is reached)"
    return line


async def _s3_bounds(settings: Settings) -> str:
    """One line on what bounds the object-store tier: its budget and age, which its sweeps
    keep, and the bucket's lifecycle rule, the backstop that needs no running instance."""
    from imgproxy.cache import lifecycle

    cache = settings.cache
    budget = f"cache.s3_bytes = {cache.s3_bytes / 2**20:.0f} MiB"
    age = f"cache.s3_max_age = {cache.s3_max_age / 86400:g} days"
    rule = await lifecycle.describe(cache)
    return f"  s3: {budget}, {age} (kept by the tier's sweeps); lifecycle: {rule}"


def unsigned_bounds(settings: Settings) -> str:
    """What `check` says of a server with no keys: anyone may make renditions, and what
    bounds them (the limits and the budgets of the tiers configured)."""
    limits, cache = settings.limits, settings.cache
    tiers = [f"memory {cache.memory_bytes / 2**20:.0f} MiB"] if cache.memory_bytes else []
    if cache.disk_path:
        tiers.append(f"disk {cache.disk_bytes / 2**20:.0f} MiB")
    if cache.redis_url:
        tiers.append(f"redis {cache.redis_bytes / 2**20:.0f} MiB")
    if cache.s3_bucket:
        tiers.append(f"s3 {cache.s3_bytes / 2**20:.0f} MiB, {cache.s3_max_age / 86400:g} days")
    return (
        "WARNING: security.keys is empty: URLs are unsigned, so anyone can have renditions\n"
        "  made at will (each width, format or quality of a source is a render and a cache\n"
        "  entry). What bounds them:\n"
        f"  - limits.max_output_pixels = {limits.max_output_pixels} per output\n"
        f"  - {limits.render_concurrency} render slot(s) per worker, limits.render_queue = "
        f"{limits.render_queue} waiting per store, then 503\n"
        f"  - limits.inflight_bytes = {limits.inflight_bytes / 2**20:.0f} MiB per worker\n"
        f"  - the tiers' budgets: {', '.join(tiers) or 'no tier'}\n"
        "  Set security.keys to sign URLs (imgproxy sign, url_for).\n"
    )


def sign(settings: Settings, args: argparse.Namespace) -> int:
    security = settings.security
    if not security.keys:
        print("imgproxy: security.keys is empty: signing is off", file=sys.stderr)
        return 2
    try:
        url = sign_target(args.url)
        if url != args.url:
            print(f"imgproxy: note: signing {url}", file=sys.stderr)
        store = url.split("/")[1]
        if store not in settings.stores:
            configured = ", ".join(settings.stores) or "none"
            print(
                f"imgproxy: note: no store {store!r} in this config ({configured})", file=sys.stderr
            )
        print(sign_url(url, security.keys[0], signature_length=security.signature_length))
    except BadRequest as exc:
        print(f"imgproxy: {exc.detail}", file=sys.stderr)
        return 2
    return 0


def sign_target(url: str) -> str:
    """`media/a.jpg?w=1` -> `/media/a.jpg?w=1`, path encoded as a browser sends it; a full
    URL, or anything that is not /STORE/PATH, is a BadRequest saying what to pass."""
    parts = urlsplit(url.strip())
    if parts.scheme or parts.netloc:
        raise BadRequest(
            f"{url}: a full URL; pass the path after the mount point, e.g. "
            f"{parts.path or '/'}{'?' + parts.query if parts.query else ''} without the mount"
        )
    if parts.fragment:
        raise BadRequest(f"{url}: a #fragment is never sent to the server; drop it")
    # the WHATWG path percent-encode set: what a browser escapes, existing %XX kept
    path = "/" + quote(parts.path.lstrip("/"), safe="/%!$&'()*+,;=:@[]^|")
    store, _, rest = path[1:].partition("/")
    if not STORE_NAME.fullmatch(store) or store in RESERVED_STORE_NAMES or not rest.strip("/"):
        raise BadRequest(f"{url}: expected /STORE/PATH?QUERY, e.g. /media/photos/a.jpg?w=300")
    return f"{path}?{parts.query}" if parts.query else path


def purge(settings: Settings, args: argparse.Namespace) -> int:
    store, _, path = args.source.strip("/").partition("/")
    if not store or not path:
        print("imgproxy: purge needs STORE/PATH, e.g. media/photos/a.jpg", file=sys.stderr)
        return 2
    purged, workers = asyncio.run(_purge_everywhere(settings, store, path))
    removed = purged.removed + (workers.removed if workers else 0)
    if not removed and not purged.answers and not (workers and workers.unreached):
        print(f"imgproxy: nothing cached for {store}/{path}: 0 entries removed", file=sys.stderr)
        if not _shared_tiers(settings):
            print(f"imgproxy: {MEMORY_ONLY}: a server's memory can't be purged", file=sys.stderr)
        return 1
    print(f"purged {removed} cached entries of {store}/{path}")
    _report_memory(settings, purged, workers)
    _report_http_caches(purged, f"{store}/{path}")
    return 3 if purged.failed or (workers and workers.unreached) else 0


async def _purge_everywhere(
    settings: Settings, store: str, path: str
) -> tuple[maintenance.Purged, purging.Reached | None]:
    """The source's renditions removed from the shared tiers and the HTTP caches, then from
    the memory of the workers running on this host (None: no way to reach them)."""
    proxy = ImageProxy(settings)
    try:
        purged = await proxy.purge(store, path)
    finally:
        await proxy.close()
    # The shared tiers first, so a worker whose memory misses now cannot refill it
    # from them with what is being purged.
    return purged, await purging.reach_workers(settings, surrogate_key(store, path))


def _report_memory(
    settings: Settings, purged: maintenance.Purged, workers: purging.Reached | None
) -> None:
    """Whose memory was purged, and which worker's was not (or why none could be)."""
    if workers is not None:
        print(
            f"  {purged.removed} from the shared tiers, {workers.removed} from the memory of "
            f"{workers.workers} running worker(s) on this host"
        )
        for why in workers.unreached:
            print(f"imgproxy: a worker did not purge its memory ({why})", file=sys.stderr)
    elif settings.cache.memory_bytes and not settings.cache.redis_url:  # Redis tells them
        print(
            "  from the shared tiers only: the memory of running servers is not reached "
            "without cache.disk_path or cache.redis_url"
        )


def _report_http_caches(purged: maintenance.Purged, source: str) -> None:
    """Each HTTP cache's answer: on stdout when it purged, on stderr when it did not."""
    for answer in purged.answers:
        if answer.ok:
            print(f"{answer.url}: {answer.detail}")
        else:
            failure = f"HTTP cache {answer.url} did not purge {source}: {answer.detail}"
            print(f"imgproxy: {failure}", file=sys.stderr)


MEMORY_ONLY = "only the memory tier is configured (no cache.disk_path, no cache.redis_url)"


def _shared_tiers(settings: Settings) -> bool:
    """A tier that outlives this process: what purge and warm reach."""
    return bool(settings.cache.disk_path or settings.cache.redis_url)


def warm(settings: Settings, args: argparse.Namespace) -> int:
    require("tqdm", extra="server", feature="imgproxy warm")
    from tqdm import tqdm

    if not _shared_tiers(settings):
        warning = f"{MEMORY_ONLY}: nothing this run renders outlives it"
        print(f"imgproxy: WARNING: {warning}", file=sys.stderr)
    presets = [name.strip() for name in args.preset.split(",") if name.strip()]
    bar = tqdm(unit="rendition", file=sys.stderr, dynamic_ncols=True)

    def done(outcome: maintenance.Outcome) -> None:
        bar.update(1)
        if outcome.status != 200:
            bar.write(_failure(args.store, outcome), file=sys.stderr)

    from imgproxy.render.probe import own_process_ceiling

    own_process_ceiling(settings)  # as `serve` does
    try:
        summary = asyncio.run(
            _warm_store(
                settings,
                args.store,
                presets,
                on_total=lambda total: setattr(bar, "total", total),
                on_done=done,
            )
        )
    finally:
        bar.close()
    print(
        f"warm {args.store}: made {summary.made}, failed {summary.failed}, "
        f"skipped {summary.skipped} (already cached)"
    )
    return 1 if summary.failed else 0


def _failure(store: str, outcome: maintenance.Outcome) -> str:
    """The line a rendition that failed to warm gets: its source, preset, status and why."""
    failure = f"failed: {store}/{outcome.path} (p={outcome.preset}): {outcome.status}"
    return f"imgproxy: {failure} {outcome.detail}".rstrip()


async def _warm_store(
    settings: Settings,
    store: str,
    presets: list[str],
    *,
    on_total: Callable[[int], None],
    on_done: Callable[[maintenance.Outcome], None],
) -> maintenance.WarmSummary:
    """`maintenance.warm` through services of this process's own, closed when it ends."""
    services = Services.build(settings)
    try:
        return await maintenance.warm(services, store, presets, on_total=on_total, on_done=on_done)
    finally:
        await services.close()
