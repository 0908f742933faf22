"""(g) A fleet's shared tiers (SPEC §12): a real S3 server (SeaweedFS) holding the source and
the rendition tier, and Redis.

- a hit answered from the object-store tier (memory and disk off, no Redis) vs a render of
  the same source (unique widths, so every request renders), sequential, median latency;
- the same hit from the Redis tier;
- a newly started instance: its first answer for a rendition another instance made, and the
  source bytes it downloaded for it (SeaweedFS's own per-bucket counter: 0 expected).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from benchmarks.harness import free_port, imgproxy_server, median, print_row, ratios

if TYPE_CHECKING:
    from tests.support.objects import S3Server

KEY = "source.jpg"


@contextmanager
def shared_services(work: Path) -> Iterator[tuple[S3Server, str]]:
    """SeaweedFS and Redis on free loopback ports, as the tests start them."""
    from tests.support.objects import seaweedfs
    from tests.support.processes import redis_server

    (work / "seaweedfs").mkdir(parents=True, exist_ok=True)
    (work / "redis").mkdir(parents=True, exist_ok=True)
    with seaweedfs(work / "seaweedfs") as s3, redis_server(work / "redis") as redis:
        yield s3, redis


def config(work: Path, s3: S3Server, prefix: str, redis: str = "") -> Path:
    from tests.support.objects import ACCOUNTS

    endpoint = s3.endpoint
    key, secret = ACCOUNTS["alice"]
    lines = [
        "[limits]",
        "render_concurrency = 1",
        "[cache]",
        "memory_bytes = 0",
        'disk_path = ""',
        f'redis_url = "{redis}"',
        f's3_bucket = "{"" if redis else "renditions"}"',
        f's3_prefix = "{prefix}r/"',
        f's3_endpoint_url = "{endpoint}"',
        f's3_access_key_id = "{key}"',
        f's3_secret_access_key = "{secret}"',
        "[stores.bench]",
        'kind = "s3"',
        'bucket = "media"',
        f'prefix = "{prefix}"',
        f'endpoint_url = "{endpoint}"',
        f'access_key_id = "{key}"',
        f'secret_access_key = "{secret}"',
        "approved = true",
    ]
    path = work / f"fleet-{prefix.strip('/')}-{'redis' if redis else 's3'}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def timed(http: httpx.Client, url: str) -> float:
    start = time.perf_counter()
    http.get(url).raise_for_status()
    return time.perf_counter() - start


def run(work: Path, source: Path, rounds: int, n: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with shared_services(work) as (s3, redis):
        prefix = f"b{uuid.uuid4().hex[:8]}/"
        s3.put("media", prefix + KEY, source.read_bytes())
        hit_url = f"/bench/{KEY}?w=300&h=300&fm=webp"
        widths = iter(range(200, 2000))
        for tier, cfg in (
            ("object-store", config(work, s3, prefix)),
            ("redis", config(work, s3, prefix, redis)),
        ):
            port = free_port()
            hits: list[float] = []
            renders: list[float] = []
            with imgproxy_server(cfg, port), httpx.Client(timeout=60) as http:
                base = f"http://127.0.0.1:{port}"
                timed(http, base + hit_url)  # made once; every later request is a tier hit
                timed(http, base + f"/bench/{KEY}?w=100")  # the source's facts are known
                for r in range(rounds):
                    runs: list[tuple[list[float], Callable[[], str]]] = [
                        (hits, lambda: hit_url),
                        (renders, lambda: f"/bench/{KEY}?w={next(widths)}"),  # renders each
                    ]
                    for figures, target in runs if r % 2 == 0 else runs[::-1]:
                        figures.append(
                            statistics.median(timed(http, base + target()) for _ in range(n))
                        )
            rows.append(
                {
                    "case": f"{tier}-tier hit vs a render (6 MP -> 300 px webp), sequential",
                    "hit_ms": median(hits) * 1000,
                    "render_ms": median(renders) * 1000,
                    **ratios(hits, renders),
                    "rounds": {"hit": hits, "render": renders},
                }
            )
            print_row(rows[-1])

        # A new instance after another has made the rendition: what does its first hit cost?
        cfg = config(work, s3, prefix, redis)
        firsts: list[float] = []
        downloaded: list[int] = []
        for _ in range(rounds):
            port = free_port()
            before = s3.sent_bytes("media")
            with imgproxy_server(cfg, port), httpx.Client(timeout=60) as http:
                firsts.append(timed(http, f"http://127.0.0.1:{port}{hit_url}"))
            downloaded.append(s3.sent_bytes("media") - before)
        rows.append(
            {
                "case": "a new instance's first hit (shared tiers warm)",
                "hit_ms": median(firsts) * 1000,
                "source_bytes_read": max(downloaded),
                "rounds": {"first": firsts, "bytes": downloaded},
            }
        )
        print_row(rows[-1])
    return rows
