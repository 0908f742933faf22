"""Tiers from fastest to slowest -> one cache: lookups that fill the upper tiers, and
`get_or_make`, which makes a missing rendition once per process (single-flight) and, with a
Locking tier (Redis), once across every process sharing it.

A tier that fails (Redis down, disk full) counts as a miss with a warning: the cache may
make a request slower, never fail it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from imgproxy import logs, timing
from imgproxy.cache import (
    SOURCE_ID,
    Broadcasting,
    CacheKey,
    CacheTier,
    Closing,
    Immediate,
    Located,
    Locating,
    Locking,
    Rendition,
)
from imgproxy.cache.flight import SingleFlight

log = logging.getLogger(__name__)

Lookup = Callable[[CacheKey], Awaitable[Rendition | Located | None]]
Make = Callable[[], Awaitable[Rendition]]


class TieredCache:
    def __init__(
        self,
        tiers: Sequence[CacheTier],
        *,
        on_lookup: Callable[[str, bool], None] = lambda tier, hit: None,
    ) -> None:
        self.tiers = tuple(tiers)
        self.on_lookup = on_lookup
        # Chosen once, not per lookup: with `locate`, a Locating tier answers with the
        # file's location (for X-Accel-Redirect) instead of reading its bytes.
        self._plain: list[tuple[CacheTier, Lookup]] = [(t, t.get) for t in self.tiers]
        self._locating: list[tuple[CacheTier, Lookup]] = [
            (t, _locator(t) if isinstance(t, Locating) else t.get) for t in self.tiers
        ]
        self._lock = next((t for t in self.tiers if isinstance(t, Locking)), None)
        self._broadcast = next((t for t in self.tiers if isinstance(t, Broadcasting)), None)
        self._listening: asyncio.Task[None] | None = None
        first = self.tiers[0] if self.tiers else None
        self._immediate = first if isinstance(first, Immediate) else None
        self._flights: SingleFlight[Rendition] = SingleFlight()

    async def get(self, key: CacheKey, *, locate: bool = False) -> Rendition | Located | None:
        """The first tier's hit, counted per tier; with `locate`, a disk hit's location."""
        with timing.measure("cache"):
            return await self._lookup(key, self._locating if locate else self._plain)

    async def get_or_make(
        self, key: CacheKey, make: Make, *, locate: bool = False
    ) -> Rendition | Located:
        lookups = self._locating if locate else self._plain
        with timing.measure("cache"):
            immediate = self._immediate
            if immediate is None:
                cached = await self._lookup(key, lookups)
            else:  # a memory tier first: its hit is answered with no await at all
                cached = immediate.peek(key)
                self.on_lookup(immediate.name, cached is not None)
                if cached is not None:
                    logs.note("tier", immediate.name)
                else:
                    cached = await self._lookup(key, lookups, start=1)
        if cached is not None:
            return cached
        return await self._flights.run(key.rendition, lambda: self._make_once(key, make))

    async def recall(self, key: CacheKey) -> Rendition | None:
        """A plain lookup, not counted as a rendition hit or miss (source facts)."""
        if self._listening is None and self._broadcast is not None:
            self._listen(self._broadcast)
        for depth, tier in enumerate(self.tiers):
            value = await self._get(tier, tier.get, key)
            if isinstance(value, Rendition):
                await self._fill(depth, key, value)
                return value
        return None

    async def put(self, key: CacheKey, value: Rendition) -> None:
        for tier in self.tiers:
            await self._put(tier, key, value)

    async def purge(self, source: str) -> int:
        """Every tier here, then every other instance's own tiers (through the broadcast).
        A tier that fails does not stop the others, nor the broadcast; its error is raised
        afterwards, so the caller knows the purge is incomplete."""
        removed = 0
        failed: list[Exception] = []
        for tier in self.tiers:
            try:
                removed += await tier.purge(source)
            except Exception as exc:  # the rest must still be purged
                log.warning("cache tier %s failed on purge: %s", tier.name, exc)
                failed.append(exc)
        if self._broadcast is not None:
            try:
                await self._broadcast.announce(source)
            except Exception as exc:
                log.warning("the purge could not be announced to other instances: %s", exc)
                failed.append(exc)
        if failed:
            raise failed[0]
        return removed

    async def close(self) -> None:
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listening
        for tier in self.tiers:
            if isinstance(tier, Closing):
                await tier.close()

    async def _lookup(
        self, key: CacheKey, lookups: list[tuple[CacheTier, Lookup]], start: int = 0
    ) -> Rendition | Located | None:
        if self._listening is None and self._broadcast is not None:
            self._listen(self._broadcast)
        for depth, (tier, lookup) in enumerate(lookups[start:], start):
            try:  # inline, not _get(): this loop is the memory hit's path
                value = await lookup(key)
            except Exception as exc:  # any tier failure degrades to a miss
                log.warning("cache tier %s failed on get: %s", tier.name, exc)
                value = None
            self.on_lookup(tier.name, value is not None)
            if value is None:
                continue
            logs.note("tier", tier.name)
            if depth and isinstance(value, Rendition):
                await self._fill(depth, key, value)
            return value
        return None

    def _listen(self, broadcast: Broadcasting) -> None:
        """Started by the first lookup that reaches past memory: before one, this process
        keeps nothing a purge elsewhere would have to drop (a memory hit needs a fill)."""

        async def forget(source: str) -> None:
            if not SOURCE_ID.fullmatch(source):  # anyone with Redis access can publish
                log.warning("ignored a purge announcement that is no source id")
                return
            for tier in self.tiers:
                if not tier.shared:
                    await self._purge_quietly(tier, source)

        self._listening = asyncio.get_running_loop().create_task(broadcast.listen(forget))

    @staticmethod
    async def _purge_quietly(tier: CacheTier, source: str) -> None:
        try:
            await tier.purge(source)
        except Exception as exc:  # a listener must outlive one tier's failure
            log.warning("cache tier %s failed on purge: %s", tier.name, exc)

    async def _make_once(self, key: CacheKey, make: Make) -> Rendition:
        if self.tiers:
            # A flight that just ended stored it there after this request's lookup.
            done = await self._get(self.tiers[0], self.tiers[0].get, key)
            if isinstance(done, Rendition):
                return done
        lock = self._lock
        claimed = await lock.claim(key) if lock is not None else False
        try:
            if lock is not None:
                # Claimed: another instance may have stored it between our lookup and our
                # claim (it stores before it releases). Not claimed: wait for its result.
                landed = await (lock.get(key) if claimed else lock.wait(key))
                if landed is not None:
                    await self.put(key, landed)
                    return landed
            rendition = await make()
            await self.put(key, rendition)
            return rendition
        finally:
            if claimed and lock is not None:
                await lock.release(key)

    async def _fill(self, depth: int, key: CacheKey, value: Rendition) -> None:
        for upper in self.tiers[:depth]:
            await self._put(upper, key, value)

    @staticmethod
    async def _get(tier: CacheTier, lookup: Lookup, key: CacheKey) -> Rendition | Located | None:
        try:
            return await lookup(key)
        except Exception as exc:  # any tier failure degrades to a miss
            log.warning("cache tier %s failed on get: %s", tier.name, exc)
            return None

    @staticmethod
    async def _put(tier: CacheTier, key: CacheKey, value: Rendition) -> None:
        try:
            await tier.put(key, value)
        except Exception as exc:  # see the module docstring
            log.warning("cache tier %s failed on put: %s", tier.name, exc)


def _locator(tier: Locating) -> Lookup:
    async def lookup(key: CacheKey) -> Located | None:
        path = await tier.locate(key)
        return Located(path) if path is not None else None

    return lookup
