"""Renditions in Redis, shared by every instance, with a TTL; and the cross-instance render
lock that makes a cold rendition render once across processes.

Keys: `{prefix}r:{rendition}` holds the bytes, `{prefix}s:{source}` the set of a source's
rendition keys (so a purge is proportional to that source), `{prefix}l:{rendition}` the lock;
the channel `{prefix}purged` carries purged sources to every instance.
An outage opens a breaker for a few seconds: requests skip Redis instead of each waiting
for a timeout, and one warning is logged per outage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

from imgproxy.cache import CacheKey, Rendition

log = logging.getLogger(__name__)

RETRY_AFTER = 5.0  # seconds the breaker stays open
POLL = 0.05


class RedisTier:
    name = "redis"
    shared = True

    def __init__(
        self, url: str, *, ttl: int, prefix: str = "imgproxy:", lock_seconds: float = 30.0
    ) -> None:
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        self.ttl = ttl
        self.prefix = prefix
        self.lock_seconds = lock_seconds  # a crashed renderer's lock lapses after this
        self._open_until = 0.0
        self._held: dict[str, tuple[Lock, asyncio.Task[None]]] = {}  # renders this process owns

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._open_until

    def _failed(self, exc: Exception) -> None:
        if self.available:
            log.warning("redis unavailable (%s); using the other tiers for %ss", exc, RETRY_AFTER)
        self._open_until = time.monotonic() + RETRY_AFTER

    async def get(self, key: CacheKey) -> Rendition | None:
        if not self.available:
            return None
        try:
            body = await self.client.get(f"{self.prefix}r:{key.rendition}")
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        if not isinstance(body, bytes) or not body:
            return None
        return Rendition(body, key.media_type)

    async def put(self, key: CacheKey, value: Rendition) -> None:
        if not self.available:
            return
        members = f"{self.prefix}s:{key.source}"
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.set(f"{self.prefix}r:{key.rendition}", value.body, ex=self.ttl)
                pipe.sadd(members, key.rendition)
                pipe.expire(members, self.ttl)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed(exc)

    async def purge(self, source: str) -> int:
        members = f"{self.prefix}s:{source}"
        found = await self.client.smembers(members)
        renditions = [m.decode() if isinstance(m, bytes) else m for m in found]
        if renditions:
            await self.client.delete(*(f"{self.prefix}r:{r}" for r in renditions))
        await self.client.delete(members)
        return len(renditions)

    async def claim(self, key: CacheKey) -> bool:
        """True if this process should render `key` (it holds the lock, or Redis is out).
        redis-py's Lock: a token-checked, atomic release (a Lua script), and kept alive
        while the render runs, so a render longer than lock_seconds is not done twice."""
        if not self.available:
            return True
        lock = self.client.lock(
            f"{self.prefix}l:{key.rendition}", timeout=self.lock_seconds, blocking=False
        )
        try:
            got = await lock.acquire()
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return True
        if got:
            self._held[key.rendition] = (lock, asyncio.create_task(self._keep(lock)))
        return bool(got)

    async def _keep(self, lock: Lock) -> None:
        """Push the lock's expiry out while its render runs; a crashed renderer's lock still
        lapses after lock_seconds."""
        while True:
            await asyncio.sleep(self.lock_seconds / 3)
            try:
                await lock.reacquire()
            except (LockError, RedisError, OSError):
                return

    async def release(self, key: CacheKey) -> None:
        held = self._held.pop(key.rendition, None)
        if held is None:
            return
        lock, keeping = held
        keeping.cancel()
        try:
            await lock.release()
        except LockError:  # it lapsed meanwhile (Redis restarted): nothing of ours to free
            pass
        except (RedisError, OSError) as exc:
            self._failed(exc)

    async def wait(self, key: CacheKey) -> Rendition | None:
        """Poll for another instance's render until it lands or its lock goes away."""
        deadline = time.monotonic() + self.lock_seconds
        lock = f"{self.prefix}l:{key.rendition}"
        while time.monotonic() < deadline and self.available:
            found = await self.get(key)
            if found is not None:
                return found
            try:
                if not await self.client.exists(lock):
                    return await self.get(key)
            except (RedisError, OSError) as exc:
                self._failed(exc)
                return None
            await asyncio.sleep(POLL)
        return None

    async def announce(self, source: str) -> None:
        await self.client.publish(f"{self.prefix}purged", source)

    async def listen(self, on_purge: Callable[[str], Awaitable[None]]) -> None:
        """Subscribed for the process's life; through an outage it subscribes again. A purge
        announced while the subscription is down is missed: the tiers it would clear hold
        what this process rendered since, so the gap is as short as the outage."""
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(f"{self.prefix}purged")
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and isinstance(message.get("data"), bytes):
                        await on_purge(message["data"].decode("utf-8", "replace"))
            except (RedisError, OSError) as exc:
                self._failed(exc)
                await asyncio.sleep(RETRY_AFTER)
            finally:
                await pubsub.aclose()

    async def close(self) -> None:
        await self.client.aclose()
