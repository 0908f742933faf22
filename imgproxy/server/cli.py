"""`imgproxy`: serve images, check a configuration, sign URLs, purge or warm a source's
renditions, and print the configuration reference."""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.metadata
import importlib.resources
import importlib.util
import ipaddress
import os
import re
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from imgproxy import __version__, logs, maintenance
from imgproxy.asgi import ImageProxy
from imgproxy.coercion import named
from imgproxy.conditional import surrogate_key
from imgproxy.errors import BadRequest, ConfigError
from imgproxy.extras import require
from imgproxy.mounts import check_presets
from imgproxy.server import purging
from imgproxy.services import Services, validate
from imgproxy.settings import (
    CONFIG_ENV,
    RESERVED_STORE_NAMES,
    STORE_NAME,
    Settings,
    unread_variables,
)
from imgproxy.urls import sign_url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imgproxy", description=__doc__)
    parser.add_argument("--version", action="version", version=f"imgproxy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the standalone server")
    _config_option(serve)
    serve.add_argument("--host", help="overrides server.host")
    serve.add_argument("--port", type=int, help="overrides server.port")
    serve.add_argument("--workers", type=int, help="overrides server.workers")

    check = commands.add_parser("check", help="validate a config and list its stores")
    _config_option(check)

    sign = commands.add_parser(
        "sign",
        help="sign a URL path such as /media/a.jpg?w=300",
        description=SIGN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _config_option(sign)
    sign.add_argument("url", help="/STORE/PATH?QUERY: the path after the mount point")

    purge = commands.add_parser(
        "purge",
        help="remove every cached rendition of a source",
        description=(
            "Running workers of `imgproxy serve` on this host drop it from their memory (with "
            "cache.disk_path; across hosts, cache.redis_url). Exit status: 0 renditions "
            "removed (or every cache.purge_urls confirmed), 1 nothing cached for it, 2 bad "
            "input, 3 an HTTP cache or a running worker failed (the tiers were purged)."
        ),
    )
    _config_option(purge)
    purge.add_argument("source", metavar="STORE/PATH", help="e.g. media/photos/a.jpg")

    warm = commands.add_parser("warm", help="pre-render a store's files for some presets")
    _config_option(warm)
    warm.add_argument("--store", required=True)
    warm.add_argument("--preset", required=True, help="one name, or several: small,medium")

    config = commands.add_parser(
        "config", help="print the configuration reference or a shipped deployment file"
    )
    printed = config.add_mutually_exclusive_group()
    printed.add_argument(
        "--reference", action="store_true", help="every key: type, default, meaning (Markdown)"
    )
    for flag, (name, what) in DEPLOYMENT_FILES.items():
        printed.add_argument(f"--{flag}", action="store_true", help=f"{what} ({name})")

    args = parser.parse_args(argv)
    if args.command == "config":  # needs no settings: it describes them
        return _config(parser, args)
    args.source_of_config = "--config" if args.config else f"${CONFIG_ENV}"
    args.config = args.config or os.environ.get(CONFIG_ENV) or None
    if args.config and not os.path.isfile(args.config):
        print(
            f"imgproxy: config file not found: {os.path.abspath(args.config)} "
            f"(given by {args.source_of_config})",
            file=sys.stderr,
        )
        return 2
    if args.command in ("check", "serve"):
        for warning in unread_variables(os.environ):
            print(f"imgproxy: WARNING: {warning}", file=sys.stderr)
    try:
        settings = _load(args.config)
    except ConfigError as exc:
        print(f"imgproxy: invalid config: {exc}", file=sys.stderr)
        return 2
    commands_by_name = {
        "serve": _serve,
        "check": _check,
        "sign": _sign,
        "purge": _purge,
        "warm": _warm,
    }
    try:
        return commands_by_name[args.command](settings, args)
    except ConfigError as exc:  # a store's value, say, that the environment set
        print(f"imgproxy: {named(exc, settings.variables)}", file=sys.stderr)
        return 2


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help=f"TOML file (default: ${CONFIG_ENV}, else built-in)")


def _load(path: str | None) -> Settings:
    settings = Settings.from_file(path) if path else Settings.from_mapping({})
    check_presets(settings)  # every command: a bad preset refuses to run and names itself
    return settings


# connections.py subclasses uvicorn's HTTP protocols, which are its internals: `serve` runs
# only on the releases tested, the range the `server` extra allows (a test keeps them equal).
UVICORN_TESTED = ((0, 34), (0, 56))  # from the first, up to and without the second


def untested_uvicorn(version: str) -> str | None:
    """Why this uvicorn cannot run `serve`, or None when it is a tested release."""
    found = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    low, high = UVICORN_TESTED
    if low <= found < high:
        return None
    wanted = f"uvicorn>={low[0]}.{low[1]},<{high[0]}.{high[1]}"
    return (
        f"imgproxy serve is tested with {wanted}, and this is uvicorn {version}: its HTTP"
        f" protocols, which imgproxy's connections extend, may differ. pip install '{wanted}'"
    )


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    require("uvicorn", extra="server", feature="imgproxy serve")
    refused = untested_uvicorn(importlib.metadata.version("uvicorn"))
    if refused is not None:
        print(f"imgproxy: {refused}", file=sys.stderr)
        return 2
    import uvicorn

    from imgproxy.server import connections, listening, workers

    host = args.host or settings.server.host
    asyncio.run(validate(settings))  # a bad store refuses to start here, not on first use
    refuse_unsigned(settings, host)
    _warn_about_the_demo(settings)
    if args.config:
        os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    fast = bool(importlib.util.find_spec("uvloop") and importlib.util.find_spec("httptools"))
    server = settings.server
    logs.configure(level=server.log_level, fmt=server.log_format)
    options: dict[str, Any] = {
        "loop": "uvloop" if fast else "asyncio",
        "access_log": False,  # imgproxy's own (server.access_log) knows the store and tier
        "log_config": None,  # uvicorn's loggers go to the handler logs.configure set up
        "log_level": server.log_level,
        "server_header": False,
        **connections.uvicorn_options(fast=fast),  # head, idle and keep-alive limits
    }
    port = args.port if args.port is not None else settings.server.port
    count = args.workers or settings.server.workers
    os.environ["IMGPROXY_SERVER__WORKERS"] = str(count)  # the workers' settings share cores
    os.environ[connections.MAX_HEADERS_ENV] = str(server.max_headers)  # read per connection
    try:
        lock, port = listening.claim(host, port)
    except listening.AddressInUse as exc:
        print(f"imgproxy: {exc}", file=sys.stderr)
        return 1
    with lock:  # held while serving: a second server on this address refuses to start
        if count > 1:  # a socket per worker: the kernel spreads connections (workers.py)
            check = functools.partial(_reload_refused, args.config)
            return workers.supervise(host, port, count, options, check=check)
        uvicorn.run(
            "imgproxy.server.app:app_from_env", factory=True, host=host, port=port, **options
        )
    return 0


def _reload_refused(path: str | None) -> str | None:
    """Why SIGHUP must not reload the configuration file as it is now (None: it may)."""
    if path is None:
        return f"no configuration file (--config or ${CONFIG_ENV}) to reload"
    try:
        asyncio.run(validate(_load(path)))  # what `serve` checks before it starts
    except Exception as exc:  # whatever is wrong with the new file, the old one keeps serving
        return str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
    return None


DEMO_WARNING = """\
imgproxy: WARNING: server.demo = true with security.keys set.
imgproxy: WARNING: the demo page signs URLs with this server's own key: anyone who can open
imgproxy: WARNING: it gets signed URLs, so signing protects nothing. Never expose the demo
imgproxy: WARNING: publicly; turn it off (server.demo = false) outside local development.
"""


def _warn_about_the_demo(settings: Settings) -> None:
    if settings.server.demo and settings.security.keys:
        print(DEMO_WARNING, end="", file=sys.stderr, flush=True)


def refuse_unsigned(settings: Settings, host: str) -> None:
    """No keys on an address others reach is refused unless security.allow_unsigned says it
    is meant: `keys = []` shipped to production would otherwise serve renditions made at
    anyone's will, without a word. Loopback (the demo, a proxy in front) stays as easy."""
    security = settings.security
    if security.keys or security.allow_unsigned or _loopback(host):
        return
    raise ConfigError(
        f"security.keys: empty, and server.host {host!r} is not loopback: anyone who reaches it"
        " can have renditions made at will. Set security.keys (IMGPROXY_SECURITY__KEYS), or"
        " security.allow_unsigned = true if unsigned URLs are intended"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name other than localhost, or "" (every interface)
        return False


def _check(settings: Settings, args: argparse.Namespace) -> int:
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


SIGN_HELP = """\
URL is the path after the mount point, /STORE/PATH, with its query: /media/a.jpg?w=300.
A missing leading slash is added (media/a.jpg?w=300 signs /media/a.jpg?w=300), and
characters a browser percent-encodes (spaces, non-ASCII) are encoded first, so the
printed URL is what the server will check. A full URL (http://host/...) is refused: its
path includes the mount point, which only you know; pass the part after it.
"""


def _sign(settings: Settings, args: argparse.Namespace) -> int:
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


def _purge(settings: Settings, args: argparse.Namespace) -> int:
    store, _, path = args.source.strip("/").partition("/")
    if not store or not path:
        print("imgproxy: purge needs STORE/PATH, e.g. media/photos/a.jpg", file=sys.stderr)
        return 2

    async def run() -> tuple[maintenance.Purged, purging.Reached | None]:
        proxy = ImageProxy(settings)
        try:
            purged = await proxy.purge(store, path)
        finally:
            await proxy.close()
        # The shared tiers first, so a worker whose memory misses now cannot refill it
        # from them with what is being purged.
        return purged, await purging.reach_workers(settings, surrogate_key(store, path))

    purged, workers = asyncio.run(run())
    removed = purged.removed + (workers.removed if workers else 0)
    if not removed and not purged.answers and not (workers and workers.unreached):
        print(f"imgproxy: nothing cached for {store}/{path}: 0 entries removed", file=sys.stderr)
        if not _shared_tiers(settings):
            print(f"imgproxy: {MEMORY_ONLY}: a server's memory can't be purged", file=sys.stderr)
        return 1
    print(f"purged {removed} cached entries of {store}/{path}")
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
    for answer in purged.answers:
        if answer.ok:
            print(f"{answer.url}: {answer.detail}")
        else:
            failure = f"HTTP cache {answer.url} did not purge {store}/{path}: {answer.detail}"
            print(f"imgproxy: {failure}", file=sys.stderr)
    return 3 if purged.failed or (workers and workers.unreached) else 0


MEMORY_ONLY = "only the memory tier is configured (no cache.disk_path, no cache.redis_url)"


def _shared_tiers(settings: Settings) -> bool:
    """A tier that outlives this process: what purge and warm reach."""
    return bool(settings.cache.disk_path or settings.cache.redis_url)


def _warm(settings: Settings, args: argparse.Namespace) -> int:
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
            failure = f"failed: {args.store}/{outcome.path} (p={outcome.preset}): {outcome.status}"
            bar.write(f"imgproxy: {failure} {outcome.detail}".rstrip(), file=sys.stderr)

    from imgproxy.render.probe import own_process_ceiling

    own_process_ceiling(settings)  # as `serve` does

    async def run() -> maintenance.WarmSummary:
        services = Services.build(settings)
        try:
            return await maintenance.warm(
                services,
                args.store,
                presets,
                on_total=lambda total: setattr(bar, "total", total),
                on_done=done,
            )
        finally:
            await services.close()

    try:
        summary = asyncio.run(run())
    finally:
        bar.close()
    print(
        f"warm {args.store}: made {summary.made}, failed {summary.failed}, "
        f"skipped {summary.skipped} (already cached)"
    )
    return 1 if summary.failed else 0


# `imgproxy config --FLAG` prints the file config/ ships, so a pip install has them too:
# imgproxy/server/deploy/ holds copies as package data (a test keeps them equal to config/).
DEPLOYMENT_FILES = {
    "nginx": ("nginx.conf", "the nginx site in front of imgproxy serve"),
    "varnish": ("varnish.vcl", "the Varnish VCL in front of imgproxy serve"),
    "systemd": ("imgproxy.service", "the systemd unit running imgproxy serve"),
    "production": ("production.toml", "a production config for imgproxy serve"),
}


def deployment_file(flag: str) -> bytes:
    name, _ = DEPLOYMENT_FILES[flag]
    return importlib.resources.files("imgproxy.server").joinpath("deploy", name).read_bytes()


def _config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    flag = next((flag for flag in DEPLOYMENT_FILES if getattr(args, flag)), None)
    if flag is not None:
        sys.stdout.buffer.write(deployment_file(flag))  # the same bytes, whatever the locale
        sys.stdout.buffer.flush()
        return 0
    if not args.reference:
        flags = ", ".join(f"--{flag}" for flag in ["reference", *DEPLOYMENT_FILES])
        parser.error(f"config: nothing to do; try imgproxy config with one of {flags}")
    from imgproxy.server import reference  # only this command builds the reference

    print(reference.markdown(), end="")
    return 0
