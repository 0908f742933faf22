"""Renditions in Redis, shared by every instance, within a byte budget of their own; and the
cross-instance render lock that makes a cold rendition render once across processes.

Keys: `{prefix}r:{rendition}` holds the bytes, `{prefix}s:{source}` the set of a source's
rendition keys (so a purge is proportional to that source), `{prefix}l:{rendition}` the lock;
the channel `{prefix}purged` carries purged sources to every instance. The budget
(`cache.redis_bytes`, SPEC §11.1) is kept by `{prefix}bytes` (the bytes stored), `{prefix}used`
(renditions by last use) and `{prefix}sizes` (each one's size and source): every write is one
script that stores, counts, and evicts the least recently used renditions past the budget or
their TTL, each with its index entry, so neither the bytes nor the index outgrow what is live,
however fast the fleet writes. The scripts name keys from the prefix (one Redis, no cluster).

An outage opens a breaker for a few seconds: requests skip Redis instead of each waiting
for a timeout, and one warning is logged per outage. Until a Redis that stalls (accepts
connections, never answers) fails its first call, a second later, at most
`cache.redis_concurrency` of the calls requests make (get, put, claim, a waiter's poll) are
in flight in a worker, each on its own connection (inflight.py): past it a read is a miss, a
write is skipped, a claim renders here. A lock's release and keep-alive, the purge listener
and the readiness probe are apart from it: one per held lock, one, and one at a time.

A write Redis refuses (`maxmemory` reached under `noeviction`, by another user of the same
Redis) is no outage: that rendition is not kept, a refused lock is a local render, and reads
go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError, ResponseError

from imgproxy.cache import CacheKey, Rendition
from imgproxy.cache.inflight import InFlight

log = logging.getLogger(__name__)

RETRY_AFTER = 5.0  # seconds the breaker stays open
POLL = 0.05
PROBE_KEY = "imgproxy-readyz"  # no rendition's name: an ETag has no such spelling
PURGE_BATCH = 500  # renditions per purge round trip: each stays far inside the 1 s timeout

# Shared by the scripts: forget one rendition (its bytes, index entry, use and size).
_EVICT = """
local function evict(prefix, rendition)
    local meta = redis.call('HGET', prefix .. 'sizes', rendition)
    redis.call('ZREM', prefix .. 'used', rendition)
    if not meta then return 0 end
    local size, source = string.match(meta, '^(%d+) (.*)$')
    redis.call('HDEL', prefix .. 'sizes', rendition)
    redis.call('DEL', prefix .. 'r:' .. rendition)
    redis.call('SREM', prefix .. 's:' .. source, rendition)
    redis.call('DECRBY', prefix .. 'bytes', size)
    return 1
end
"""
# ARGV: prefix, rendition, source, body, ttl (s), now (ms), budget (bytes).
_PUT = (
    _EVICT
    + """
local prefix, rendition, source, body = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ttl, now, budget = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local expired = redis.call('ZRANGEBYSCORE', prefix .. 'used', '-inf', now - ttl * 1000,
    'LIMIT', 0, 64)
for _, old in ipairs(expired) do evict(prefix, old) end
evict(prefix, rendition)
redis.call('SET', prefix .. 'r:' .. rendition, body, 'EX', ttl)
redis.call('SADD', prefix .. 's:' .. source, rendition)
redis.call('EXPIRE', prefix .. 's:' .. source, ttl)
redis.call('ZADD', prefix .. 'used', now, rendition)
redis.call('HSET', prefix .. 'sizes', rendition, #body .. ' ' .. source)
local total = redis.call('INCRBY', prefix .. 'bytes', #body)
while total > budget do
    local oldest = redis.call('ZRANGE', prefix .. 'used', 0, 0)[1]
    if not oldest or oldest == rendition then break end
    evict(prefix, oldest)
    total = tonumber(redis.call('GET', prefix .. 'bytes'))
end
return total
"""
)
# ARGV: prefix, then the renditions of one source to forget.
_FORGET = (
    _EVICT
    + """
local removed = 0
for i = 2, #ARGV do removed = removed + evict(ARGV[1], ARGV[i]) end
return removed
"""
)


class RedisTier:
    name = "redis"
    shared = True

    def __init__(
        self,
        url: str,
        *,
        ttl: int,
        max_bytes: int = 1024 * 1024 * 1024,
        prefix: str = "imgproxy:",
        lock_seconds: float = 30.0,
        concurrency: int = 32,
    ) -> None:
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.prefix = prefix
        self._put = self.client.register_script(_PUT)
        self._forget = self.client.register_script(_FORGET)
        self._refused_logged = 0.0
        self.lock_seconds = lock_seconds  # a crashed renderer's lock lapses after this
        self._open_until = 0.0
        self._in_flight = InFlight(concurrency)
        self._held: dict[str, tuple[Lock, asyncio.Task[None]]] = {}  # renders this process owns

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._open_until

    def _failed(self, exc: Exception) -> None:
        if self.available:
            log.warning("redis unavailable (%s); using the other tiers for %ss", exc, RETRY_AFTER)
        self._open_until = time.monotonic() + RETRY_AFTER

    def _refused(self, exc: ResponseError) -> None:
        """Redis answered, but would not write: not an outage, so the breaker stays shut."""
        if time.monotonic() >= self._refused_logged + RETRY_AFTER:
            log.warning("redis refused a write (%s); reads go on", exc)
            self._refused_logged = time.monotonic()

    async def get(self, key: CacheKey) -> Rendition | None:
        if not self.available:
            return None
        try:
            with self._in_flight.slot() as free:
                if not free:
                    return None
                async with self.client.pipeline(transaction=False) as pipe:
                    pipe.get(f"{self.prefix}r:{key.rendition}")
                    # Marks it used (if still kept): the budget evicts the least recently used.
                    pipe.zadd(f"{self.prefix}used", {key.rendition: _now_ms()}, xx=True)
                    body, _ = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        if not isinstance(body, bytes) or not body:
            return None
        return Rendition(body, key.media_type)

    async def probe(self) -> None:
        """A GET of a key never written, past the breaker and raising what `get` forgives."""
        await self.client.get(f"{self.prefix}r:{PROBE_KEY}")

    async def put(self, key: CacheKey, value: Rendition) -> None:
        if not self.available:
            return
        if len(value.body) > self.max_bytes:  # would only evict everything else
            return
        args: list[str | bytes | int] = [self.prefix, key.rendition, key.source, value.body]
        try:
            with self._in_flight.slot() as free:
                if free:
                    await self._put(args=[*args, self.ttl, _now_ms(), self.max_bytes])
        except ResponseError as exc:  # refused (OOM under `noeviction`): not kept, no outage
            self._refused(exc)
        except (RedisError, OSError) as exc:
            self._failed(exc)

    async def purge(self, source: str) -> int:
        """In batches (SSCAN, then one script per batch), so a source with a million
        renditions is purged in round trips that each finish within the client's timeout."""
        members = f"{self.prefix}s:{source}"
        removed = 0
        batch: list[str] = []
        async for member in self.client.sscan_iter(members, count=PURGE_BATCH):
            batch.append(member.decode() if isinstance(member, bytes) else member)
            if len(batch) >= PURGE_BATCH:
                removed += await self._forget(args=[self.prefix, *batch])
                batch = []
        if batch:
            removed += await self._forget(args=[self.prefix, *batch])
        await self.client.delete(members)
        return removed

    async def usage(self) -> tuple[int, int, str]:
        """(bytes this tier keeps, Redis's `maxmemory`, its `maxmemory-policy`), for `check`."""
        kept = await self.client.get(f"{self.prefix}bytes")
        memory = await self.client.info("memory")
        return (
            int(kept or 0),
            int(memory.get("maxmemory", 0)),
            str(memory.get("maxmemory_policy", "unknown")),
        )

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
            with self._in_flight.slot() as free:
                if not free:
                    return True  # as when Redis is out: rendered here, not waited for
                got = await lock.acquire()
        except ResponseError as exc:  # refused (OOM): no lock to be had, so render here
            self._refused(exc)
            return True
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
                with self._in_flight.slot() as free:
                    gone = free and not await self.client.exists(lock)
                if gone:
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


def _now_ms() -> int:
    return int(time.time() * 1000)
