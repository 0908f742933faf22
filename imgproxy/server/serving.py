"""`imgproxy serve`: what is refused or warned of before a server starts (an untested
uvicorn, unsigned URLs on an address others reach, the demo beside keys, a store that cannot
start), then the server: one uvicorn process, or workers under a supervisor (workers.py).

The supervisor of `--workers N` serves nothing, so it imports neither the app nor uvicorn:
a child process builds the stores to check them (`validated_apart`). It held 35 MiB RSS
(26 MiB PSS) for modules it never used again, beside workers of 30."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import ipaddress
import os
import re
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

from imgproxy import logs
from imgproxy.errors import ConfigError
from imgproxy.extras import require
from imgproxy.settings import CONFIG_ENV, Settings

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


def serve(
    settings: Settings, args: argparse.Namespace, *, reload_refused: Callable[[], str | None]
) -> int:
    """`imgproxy serve`: one uvicorn process, or workers under a supervisor (workers.py);
    `reload_refused` says why SIGHUP must not reload the configuration file as it is now."""
    require("uvicorn", extra="server", feature="imgproxy serve")
    refused = untested_uvicorn(importlib.metadata.version("uvicorn"))
    if refused is not None:
        print(f"imgproxy: {refused}", file=sys.stderr)
        return 2
    host = args.host or settings.server.host
    count = args.workers or settings.server.workers
    _validate_stores(settings, count)
    refuse_unsigned(settings, host)
    _warn_about_the_demo(settings)
    if args.config:
        os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    options = _uvicorn_options(settings)
    port = args.port if args.port is not None else settings.server.port
    _pass_bounds_on(settings, count)
    return _listen(host, port, count, options, check=reload_refused)


def _validate_stores(settings: Settings, count: int) -> None:
    """A bad store refuses to start here, not on first use; a supervisor of workers checks
    in a child process (`validated_apart`) so as to import none of what the stores take."""
    if count > 1:
        refused = validated_apart(settings)
        if refused is not None:
            raise ConfigError(refused)
    else:
        from imgproxy.services import validate

        asyncio.run(validate(settings))


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's keyword options, logging configured first: uvloop and httptools when both
    are installed, and imgproxy's own access log and connection limits."""
    from imgproxy.server import connection_limits

    server = settings.server
    fast = bool(importlib.util.find_spec("uvloop") and importlib.util.find_spec("httptools"))
    logs.configure(level=server.log_level, fmt=server.log_format)
    return {
        "loop": "uvloop" if fast else "asyncio",
        "access_log": False,  # imgproxy's own (server.access_log) knows the store and tier
        "log_config": None,  # uvicorn's loggers go to the handler logs.configure set up
        "log_level": server.log_level,
        "server_header": False,
        **connection_limits.uvicorn_options(fast=fast),  # head, idle and keep-alive limits
    }


def _pass_bounds_on(settings: Settings, count: int) -> None:
    """The environment each server process reads its share and its limits from."""
    from imgproxy.server import connection_limits

    server = settings.server
    os.environ["IMGPROXY_SERVER__WORKERS"] = str(count)  # the workers' settings share cores
    os.environ[connection_limits.MAX_HEADERS_ENV] = str(server.max_headers)  # per connection
    os.environ[connection_limits.MAX_CONNECTIONS_ENV] = str(server.max_connections)


def _listen(
    host: str, port: int, count: int, options: dict[str, Any], *, check: Callable[[], str | None]
) -> int:
    """Claims the address, then serves on it until stopped: 1 when it is in use."""
    from imgproxy.server import listening

    try:
        lock, port = listening.claim(host, port)
    except listening.AddressInUse as exc:
        print(f"imgproxy: {exc}", file=sys.stderr)
        return 1
    with lock:  # held while serving: a second server on this address refuses to start
        if count > 1:  # a socket per worker: the kernel spreads connections (workers.py)
            from imgproxy.server import workers

            return workers.supervise(host, port, count, options, check=check)
        import uvicorn

        uvicorn.run(
            "imgproxy.server.app:app_from_env", factory=True, host=host, port=port, **options
        )
    return 0


def validated_apart(settings: Settings) -> str | None:
    """Why `settings`' stores cannot start (None: they can), found by building them in a
    forked child, so that this process never imports what that takes (the app, Pillow, each
    store's client). A ConfigError's own message; anything else is named by its type, with
    the child's traceback on stderr."""
    read, write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)  # not the supervisor's handlers
        reason = ""
        try:
            from imgproxy.services import validate

            asyncio.run(validate(settings))
        except ConfigError as exc:
            reason = str(exc)
        except BaseException as exc:
            traceback.print_exc()
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            sys.stderr.flush()
            with os.fdopen(write, "wb") as pipe:
                pipe.write(reason.encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        reason = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    if status != 0 and not reason:
        reason = f"the process checking the stores ended with status {status}"
    return reason or None


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
