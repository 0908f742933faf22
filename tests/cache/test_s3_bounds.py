"""The object-store tier is bounded by configuration, not by how fast a fleet writes (SPEC
§11.1): its sweeps hold `cache.s3_bytes` with several writers at once, an object past
`cache.s3_max_age` is never served and is swept, and `imgproxy check` reads the bucket's
lifecycle rule back. What the bucket holds is seen through boto3, not the tier's client."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from imgproxy.cache import CacheKey, Rendition
from imgproxy.cache.objects import ObjectStoreTier, Swept
from tests.cache.test_tiers import object_cache
from tests.support.objects import ACCOUNTS, S3Server

MiB = 1024 * 1024


def held(s3: S3Server, prefix: str) -> dict[str, int]:
    """Every object under `prefix` with its size, as boto3 lists them."""
    pages = (
        s3.writer().get_paginator("list_objects_v2").paginate(Bucket="renditions", Prefix=prefix)
    )
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def key(index: int) -> CacheKey:
    return CacheKey(f"S{index % 30:023d}", f"R{index:023d}", "webp")


async def settle(*tiers: ObjectStoreTier) -> None:
    for tier in tiers:
        while tier._sweeping is not None:
            await asyncio.sleep(0.05)


def test_the_budget_holds_with_two_instances_writing_at_once(s3: S3Server) -> None:
    """Two instances write 800 distinct 10 KB renditions (7.6 MiB), 16 at a time, into a
    1 MiB budget: the bucket ends within the budget plus a quarter of it per instance
    (before: all 800 stayed), renditions written after the flood are kept and
    served, and nothing outside the tier's prefix is touched."""
    prefix = f"budget{time.monotonic_ns()}/"
    s3.put("renditions", f"{prefix[:-1]}-elsewhere/keep.bin", os.urandom(2 * MiB))

    async def flood() -> None:
        one, two = (ObjectStoreTier(object_cache(s3, prefix, s3_bytes=MiB)) for _ in range(2))
        gate = asyncio.Semaphore(16)

        async def put(index: int) -> None:
            async with gate:
                tier = one if index % 2 else two
                await tier.put(key(index), Rendition(os.urandom(10_000), "image/webp"))

        await asyncio.gather(*(put(index) for index in range(800)))
        await settle(one, two)
        after = sum((await asyncio.to_thread(held, s3, prefix)).values())
        # a second's writes (LastModified's unit) are 10 times the budget here: they may all go
        assert after <= MiB + 2 * MiB // 4, f"{after} bytes after the flood's own sweeps"
        await asyncio.sleep(1.1)  # LastModified counts seconds: the flood's last is older
        fresh = key(99_999)
        await one.put(fresh, Rendition(b"fresh", "image/webp"))
        swept = await one.sweep()
        assert swept.kept <= MiB
        found = await two.get(fresh)
        assert found is not None and found.body == b"fresh"

    asyncio.run(flood())
    kept = held(s3, prefix)
    assert 0 < sum(kept.values()) <= MiB, f"{len(kept)} objects, {sum(kept.values())} bytes"
    assert f"{prefix}{key(99_999).source}/{key(99_999).name}" in kept
    assert list(held(s3, f"{prefix[:-1]}-elsewhere/").values()) == [2 * MiB]


def test_an_object_past_its_max_age_is_never_served_and_is_swept(s3: S3Server) -> None:
    """With `s3_max_age = 2`, an object written 3 s ago is a miss whose body S3 never sends
    (If-Modified-Since: a 304), and a sweep deletes it and keeps a new one."""
    prefix = f"age{time.monotonic_ns()}/"
    old, new = key(1), key(2)

    async def scenario() -> None:
        tier = ObjectStoreTier(object_cache(s3, prefix, s3_max_age=2))
        await tier.put(old, Rendition(os.urandom(100_000), "image/webp"))
        await settle(tier)
        assert await tier.get(old) is not None
        await asyncio.sleep(3)
        sent = await asyncio.to_thread(s3.sent_bytes, "renditions")
        assert await tier.get(old) is None
        assert await asyncio.to_thread(s3.sent_bytes, "renditions") - sent < 100_000
        await tier.put(new, Rendition(b"new", "image/webp"))
        assert await tier.sweep() == Swept(kept=3, removed=1)

    asyncio.run(scenario())
    assert list(held(s3, prefix)) == [f"{prefix}{new.source}/{new.name}"]


def imgproxy_check(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imgproxy", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | env,
    )


def test_check_reads_the_bucket_lifecycle_rule_back(s3: S3Server, tmp_path: Path) -> None:
    """`imgproxy check` reports the tier's bounds and whether an enabled lifecycle rule
    expires its prefix (a rule on another prefix does not count); an endpoint that cannot
    answer is "could not verify", never a failed check. SeaweedFS stores and returns rules."""
    prefix = f"checked{time.monotonic_ns()}/"
    config = tmp_path / "imgproxy.toml"
    key_id, secret = ACCOUNTS["alice"]

    def write(endpoint: str) -> None:
        config.write_text(
            f'[security]\nkeys = ["k1"]\n[cache]\ns3_bucket = "renditions"\n'
            f's3_prefix = "{prefix}"\ns3_endpoint_url = "{endpoint}"\ns3_bytes = {64 * MiB}\n'
            f's3_max_age = 604800\ns3_access_key_id = "{key_id}"\n'
        )

    write(s3.endpoint)
    secrets = {"IMGPROXY_CACHE__S3_SECRET_ACCESS_KEY": secret}
    rules: list[dict[str, Any]] = [
        {"ID": "other", "Status": "Enabled", "Filter": {"Prefix": "x/"}, "Expiration": {"Days": 1}}
    ]
    client = s3.writer()
    client.put_bucket_lifecycle_configuration(
        Bucket="renditions", LifecycleConfiguration={"Rules": rules}
    )
    try:
        missing = imgproxy_check(config, **secrets)
        assert missing.returncode == 0, missing.stderr
        assert "s3: cache.s3_bytes = 64 MiB, cache.s3_max_age = 7 days" in missing.stdout
        assert f"lifecycle: no enabled rule expires {prefix}" in missing.stdout
        rule = {"ID": "imgproxy", "Status": "Enabled", "Filter": {"Prefix": prefix}}
        rules.append(rule | {"Expiration": {"Days": 7}})
        client.put_bucket_lifecycle_configuration(
            Bucket="renditions", LifecycleConfiguration={"Rules": rules}
        )
        found = imgproxy_check(config, **secrets)
        assert f"lifecycle: rule 'imgproxy' expires {prefix} after 7 days" in found.stdout
    finally:
        client.delete_bucket_lifecycle(Bucket="renditions")
    wrong = imgproxy_check(config, IMGPROXY_CACHE__S3_SECRET_ACCESS_KEY="wrong")
    assert "lifecycle: could not verify (HTTP 403 SignatureDoesNotMatch)" in wrong.stdout
    write("http://127.0.0.1:9")
    dead = imgproxy_check(config, **secrets)
    assert dead.returncode == 0 and "lifecycle: could not verify (ConnectError)" in dead.stdout
