"""`imgproxy serve | check | sign` (SPEC §9)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence

from imgproxy.errors import BadRequest, ConfigError
from imgproxy.server import CONFIG_ENV
from imgproxy.settings import Settings
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

    args = parser.parse_args(argv)
    try:
        settings = _load(args.config)
    except ConfigError as exc:
        print(f"imgproxy: invalid config: {exc}", file=sys.stderr)
        return 2
    return {"serve": _serve, "check": _check, "sign": _sign}[args.command](settings, args)


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=os.environ.get(CONFIG_ENV), help=f"TOML file (default: ${CONFIG_ENV})"
    )


def _load(path: str | None) -> Settings:
    settings = Settings.from_file(path) if path else Settings.from_mapping({})
    # Build every store now, so a bad store refuses to start here and not on first use.
    from imgproxy.pipeline import Pipeline

    Pipeline(settings).executor.shutdown()
    return settings


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    if args.config:
        os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    fast = importlib.util.find_spec("uvloop") and importlib.util.find_spec("httptools")
    uvicorn.run(
        "imgproxy.server:app_from_env",
        factory=True,
        host=args.host or settings.server.host,
        port=args.port if args.port is not None else settings.server.port,
        workers=args.workers or settings.server.workers,
        loop="uvloop" if fast else "asyncio",
        http="httptools" if fast else "h11",
        access_log=False,
        server_header=False,
    )
    return 0


def _check(settings: Settings, _: argparse.Namespace) -> int:
    print(f"config ok: {len(settings.stores)} store(s), {len(settings.presets)} preset(s)")
    for name, store in settings.stores.items():
        options = ", ".join(f"{k}={v!r}" for k, v in sorted(store.options.items()))
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
