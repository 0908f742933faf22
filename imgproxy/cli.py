"""`imgproxy serve | check | sign | purge | warm` (SPEC §9)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Any

from imgproxy import logs, maintenance
from imgproxy.errors import BadRequest, ConfigError
from imgproxy.extras import require
from imgproxy.mounts import check_presets
from imgproxy.services import Services, validate
from imgproxy.settings import CONFIG_ENV, Settings
from imgproxy.urls import sign_url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imgproxy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the standalone server")
    _config_option(serve)
    serve.add_argument("--host", help="overrides server.host")
    serve.add_argument("--port", type=int, help="overrides server.port")
    serve.add_argument("--workers", type=int, help="overrides server.workers")

    check = commands.add_parser("check", help="validate a config and list its stores")
    _config_option(check)

    sign = commands.add_parser("sign", help="sign a URL path such as /media/a.jpg?w=300")
    _config_option(sign)
    sign.add_argument("url", help="path after the mount point, with its query")

    purge = commands.add_parser("purge", help="remove every cached rendition of a source")
    _config_option(purge)
    purge.add_argument("source", metavar="STORE/PATH", help="e.g. media/photos/a.jpg")

    warm = commands.add_parser("warm", help="pre-render a store's files for some presets")
    _config_option(warm)
    warm.add_argument("--store", required=True)
    warm.add_argument("--preset", required=True, help="one name, or several: small,medium")

    args = parser.parse_args(argv)
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
    except ConfigError as exc:
        print(f"imgproxy: {exc}", file=sys.stderr)
        return 2


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=os.environ.get(CONFIG_ENV), help=f"TOML file (default: ${CONFIG_ENV})"
    )


def _load(path: str | None) -> Settings:
    settings = Settings.from_file(path) if path else Settings.from_mapping({})
    check_presets(settings)  # every command: a bad preset refuses to run and names itself
    return settings


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    for module in ("uvicorn", "prometheus_client"):
        require(module, extra="server", feature="imgproxy serve")
    import uvicorn

    from imgproxy import connections, workers

    asyncio.run(validate(settings))  # a bad store refuses to start here, not on first use
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
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    count = args.workers or settings.server.workers
    if count > 1:  # a socket per worker: the kernel spreads connections (workers.py)
        return workers.supervise(host, port, count, options)
    uvicorn.run("imgproxy.server:app_from_env", factory=True, host=host, port=port, **options)
    return 0


DEMO_WARNING = """\
imgproxy: WARNING: server.demo = true with security.keys set.
imgproxy: WARNING: the demo page signs URLs with this server's own key: anyone who can open
imgproxy: WARNING: it gets signed URLs, so signing protects nothing. Never expose the demo
imgproxy: WARNING: publicly; turn it off (server.demo = false) outside local development.
"""


def _warn_about_the_demo(settings: Settings) -> None:
    if settings.server.demo and settings.security.keys:
        print(DEMO_WARNING, end="", file=sys.stderr, flush=True)


def _check(settings: Settings, _: argparse.Namespace) -> int:
    asyncio.run(validate(settings))  # builds every store; no cache tier, nothing written
    print(f"config ok: {len(settings.stores)} store(s), {len(settings.presets)} preset(s)")
    for name, store in settings.stores.items():
        options = store.describe()
        state = "approved" if store.approved else "not approved"
        print(f"  /{name}/  kind={store.kind}  {options}  ({state} by default)")
    return 0


def _sign(settings: Settings, args: argparse.Namespace) -> int:
    security = settings.security
    if not security.keys:
        print("imgproxy: security.keys is empty: signing is off", file=sys.stderr)
        return 2
    try:
        print(sign_url(args.url, security.keys[0], signature_length=security.signature_length))
    except BadRequest as exc:
        print(f"imgproxy: {exc.detail}", file=sys.stderr)
        return 2
    return 0


def _purge(settings: Settings, args: argparse.Namespace) -> int:
    store, _, path = args.source.strip("/").partition("/")
    if not store or not path:
        print("imgproxy: purge needs STORE/PATH, e.g. media/photos/a.jpg", file=sys.stderr)
        return 2

    async def run() -> int:
        services = Services.build(settings)
        try:
            return await maintenance.purge(services, store, path)
        finally:
            await services.close()

    removed = asyncio.run(run())
    print(f"purged {removed} cached entries of {store}/{path}")
    return 0


def _warm(settings: Settings, args: argparse.Namespace) -> int:
    require("tqdm", extra="server", feature="imgproxy warm")
    from tqdm import tqdm

    presets = [name.strip() for name in args.preset.split(",") if name.strip()]
    bar = tqdm(unit="rendition", file=sys.stderr, dynamic_ncols=True)

    def done(path: str, status: int) -> None:
        bar.update(1)

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
