"""The Store protocol (cheap metadata first, bytes later) and the factory from settings.

`stat` must be cheap and never read content: its `version` goes into every cache key and
ETag, so a changed source is never served stale and a 304 reads no bytes (SPEC §5, §6).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from imgproxy.errors import ConfigError
from imgproxy.settings import Settings, StoreSettings


@dataclass(frozen=True, slots=True)
class StoredFile:
    """What a store knows about one file without reading it."""

    path: str
    version: str  # changes whenever the bytes may have changed
    approved: bool
    size: int | None = None
    modified: float | None = None  # POSIX timestamp
    filename: str = ""


@runtime_checkable
class Store(Protocol):
    async def stat(self, path: str) -> StoredFile:
        """Metadata for `path`; raises NotFound. Never reads the content."""
        ...

    def open(self, file: StoredFile) -> AsyncIterator[bytes]:
        """The content of a file `stat` returned, as chunks."""
        ...


def build_store(config: StoreSettings, settings: Settings) -> Store:
    """The one place a store kind's name becomes a class (no dotted import strings)."""
    from imgproxy.stores import filesystem, http, sql

    if config.kind == "fs":
        return filesystem.FileSystemStore.from_settings(config, settings.base_dir)
    if config.kind == "sql":
        return sql.from_settings(config, settings.base_dir)
    if config.kind == "http":
        return http.HTTPStore.from_settings(config, settings.base_dir)
    known = "fs, sql, http"
    raise ConfigError(f"stores.{config.name}.kind: unknown store kind {config.kind!r} ({known})")
