"""Jinja2 globals `imgproxy_url(store, path, **params)`, `imgproxy_srcset(store, path,
widths, **params)` and `imgproxy_picture(store, path, widths=..., **params)`, producing
signed URLs (and `<picture>` markup) under a mount point."""

from __future__ import annotations

import functools
from collections.abc import MutableMapping
from typing import Any

from imgproxy.responsive import picture
from imgproxy.settings import Settings
from imgproxy.urls import srcset, url_for


def install(globals_: MutableMapping[str, Any], settings: Settings, *, mount: str) -> None:
    """`install(env.globals, settings, mount="/media")` for a Jinja2 Environment."""
    globals_["imgproxy_url"] = functools.partial(url_for, settings=settings, mount=mount)
    globals_["imgproxy_srcset"] = functools.partial(srcset, settings=settings, mount=mount)
    globals_["imgproxy_picture"] = functools.partial(_picture, settings=settings, mount=mount)


def _picture(store: str, path: str, **options: Any) -> Any:
    """Markup, not text: Jinja must not escape it again (its attributes are escaped)."""
    from markupsafe import Markup

    return Markup(picture(store, path, **options))  # noqa: S704 - picture() escapes every value
