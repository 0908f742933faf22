"""`imgproxy`, the console script. The commands themselves live in serving.py (`serve`) and
tools.py (`check`, `sign`, `purge`, `warm`); `--help` shows DESCRIPTION, not this docstring,
so a user reads what the commands do, not where they live."""

from __future__ import annotations

import argparse
import functools
import importlib.resources
import os
import sys
from collections.abc import Callable, Sequence

from imgproxy import __version__
from imgproxy.coercion import named
from imgproxy.errors import ConfigError
from imgproxy.presets import check_presets
from imgproxy.server import serving
from imgproxy.settings import CONFIG_ENV, Settings, unread_variables

DESCRIPTION = (
    "Serve images, check a configuration, sign URLs, purge or warm a source's renditions, "
    "and print the configuration reference or a shipped deployment file."
)

SIGN_HELP = """\
URL is the path after the mount point, /STORE/PATH, with its query: /media/a.jpg?w=300.
A missing leading slash is added (media/a.jpg?w=300 signs /media/a.jpg?w=300), and
characters a browser percent-encodes (spaces, non-ASCII) are encoded first, so the
printed URL is what the server will check. A full URL (http://host/...) is refused: its
path includes the mount point, which only you know; pass the part after it.
"""

PURGE_HELP = (
    "Running workers of `imgproxy serve` on this host drop it from their memory (with "
    "cache.disk_path; across hosts, cache.redis_url). Exit status: 0 renditions removed (or "
    "every cache.purge_urls confirmed), 1 nothing cached for it, 2 bad input, 3 an HTTP cache "
    "or a running worker failed (the tiers were purged)."
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
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
    try:
        return _command(args)(settings, args)
    except ConfigError as exc:  # a store's value, say, that the environment set
        print(f"imgproxy: {named(exc, settings.variables)}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgproxy", description=DESCRIPTION)
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
        "purge", help="remove every cached rendition of a source", description=PURGE_HELP
    )
    _config_option(purge)
    purge.add_argument("source", metavar="STORE/PATH", help="e.g. media/photos/a.jpg")

    warm = commands.add_parser("warm", help="pre-render a store's files for some presets")
    _config_option(warm)
    warm.add_argument("--store", required=True)
    warm.add_argument("--preset", required=True, help="one name, or several: small,medium")

    printed = commands.add_parser(
        "config", help="print the configuration reference or a shipped deployment file"
    ).add_mutually_exclusive_group()
    printed.add_argument(
        "--reference", action="store_true", help="every key: type, default, meaning (Markdown)"
    )
    for flag, (name, what) in DEPLOYMENT_FILES.items():
        printed.add_argument(f"--{flag}", action="store_true", help=f"{what} ({name})")
    return parser


def _command(args: argparse.Namespace) -> Callable[[Settings, argparse.Namespace], int]:
    """The command's function. The tools import the whole app, which `serve`'s supervisor
    must not hold (serving.py), so they are imported only when one is run."""
    if args.command == "serve":
        reload_refused = functools.partial(_reload_refused, args.config)
        return functools.partial(serving.serve, reload_refused=reload_refused)
    from imgproxy.server import tools

    tools_by_name: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
        "check": tools.check,
        "sign": tools.sign,
        "purge": tools.purge,
        "warm": tools.warm,
    }
    return tools_by_name[args.command]


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help=f"TOML file (default: ${CONFIG_ENV}, else built-in)")


def _load(path: str | None) -> Settings:
    settings = Settings.from_file(path) if path else Settings.from_mapping({})
    check_presets(settings)  # every command: a bad preset refuses to run and names itself
    return settings


def _reload_refused(path: str | None) -> str | None:
    """Why SIGHUP must not reload the configuration file as it is now (None: it may)."""
    if path is None:
        return f"no configuration file (--config or ${CONFIG_ENV}) to reload"
    try:
        settings = _load(path)
    except Exception as exc:  # whatever is wrong with the new file, the old one keeps serving
        return str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
    return serving.validated_apart(settings)  # what `serve` checks before it starts


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
