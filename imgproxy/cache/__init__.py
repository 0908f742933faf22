"""Cache tiers for renditions: the CacheTier protocol and the tiered lookup over them.

Keys already contain the source's version (they are the rendition's ETag), so a tier never
needs to know about invalidation: a changed source simply asks for a new key (SPEC §6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Rendition:
    body: bytes
    media_type: str


class CacheTier(Protocol):
    name: str

    async def get(self, key: str) -> Rendition | None: ...

    async def put(self, key: str, value: Rendition) -> None: ...

    async def delete(self, key: str) -> None: ...


class TieredCache:
    """Tiers from fastest to slowest; a hit in a lower tier fills the ones above it."""

    def __init__(self, tiers: Sequence[CacheTier]) -> None:
        self.tiers = tuple(tiers)

    async def get(self, key: str) -> Rendition | None:
        for depth, tier in enumerate(self.tiers):
            value = await tier.get(key)
            if value is not None:
                for upper in self.tiers[:depth]:
                    await upper.put(key, value)
                return value
        return None

    async def put(self, key: str, value: Rendition) -> None:
        for tier in self.tiers:
            await tier.put(key, value)

    async def delete(self, key: str) -> None:
        for tier in self.tiers:
            await tier.delete(key)
