"""Jinja2 globals `imgproxy_url(store, path, **params)` and `imgproxy_srcset(store, path,
widths, **params)`, producing signed URLs under a mount point."""

from __future__ import annotations

import functools
from collections.abc import MutableMapping
from typing import Any

from imgproxy.settings import Settings
from imgproxy.urls import srcset, url_for


def install(globals_: MutableMapping[str, Any], settings: Settings, *, mount: str) -> None:
    """`install(env.globals, settings, mount="/media")` for a Jinja2 Environment."""
    globals_["imgproxy_url"] = functools.partial(url_for, settings=settings, mount=mount)
    globals_["imgproxy_srcset"] = functools.partial(srcset, settings=settings, mount=mount)
