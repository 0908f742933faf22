"""Optional features -> their pip extra: a deployment that configures one without installing
it refuses to start with the command that fixes it, instead of failing on first use.

The core (an ASGI app, the WSGI middleware, fs/sql-SQLite/http stores, memory and disk
tiers) needs only Starlette, Pillow, aiofiles, cachetools and httpx.
"""

from __future__ import annotations

import importlib.util

from imgproxy.errors import ConfigError

DISTRIBUTION = "imgproxy-server"


def require(module: str, *, extra: str, feature: str) -> None:
    """ConfigError naming the extra when `module` cannot be imported."""
    if importlib.util.find_spec(module.split(".")[0]) is None:
        raise ConfigError(
            f"{feature} needs the {extra!r} extra: pip install '{DISTRIBUTION}[{extra}]'"
        )
