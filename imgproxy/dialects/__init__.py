"""Other servers' URL dialects -> the native request they mean (SPEC §15.2, §15.3).

A dialect owns a first path segment (`/thumbor/...`, `/imgproxy/...`): it checks that
server's own signature over the URL as sent, then translates the rest into a store path and
native parameters. From there the URL is judged exactly as the native URL it maps to, so
both share one rendition, ETag and cache entry, and every policy and limit holds for both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from imgproxy.errors import ConfigError
from imgproxy.settings import Settings


@dataclass(frozen=True, slots=True)
class Translation:
    """What a foreign URL means: a path in a store (decoded, judged later like any native
    path) and the native query parameters (SPEC §2.1, §15.1)."""

    store: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)


class Dialect(Protocol):
    def translate(self, rest: str, query: str) -> Translation:
        """`rest`: the raw path after `/{dialect}/`, still percent-encoded; `query`: the raw
        query string. Raises BadSignature (403) or BadRequest (400), never anything else."""
        ...


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
    return dialects
