"""A fleet: several `imgproxy serve` processes sharing a real S3 server (SeaweedFS) for the
sources and the rendition tier, and a real Redis (SPEC §12). They behave as one server: one
render per rendition across them, a newcomer answers from the shared tiers without reading
the source, a purge clears every shared tier for that source only, and an instance killed
mid-render leaves nothing half-written while another takes over once its lock lapses."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import images, metric, write_config
from tests.support.objects import ACCOUNTS, S3Server
from tests.support.processes import served

LOCK_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Fleet:
    config: Path
    sources: str  # the source objects' prefix in the `media` bucket
    renditions: str  # the rendition tier's prefix in the `renditions` bucket
    redis: str


@pytest.fixture
def fleet(s3: S3Server, redis: str, tmp_path: Path, media: Path) -> Fleet:
    key, secret = ACCOUNTS["alice"]
    run = uuid.uuid4().hex[:10]
    sources, renditions = f"src{run}/", f"r{run}/"
    tables: dict[str, dict[str, Any]] = {
        "stores.uploads": {
            "kind": "s3",
            "bucket": "media",
            "prefix": sources,
            "endpoint_url": s3.endpoint,
            "access_key_id": key,
            "secret_access_key": secret,
            "approved": True,
        },
        "cache": {
            "disk_path": "",
            "redis_url": redis,
            "lock_seconds": LOCK_SECONDS,
            "s3_bucket": "renditions",
            "s3_prefix": renditions,
            "s3_endpoint_url": s3.endpoint,
            "s3_access_key_id": key,
            "s3_secret_access_key": secret,
        },
        "limits": {"render_concurrency": 1},
    }
    config = write_config(tmp_path, media, **tables)
    return Fleet(config, sources, renditions, redis)


def instances(stack: ExitStack, fleet: Fleet, count: int) -> list[str]:
    return [stack.enter_context(served(fleet.config)).url for _ in range(count)]


def renders(urls: list[str]) -> int:
    return int(sum(metric(url, "imgproxy_renders_total") for url in urls))


def test_one_render_per_fleet_and_a_newcomer_reads_no_source(s3: S3Server, fleet: Fleet) -> None:
    photo = images.jpeg((1600, 1200))
    s3.put("media", fleet.sources + "photo.jpg", photo)
    target = "/uploads/photo.jpg?w=200&fm=webp"
    with ExitStack() as stack:
        three = instances(stack, fleet, 3)

        def fetch(index: int) -> tuple[int, bytes]:
            response = httpx.get(three[index % 3] + target, timeout=60)
            return response.status_code, response.content

        with ThreadPoolExecutor(30) as pool:
            answers = list(pool.map(fetch, range(30)))
        assert {status for status, _ in answers} == {200}
        assert len({body for _, body in answers}) == 1  # identical bytes everywhere
        assert renders(three) == 1  # thirty requests over three processes: one render
        stored = s3.keys("renditions", fleet.renditions)
        assert any(name.endswith(".webp") for name in stored)

        read_before = s3.sent_bytes("media")
        fourth = instances(stack, fleet, 1)[0]
        hit = httpx.get(fourth + target)
        assert hit.status_code == 200 and hit.content == answers[0][1]
        again = httpx.get(fourth + target, headers={"if-none-match": hit.headers["etag"]})
        assert again.status_code == 304
        assert s3.sent_bytes("media") == read_before  # no source body read by the newcomer
        assert renders([fourth]) == 0


def test_purge_empties_every_tier_of_every_instance_for_that_source_only(
    s3: S3Server, fleet: Fleet
) -> None:
    """`imgproxy purge` clears Redis and the bucket tier, and its broadcast makes each running
    instance drop the source from its own memory: the next request renders it again, once
    for the fleet, while the other source is still a hit everywhere."""
    import redis as redis_client

    for name in ("a.jpg", "b.jpg"):
        s3.put("media", fleet.sources + name, images.jpeg((300, 200)))
    with ExitStack() as stack:
        two = instances(stack, fleet, 2)
        for url in two:
            for name in ("a.jpg", "b.jpg"):
                for width in (50, 80):
                    assert httpx.get(f"{url}/uploads/{name}?w={width}").status_code == 200
        assert renders(two) == 4
        before = s3.keys("renditions", fleet.renditions)
        with redis_client.Redis.from_url(fleet.redis) as client:
            assert len(client.keys("imgproxy:r:*")) == 6  # per source: two renditions, facts
        assert len(before) == 6

        command = [sys.executable, "-m", "imgproxy", "purge", "uploads/a.jpg"]
        purged = subprocess.run(
            [*command, "--config", str(fleet.config)], capture_output=True, text=True, timeout=60
        )
        assert purged.returncode == 0, purged.stderr
        after = s3.keys("renditions", fleet.renditions)
        assert len(after) == 3 and set(after) < set(before)
        with redis_client.Redis.from_url(fleet.redis) as client:
            assert len(client.keys("imgproxy:r:*")) == 3

        deadline = time.monotonic() + 10  # the broadcast is asynchronous: a few ms
        while renders(two) == 4:
            assert time.monotonic() < deadline, "the running instance kept the purged source"
            assert httpx.get(f"{two[0]}/uploads/a.jpg?w=50").status_code == 200
        assert renders(two) == 5
        assert httpx.get(f"{two[1]}/uploads/a.jpg?w=50").status_code == 200  # the fleet's copy
        for url in two:
            assert httpx.get(f"{url}/uploads/b.jpg?w=50").status_code == 200
        assert renders(two) == 5


def _slow_png() -> bytes:
    """49 MP of smooth gradient: a few MB, and a decode long enough to be killed in."""
    import numpy as np
    from PIL import Image

    x = np.linspace(0, 255, 7000, dtype=np.float32)
    pixels = np.zeros((7000, 7000, 3), np.uint8)
    pixels[..., 0] = x[None, :]
    pixels[..., 1] = x[:, None]
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG", compress_level=1)
    return out.getvalue()


def test_an_instance_killed_mid_render_leaves_nothing_half_written(
    s3: S3Server, fleet: Fleet
) -> None:
    import redis as redis_client

    s3.put("media", fleet.sources + "big.png", _slow_png())
    target = "/uploads/big.png?w=300&fm=jpeg"
    with ExitStack() as stack, redis_client.Redis.from_url(fleet.redis) as client:
        first = stack.enter_context(served(fleet.config))
        second = instances(stack, fleet, 1)[0]
        threading.Thread(target=_get_until_killed, args=(first.url + target,), daemon=True).start()
        deadline = time.monotonic() + 60
        while not client.keys("imgproxy:l:*"):  # the render lock: it is rendering now
            assert time.monotonic() < deadline, "the first instance never began to render"
            time.sleep(0.002)
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(10)
        killed_at = time.monotonic()
        assert not [k for k in s3.keys("renditions", fleet.renditions) if k.endswith(".jpeg")]

        taken_over = httpx.get(second + target, timeout=60)
        waited = time.monotonic() - killed_at
        assert taken_over.status_code == 200
        assert images.decode(taken_over.content).size[0] == 300
        assert renders([second]) == 1
        assert waited >= LOCK_SECONDS / 2  # it waited for the dead holder's lock to lapse
        landed = [k for k in s3.keys("renditions", fleet.renditions) if k.endswith(".jpeg")]
        assert len(landed) == 1
        assert s3.get("renditions", landed[0]) == taken_over.content  # whole, not torn


def _get_until_killed(url: str) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the instance is killed under it
        httpx.get(url, timeout=60)


def test_warm_lists_the_bucket_and_fills_the_shared_tiers(s3: S3Server, fleet: Fleet) -> None:
    for name in ("one.jpg", "sub/two.jpg"):
        s3.put("media", fleet.sources + name, images.jpeg((200, 150)))
    command = [sys.executable, "-m", "imgproxy", "warm", "--store", "uploads", "--preset", "small"]
    warmed = subprocess.run(
        [*command, "--config", str(fleet.config)], capture_output=True, text=True, timeout=120
    )
    assert warmed.returncode == 0, warmed.stderr
    assert "made 2" in warmed.stdout
    with ExitStack() as stack:
        url = instances(stack, fleet, 1)[0]
        for name in ("one.jpg", "sub/two.jpg"):
            assert httpx.get(f"{url}/uploads/{name}?p=small").status_code == 200
        assert renders([url]) == 0  # both came from the shared tiers
