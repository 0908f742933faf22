"""The Redis tier is bounded by configuration, not by how fast a fleet writes (SPEC §11.1):
its byte budget holds with several writers at once, its index never outgrows its keys, a
write Redis refuses leaves reads and locks working, and a purge of a huge index finishes."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time

import pytest
import redis as redis_client

from imgproxy.cache import CacheKey, Rendition
from imgproxy.cache.redis import RedisTier


def key(source: int, rendition: int) -> CacheKey:
    """Ids shaped like the real ones (base64url digests)."""
    src = base64.urlsafe_b64encode(f"source-{source:06d}".encode()).decode().rstrip("=")
    ren = base64.urlsafe_b64encode(f"rend-{source:04d}-{rendition:05d}".encode()).decode()
    return CacheKey(src, ren.rstrip("="), "webp")


def stored(client: redis_client.Redis, prefix: str) -> dict[str, int]:
    """Every rendition key Redis holds under `prefix`, with its size: what the tier really uses."""
    names = list(client.scan_iter(f"{prefix}r:*", count=1000))
    return {name.decode()[len(prefix) + 2 :]: int(client.strlen(name)) for name in names}


def test_the_budget_holds_with_two_instances_writing_at_once(redis: str) -> None:
    """Two instances write 600 distinct 10 KB renditions of 30 sources concurrently into a
    200 KB budget: Redis holds at most the budget, the tier's count is exact, every index
    member names a live rendition, and the most recent ones are the ones kept."""
    prefix = f"budget{time.monotonic_ns()}:"
    budget = 200_000
    keys = [key(s, r) for s in range(30) for r in range(20)]
    done: list[str] = []

    async def flood() -> None:
        one, two = (RedisTier(redis, ttl=60, max_bytes=budget, prefix=prefix) for _ in range(2))

        async def write(tier: RedisTier, part: list[CacheKey]) -> None:
            for k in part:
                await tier.put(k, Rendition(os.urandom(10_000), "image/webp"))
                done.append(k.rendition)

        chunks = [keys[i::8] for i in range(8)]
        await asyncio.gather(*(write(one if i % 2 else two, c) for i, c in enumerate(chunks)))
        await one.close()
        await two.close()

    asyncio.run(flood())
    with redis_client.Redis.from_url(redis) as client:
        kept = stored(client, prefix)
        assert 0 < sum(kept.values()) <= budget, f"{sum(kept.values())} bytes kept"
        assert int(client.get(f"{prefix}bytes") or 0) == sum(kept.values())
        indexed = set()
        for name in client.scan_iter(f"{prefix}s:*"):
            indexed |= {m.decode() for m in client.smembers(name)}
        assert indexed == set(kept), "the per-source index names renditions that are gone"
        assert client.zcard(f"{prefix}used") == len(kept)
        # the last ones written are among the kept: eviction took the least recently used
        assert set(done[-5:]) <= set(kept)


def test_a_write_redis_refuses_leaves_reads_and_locks_working(
    redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A shared Redis filled by someone else past `maxmemory` under `noeviction` refuses
    writes: reads of known renditions still come from Redis and a lock refused is a local
    render, with no breaker opened (before: 0/20 read back, every request skipping Redis)."""
    prefix = f"refused{time.monotonic_ns()}:"
    known = [key(1, r) for r in range(20)]
    with redis_client.Redis.from_url(redis) as admin:

        async def scenario() -> tuple[int, list[bool], bool]:
            tier = RedisTier(redis, ttl=60, prefix=prefix)
            for k in known:
                await tier.put(k, Rendition(b"kept " + k.rendition.encode(), "image/webp"))
            admin.set(f"{prefix}foreign", os.urandom(4 * 1024 * 1024))  # another app's data
            used = int(admin.info("memory")["used_memory"])
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", used - 1024 * 1024)
            try:
                with pytest.raises(redis_client.exceptions.OutOfMemoryError):
                    admin.set(f"{prefix}probe", b"x")  # Redis does refuse writes now
                with caplog.at_level(logging.WARNING):
                    for r in range(20):
                        await tier.put(key(2, r), Rendition(os.urandom(50_000), "image/webp"))
                    claims = [await tier.claim(key(3, r)) for r in range(5)]
                    found = [await tier.get(k) for k in known]
                    available = tier.available
            finally:
                admin.config_set("maxmemory", 0)
                admin.delete(f"{prefix}foreign")
            for r in range(5):
                await tier.release(key(3, r))
            await tier.close()
            hits = sum(f is not None and f.body.startswith(b"kept ") for f in found)
            return hits, claims, available

        hits, claims, available = asyncio.run(scenario())
    assert available, "a refused write opened the breaker"
    assert all(claims)  # held, or refused and rendered here: never a wait on nobody
    assert hits == 20, f"{hits}/20 known renditions read from Redis"
    assert not any("redis unavailable" in r.message for r in caplog.records)


def test_a_purge_of_a_huge_index_finishes_in_batches(redis: str) -> None:
    """A source with 100,000 indexed renditions (at 1,000,000 one SMEMBERS took past the
    client's 1 s timeout and the purge failed, leaving everything): in batches of 500 every
    round trip is short, and everything of it is gone, its bytes and use records too."""
    prefix = f"huge{time.monotonic_ns()}:"
    source = key(9, 0).source
    with redis_client.Redis.from_url(redis) as client:
        names = [f"R{i:07d}" for i in range(100_000)]
        for start in range(0, len(names), 50_000):
            part = names[start : start + 50_000]
            with client.pipeline(transaction=False) as pipe:
                pipe.sadd(f"{prefix}s:{source}", *part)
                pipe.mset({f"{prefix}r:{n}": b"x" for n in part})
                pipe.hset(f"{prefix}sizes", mapping=dict.fromkeys(part, f"1 {source}"))
                pipe.zadd(f"{prefix}used", dict.fromkeys(part, 1))
                pipe.incrby(f"{prefix}bytes", len(part))
                pipe.execute()

        async def purge() -> int:
            tier = RedisTier(redis, ttl=60, prefix=prefix)
            try:
                return await tier.purge(source)
            finally:
                await tier.close()

        assert asyncio.run(purge()) == len(names)
        assert stored(client, prefix) == {}
        assert client.exists(f"{prefix}s:{source}") == 0
        assert int(client.get(f"{prefix}bytes") or 0) == 0
        assert client.zcard(f"{prefix}used") == 0
