"""An in-process LRU of renditions, bounded by their total bytes (not their count:
one 4096 px PNG weighs as much as a thousand avatars)."""

from __future__ import annotations

from cachetools import LRUCache

from imgproxy.cache import READY_BYTES, READY_PER_RENDITION, CacheKey, Rendition

# Per-entry cost of the key, the value object and the LRU bookkeeping (measured about
# 1.3 KB), plus the ready responses a value may carry (response.ready_response, bodies
# shared). Counted as 200 + 4 x 400 B, a tier of renditions each asked by four URLs held
# 2.25 times its memory_bytes (SPEC §11.1).
ENTRY_OVERHEAD = 1280 + READY_PER_RENDITION * READY_BYTES


def _weight(value: Rendition) -> int:
    return len(value.body) + ENTRY_OVERHEAD


class MemoryTier:
    name = "memory"
    shared = False

    def __init__(self, max_bytes: int) -> None:
        self._items: LRUCache[tuple[str, str], Rendition] = LRUCache(
            maxsize=max_bytes, getsizeof=_weight
        )

    async def get(self, key: CacheKey) -> Rendition | None:
        return self._items.get((key.source, key.rendition))

    def peek(self, key: CacheKey) -> Rendition | None:
        return self._items.get((key.source, key.rendition))

    async def put(self, key: CacheKey, value: Rendition) -> None:
        if _weight(value) <= self._items.maxsize:  # larger items would only evict everything
            self._items[(key.source, key.rendition)] = value

    async def purge(self, source: str) -> int:
        """Linear in the tier's size; the memory tier is small and purges are rare. (It never
        serves a stale version anyway: sources are resolved before any lookup.)"""
        stale = [key for key in list(self._items.keys()) if key[0] == source]
        for key in stale:
            self._items.pop(key, None)
        return len(stale)
