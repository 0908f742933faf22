"""Other servers' URL dialects -> the native request they mean (SPEC §15.2, §15.3).

A dialect owns a first path segment (`/thumbor/...`, `/imgproxy/...`): it checks that
server's own signature over the URL as sent, then translates the rest into a store path and
native parameters. From there the URL is judged exactly as the native URL it maps to, so
both share one rendition, ETag and cache entry, and every policy and limit holds for both.
"""

from __future__ import annotations

from collections.abc import Mapping

from imgproxy.dialects.imgproxy import ImgproxyUrls
from imgproxy.dialects.thumbor import ThumborDialect
from imgproxy.dialects.translation import Dialect, Translation
from imgproxy.errors import ConfigError
from imgproxy.settings import Settings

__all__ = ["Dialect", "Translation", "build_dialects"]


def build_dialects(settings: Settings, stores: Mapping[str, object]) -> dict[str, Dialect]:
    """The configured dialects by their path segment; a dialect's store must exist and no
    store may share its segment (the URL would be ambiguous)."""
    dialects: dict[str, Dialect] = {}
    for name in ("thumbor", "imgproxy"):
        config = getattr(settings.dialects, name)
        if config is None:
            continue
        if config.store not in stores:
            raise ConfigError(f"dialects.{name}.store: no store named {config.store!r}")
        if name in stores:
            raise ConfigError(f"stores.{name}: the {name} dialect's URLs begin with /{name}/")
    if settings.dialects.thumbor is not None:
        dialects["thumbor"] = ThumborDialect.from_settings(settings.dialects.thumbor, settings)
    if settings.dialects.imgproxy is not None:
        dialects["imgproxy"] = ImgproxyUrls.from_settings(settings.dialects.imgproxy, settings)
    return dialects
