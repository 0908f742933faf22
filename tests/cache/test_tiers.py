"""One contract for every cache tier (memory, disk, Redis, object store), then each tier's own
duties: disk writes are atomic and bounded, Redis and object-store outages degrade to a miss."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imgproxy.cache import CacheKey, CacheTier, Located, Rendition
from imgproxy.cache.disk import STALE_TEMP_SECONDS, TEMP_MARK, DiskTier
from imgproxy.cache.memory import MemoryTier
from imgproxy.cache.objects import ObjectStoreTier
from imgproxy.cache.redis import RedisTier
from imgproxy.cache.tiered import TieredCache
from imgproxy.settings import CacheSettings
from tests.support.objects import ACCOUNTS, S3Server

KEY = CacheKey("SRCaaaaaaaaaaaaaaaaaaaaa", "R1bbbbbbbbbbbbbbbbbbbbbb", "webp")
OTHER_RENDITION = CacheKey(KEY.source, "R2cccccccccccccccccccccc", "png")
OTHER_SOURCE = CacheKey("SRCdddddddddddddddddddddd", "R3eeeeeeeeeeeeeeeeeeeeee", "jpeg")
VALUE = Rendition(b"RIFF....WEBPVP8 fake bytes", "image/webp", 1_700_000_000.0)


@pytest.fixture(params=["memory", "disk", "redis", "s3"])
def tier_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], CacheTier]:
    if request.param == "memory":
        memory = MemoryTier(1 << 20)
        return lambda: memory
    if request.param == "disk":
        return lambda: DiskTier(tmp_path / "cache", max_bytes=1 << 20)
    if request.param == "s3":
        s3 = request.getfixturevalue("s3")
        cache = object_cache(s3, f"test{time.monotonic_ns()}/")
        return lambda: ObjectStoreTier(cache)
    url = request.getfixturevalue("redis_url")
    prefix = f"test{time.monotonic_ns()}:"
    return lambda: RedisTier(url, ttl=60, prefix=prefix)


def object_cache(s3: S3Server, prefix: str, **more: Any) -> CacheSettings:
    key, secret = ACCOUNTS["alice"]
    values: dict[str, Any] = {
        "s3_bucket": "renditions",
        "s3_prefix": prefix,
        "s3_endpoint_url": s3.endpoint,
        "s3_access_key_id": key,
        "s3_secret_access_key": secret,
    }
    return CacheSettings(**(values | more))


def test_tier_contract(tier_factory: Callable[[], CacheTier]) -> None:
    async def scenario() -> None:
        tier = tier_factory()
        assert await tier.get(KEY) is None
        await tier.put(KEY, VALUE)
        await tier.put(OTHER_RENDITION, Rendition(b"\x89PNG other", "image/png"))
        await tier.put(OTHER_SOURCE, Rendition(b"\xff\xd8\xff jpeg", "image/jpeg"))
        found = await tier.get(KEY)
        assert found is not None
        assert (found.body, found.media_type) == (VALUE.body, VALUE.media_type)
        assert await tier.purge(KEY.source) == 2
        assert await tier.get(KEY) is None
        assert await tier.get(OTHER_RENDITION) is None
        assert await tier.get(OTHER_SOURCE) is not None  # other sources untouched
        assert await tier.purge("nothing-here") == 0
        await _close(tier)

    asyncio.run(scenario())


async def _close(tier: CacheTier) -> None:
    if isinstance(tier, RedisTier):
        await tier.close()


def test_a_lower_hit_fills_the_upper_tiers(tmp_path: Path) -> None:
    async def scenario() -> None:
        memory, disk = MemoryTier(1 << 20), DiskTier(tmp_path / "c", max_bytes=1 << 20)
        await disk.put(KEY, VALUE)
        seen: list[tuple[str, bool]] = []
        cache = TieredCache([memory, disk], on_lookup=lambda tier, hit: seen.append((tier, hit)))
        assert isinstance(await cache.get(KEY), Rendition)
        assert seen == [("memory", False), ("disk", True)]
        assert await memory.get(KEY) is not None
        located = await TieredCache([disk]).get(KEY, locate=True)
        assert located == Located(disk.relative(KEY))

    asyncio.run(scenario())


def test_disk_survives_restarts_and_keeps_the_source_mtime(tmp_path: Path) -> None:
    asyncio.run(DiskTier(tmp_path / "c", max_bytes=1 << 20).put(KEY, VALUE))
    again = DiskTier(tmp_path / "c", max_bytes=1 << 20)
    found = asyncio.run(again.get(KEY))
    assert found is not None
    assert found.body == VALUE.body
    assert again.path(KEY).stat().st_mtime == VALUE.modified


WRITER = """
import asyncio, sys
from imgproxy.cache import CacheKey, Rendition
from imgproxy.cache.disk import DiskTier
import aiofiles.threadpool.binary as binary

real_write = binary.AsyncBufferedIOBase.write
async def slow_write(self, data):
    await real_write(self, data[: len(data) // 2])
    print("half written", flush=True)
    await asyncio.sleep(60)  # killed here, mid-write
binary.AsyncBufferedIOBase.write = slow_write
key = CacheKey(*sys.argv[2:5])
tier = DiskTier(sys.argv[1], max_bytes=1 << 30)
asyncio.run(tier.put(key, Rendition(b"x" * 4_000_000, "image/webp")))
"""


def test_a_writer_killed_mid_write_never_leaves_a_servable_file(tmp_path: Path) -> None:
    root = tmp_path / "c"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), KEY.source, KEY.rendition, KEY.extension],
        stdout=subprocess.PIPE,
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == b"half written"
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    writer.stdout.close()
    temps = [p for p in root.rglob("*") if TEMP_MARK in p.name]
    assert len(temps) == 1 and temps[0].stat().st_size == 2_000_000  # the half file exists...
    tier = DiskTier(root, max_bytes=1 << 30)
    assert asyncio.run(tier.get(KEY)) is None  # ...but is never served
    assert asyncio.run(tier.locate(KEY)) is None
    old = time.time() - STALE_TEMP_SECONDS - 10
    os.utime(temps[0], (old, old))
    DiskTier(root, max_bytes=1 << 30)  # the start-up scan sweeps stale temp files
    assert not temps[0].exists()


def disk_usage(root: Path) -> int:
    """What `du` counts: the allocated blocks of every file and folder under the root."""
    return sum(path.stat().st_blocks * 512 for path in root.rglob("*"))


def test_disk_is_bounded_and_evicts_least_recently_used(tmp_path: Path) -> None:
    keys = [CacheKey(f"S{i:024d}", f"R{i:024d}", "png") for i in range(30)]

    async def fill() -> DiskTier:
        roomy = DiskTier(tmp_path / "c", max_bytes=1 << 20)
        for index, key in enumerate(keys):
            await roomy.put(key, Rendition(b"p" * 1000, "image/png"))
            used = time.time() - 10_000 + index  # later keys were used more recently
            os.utime(roomy.path(key), (used, used))
        os.utime(roomy.path(keys[0]), None)  # the oldest is used again now
        return roomy

    async def overflow() -> None:
        tight = DiskTier(tmp_path / "c", max_bytes=60_000)  # a restart with a smaller budget
        await tight.put(CacheKey("Sz" * 12, "Rz" * 12, "png"), Rendition(b"p" * 1000, "image/png"))
        assert tight._evicting is not None
        await tight._evicting
        assert disk_usage(tmp_path / "c") <= 60_000  # 31 files of 1000 bytes use far more
        assert await tight.get(keys[0]) is not None  # recently used: kept
        assert await tight.get(keys[1]) is None  # least recently used: evicted
        assert not tight.path(keys[1]).parent.exists()  # with its emptied folder
        assert await tight.get(keys[-1]) is not None

    asyncio.run(fill())
    asyncio.run(overflow())


def test_disk_evictions_leave_the_workers_purge_sockets_alone(tmp_path: Path) -> None:
    """<disk_path>/.workers/ holds imgproxy serve's purge sockets: an eviction pass neither
    counts nor removes them, however old they look."""
    workers = tmp_path / "c" / ".workers"
    workers.mkdir(parents=True)
    socket_file = workers / "123.sock"
    socket_file.write_bytes(b"x" * 200_000)  # a stand-in large enough to be evicted first
    os.utime(socket_file, (1, 1))

    async def overflow() -> None:
        tight = DiskTier(tmp_path / "c", max_bytes=100_000)
        for i in range(20):
            key = CacheKey(f"S{i:024d}", f"R{i:024d}", "png")
            await tight.put(key, Rendition(b"p" * 1000, "image/png"))
        if tight._evicting is not None:
            await tight._evicting
        assert tight._scan_usage() < 100_000

    asyncio.run(overflow())
    assert socket_file.exists()


def test_disk_counts_blocks_folders_and_facts_of_tiny_renditions_written_at_once(
    tmp_path: Path,
) -> None:
    """1600 renditions of 90 bytes and facts files of 60, over 80 sources, written 64 at a
    time: each takes a 4 KiB block and its source a folder, so their lengths (150 KB) say
    nothing of what the disk gives up (7 MB); the tier keeps that within its budget."""
    root, budget = tmp_path / "c", 256 * 1024
    keys = [CacheKey(f"S{i % 80:03d}{'s' * 21}", f"R{i:05d}{'r' * 19}", "png") for i in range(1600)]
    facts = [CacheKey(key.source, f"F{i:04d}{'f' * 19}", "json") for i, key in enumerate(keys[:80])]

    async def scenario() -> None:
        tier = DiskTier(root, max_bytes=budget)
        gate = asyncio.Semaphore(64)

        async def put(key: CacheKey, body: bytes) -> None:
            async with gate:
                await tier.put(key, Rendition(body, key.media_type))

        writes = [put(key, b"{}" * 30) for key in facts] + [put(key, b"p" * 90) for key in keys]
        await asyncio.gather(*writes)
        while tier._evicting is not None:
            await tier._evicting
        used = disk_usage(root)
        assert used <= budget
        assert tier._estimate >= used  # counted as the disk counts it, inodes besides
        kept = [path for path in root.rglob("*") if path.is_file()]
        assert 10 < len(kept) < 64  # 4 KiB each and their folders: only so many fit
        # The least recently written went first: facts files (written first) among them.
        assert all(path.name > "R01500" for path in kept), sorted(path.name for path in kept)
        # The running count may run a few blocks ahead of the disk (a write that raced an
        # eviction's scan is counted again): never behind it, which would overrun the budget.
        scanned = tier._scan_usage()
        assert scanned <= tier._estimate <= scanned + 8 * 4096
        assert DiskTier(root, max_bytes=budget)._estimate == scanned  # a restart agrees

    asyncio.run(scenario())


def test_two_processes_evicting_one_disk_folder_lose_no_write(tmp_path: Path) -> None:
    """Eviction removes emptied folders while the other process (here: the other tier)
    writes into them: a write whose folder went away makes it again, never fails."""
    root, budget = tmp_path / "c", 40_000

    async def scenario() -> None:
        tiers = [DiskTier(root, max_bytes=budget) for _ in range(2)]
        gate = asyncio.Semaphore(32)

        async def put(index: int) -> None:
            key = CacheKey(f"S{index % 50:02d}", f"R{index:05d}", "png")
            async with gate:
                await tiers[index % 2].put(key, Rendition(b"p", "image/png"))

        await asyncio.gather(*(put(index) for index in range(1500)))
        for tier in tiers:
            while tier._evicting is not None:
                await tier._evicting

    asyncio.run(scenario())


def test_processes_sharing_a_disk_folder_hold_one_budget_not_one_each(tmp_path: Path) -> None:
    """Each process (here: each of four tiers) counts its own writes between scans: four that
    each wrote 80% of the budget held 2.8 budgets, as none passed its own count. Each scans
    again after a share of the budget, and the folder stays within it."""
    root, budget = tmp_path / "c", 1 << 20
    body = b"p" * 20_000  # with its two folders, about 30 KB on disk

    async def scenario() -> None:
        tiers = [DiskTier(root, max_bytes=budget) for _ in range(4)]

        async def write(index: int) -> None:
            for number in range(30):
                key = CacheKey(f"S{index}x{number:04d}", f"R{number:05d}", "png")
                await tiers[index].put(key, Rendition(body, "image/png"))

        await asyncio.gather(*(write(index) for index in range(4)))
        for tier in tiers:
            while tier._evicting is not None:
                await tier._evicting
        assert len(list(root.rglob("*.png"))) > 10  # it was written, then evicted
        assert disk_usage(root) <= budget

    asyncio.run(scenario())


def test_redis_outage_degrades_to_a_miss_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        dead = RedisTier("redis://127.0.0.1:1/0", ttl=60)
        cache = TieredCache([MemoryTier(1 << 20), dead])
        with caplog.at_level(logging.WARNING):
            assert await cache.get(KEY) is None
            await cache.put(KEY, VALUE)
            assert await cache.get(KEY) is not None  # the memory tier still works
            assert await dead.claim(KEY) is True  # no lock service: render here
            began = time.monotonic()
            for _ in range(20):
                assert await dead.get(OTHER_SOURCE) is None
            assert time.monotonic() - began < 1  # the breaker skips Redis, no timeouts
        assert sum("redis unavailable" in r.message for r in caplog.records) == 1
        await dead.close()

    asyncio.run(scenario())


def test_the_redis_render_lock_outlives_its_timeout_and_frees_only_itself(redis: str) -> None:
    """Across processes one render per key: the holder's lock is kept alive past its timeout
    while the render runs, and a holder whose lock lapsed never frees another's."""

    async def scenario() -> None:
        prefix = f"lock{time.monotonic_ns()}:"
        one, two = (RedisTier(redis, ttl=60, prefix=prefix, lock_seconds=0.3) for _ in range(2))
        assert await one.claim(KEY) is True
        assert await two.claim(KEY) is False
        await asyncio.sleep(1.0)  # three timeouts: still held, the render is running
        assert await two.claim(KEY) is False
        await one.release(KEY)
        assert await two.claim(KEY) is True  # freed at once, not after a lapse
        await two.release(KEY)

        assert await one.claim(KEY) is True
        one._held[KEY.rendition][1].cancel()  # its keeper stops: the lock may lapse
        await one.client.delete(f"{prefix}l:{KEY.rendition}")  # lapsed (Redis lost it)
        assert await two.claim(KEY) is True
        await one.release(KEY)  # must not free the lock two holds now
        assert await one.client.exists(f"{prefix}l:{KEY.rendition}") == 1
        await two.release(KEY)
        assert await one.client.exists(f"{prefix}l:{KEY.rendition}") == 0
        await one.close()
        await two.close()

    asyncio.run(scenario())


def test_the_object_store_tier_writes_whole_objects_and_survives_an_outage(
    s3: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    """What lands is the whole body under `{prefix}{source}/{rendition}.{ext}`; a dead
    endpoint is a miss with one warning and no wait per request (the breaker)."""
    prefix = f"whole{time.monotonic_ns()}/"

    async def scenario() -> None:
        tier = ObjectStoreTier(object_cache(s3, prefix))
        big = Rendition(os.urandom(3 * 1024 * 1024), "image/webp")
        await tier.put(KEY, big)
        listed = await asyncio.to_thread(s3.keys, "renditions", prefix)
        assert listed == [f"{prefix}{KEY.source}/{KEY.name}"]
        found = await tier.get(KEY)
        assert found is not None and found.body == big.body

        dead = ObjectStoreTier(object_cache(s3, prefix, s3_endpoint_url="http://127.0.0.1:9"))
        with caplog.at_level(logging.WARNING):
            began = time.monotonic()
            for _ in range(20):
                assert await dead.get(KEY) is None
                await dead.put(OTHER_SOURCE, VALUE)
            assert time.monotonic() - began < 5
        assert sum("object-store tier unavailable" in r.message for r in caplog.records) == 1
        other = f"{prefix}{OTHER_SOURCE.source}/"
        assert await asyncio.to_thread(s3.keys, "renditions", other) == []

    asyncio.run(scenario())


def test_a_purge_reaches_the_memory_and_disk_of_every_instance(redis: str, tmp_path: Path) -> None:
    """Two instances on two hosts (memory + own disk + shared Redis): a purge on one drops the
    source from the other's own tiers too, through Redis pub/sub, and leaves other sources."""

    def instance(name: str) -> TieredCache:
        return TieredCache(
            [
                MemoryTier(1 << 20),
                DiskTier(tmp_path / name, max_bytes=1 << 20),
                RedisTier(redis, ttl=60),
            ]
        )

    async def scenario() -> None:
        here, there = instance("here"), instance("there")
        for cache in (here, there):
            await cache.put(KEY, VALUE)
            await cache.put(OTHER_SOURCE, VALUE)
            assert await cache.get(KEY) is not None  # a lookup: the listener starts
        shared = here.tiers[2]
        assert isinstance(shared, RedisTier)
        for _ in range(250):  # both listeners subscribed
            counts = await shared.client.pubsub_numsub("imgproxy:purged")
            if counts and counts[0][1] == 2:
                break
            await asyncio.sleep(0.02)
        await here.purge(KEY.source)
        memory, disk = there.tiers[0], there.tiers[1]
        for _ in range(100):
            if await memory.get(KEY) is None and await disk.get(KEY) is None:
                break
            await asyncio.sleep(0.02)
        assert await memory.get(KEY) is None and await disk.get(KEY) is None
        assert await memory.get(OTHER_SOURCE) is not None
        assert await disk.get(OTHER_SOURCE) is not None
        await here.close()
        await there.close()

    asyncio.run(scenario())


def test_a_purge_is_never_a_path(redis: str, tmp_path: Path) -> None:
    """Whoever can publish to Redis (or call purge) cannot make a tier delete outside its
    folder: a source id is a surrogate key's characters, nothing else. The disk tier's
    folder is `root/<2 chars>/<source>`, so "../precious" would be `root/../../precious`."""
    root = tmp_path / "a" / "b" / "cache"
    precious = tmp_path / "a" / "precious"
    precious.mkdir(parents=True)
    (precious / "keep.txt").write_text("keep")

    async def scenario() -> None:
        disk = DiskTier(root, max_bytes=1 << 20)
        cache = TieredCache([MemoryTier(1 << 20), disk, RedisTier(redis, ttl=60)])
        await cache.put(KEY, VALUE)
        assert await cache.get(KEY) is not None  # the listener starts
        shared = cache.tiers[2]
        assert isinstance(shared, RedisTier)
        for _ in range(250):
            counts = await shared.client.pubsub_numsub("imgproxy:purged")
            if counts and counts[0][1] == 1:
                break
            await asyncio.sleep(0.02)
        await shared.client.publish("imgproxy:purged", "../precious")
        await asyncio.sleep(0.3)
        assert (precious / "keep.txt").read_text() == "keep"
        assert await disk.purge("../precious") == 0
        assert (precious / "keep.txt").read_text() == "keep"
        assert await cache.get(KEY) is not None  # nothing of ours went either
        await cache.close()

    asyncio.run(scenario())


def test_a_failing_tier_does_not_stop_the_purge_of_the_others(tmp_path: Path) -> None:
    class Broken(MemoryTier):
        async def purge(self, source: str) -> int:
            raise OSError("the tier is down")

    async def scenario() -> None:
        disk = DiskTier(tmp_path / "cache", max_bytes=1 << 20)
        cache = TieredCache([Broken(1 << 20), disk])
        await cache.put(KEY, VALUE)
        with pytest.raises(OSError, match="down"):
            await cache.purge(KEY.source)  # the caller learns it is incomplete
        assert await disk.get(KEY) is None  # but the disk tier was purged

    asyncio.run(scenario())
