"""Cache tiers for renditions: the CacheTier protocol and the tiered lookup over them.

Keys contain the source's version (the rendition id is its ETag), so a tier never needs to
know about invalidation: a changed source asks for new keys (SPEC §6). Keys also name their
source, so `purge` removes one source's renditions without scanning the others.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CacheKey:
    source: str  # the source's stable id (its Surrogate-Key)
    rendition: str  # the rendition's ETag, without quotes: version + params + format
    extension: str  # of the output format, so a file on disk carries its type

    @property
    def name(self) -> str:
        return f"{self.rendition}.{self.extension}"


@dataclass(frozen=True, slots=True)
class Rendition:
    body: bytes
    media_type: str
    modified: float | None = None  # the source's, kept as a disk file's mtime


@dataclass(frozen=True, slots=True)
class Located:
    """A rendition on disk, to be sent by the web server in front (X-Accel-Redirect)."""

    path: str  # relative to the disk tier's root


class CacheTier(Protocol):
    name: str

    async def get(self, key: CacheKey) -> Rendition | None: ...

    async def put(self, key: CacheKey, value: Rendition) -> None: ...

    async def purge(self, source: str) -> int:
        """Remove every rendition of one source; returns how many were removed."""
        ...


Lookup = Callable[[CacheKey], Awaitable[Rendition | Located | None]]


class TieredCache:
    """Tiers from fastest to slowest; a hit in a lower tier fills the ones above it. A tier
    that fails (Redis down, disk full) counts as a miss with a warning: the cache may make a
    request slower, never fail it."""

    def __init__(
        self,
        tiers: Sequence[CacheTier],
        *,
        on_lookup: Callable[[str, bool], None] = lambda tier, hit: None,
        locate: bool = False,
    ) -> None:
        self.tiers = tuple(tiers)
        self.on_lookup = on_lookup
        # With `locate`, a tier that can (disk) answers hits with the file's location, for
        # X-Accel-Redirect, instead of reading its bytes. Chosen once, not per lookup.
        self._lookups: list[tuple[CacheTier, Lookup]] = [
            (tier, _locator(tier) if locate and hasattr(tier, "locate") else tier.get)
            for tier in self.tiers
        ]

    async def get(self, key: CacheKey) -> Rendition | Located | None:
        for depth, (tier, lookup) in enumerate(self._lookups):
            try:
                value = await lookup(key)
            except Exception as exc:  # any tier failure degrades to a miss
                log.warning("cache tier %s failed on get: %s", tier.name, exc)
                value = None
            self.on_lookup(tier.name, value is not None)
            if value is None:
                continue
            if isinstance(value, Rendition):
                for upper in self.tiers[:depth]:
                    await self._put(upper, key, value)
            return value
        return None

    async def put(self, key: CacheKey, value: Rendition) -> None:
        for tier in self.tiers:
            await self._put(tier, key, value)

    async def purge(self, source: str) -> int:
        removed = 0
        for tier in self.tiers:
            removed += await tier.purge(source)
        return removed

    @staticmethod
    async def _put(tier: CacheTier, key: CacheKey, value: Rendition) -> None:
        try:
            await tier.put(key, value)
        except Exception as exc:  # see get()
            log.warning("cache tier %s failed on put: %s", tier.name, exc)


def _locator(tier: CacheTier) -> Lookup:
    locate: Callable[[CacheKey], Awaitable[str | None]] = getattr(tier, "locate")  # noqa: B009

    async def lookup(key: CacheKey) -> Located | None:
        path = await locate(key)
        return Located(path) if path is not None else None

    return lookup
