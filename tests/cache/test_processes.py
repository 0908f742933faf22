"""Caching end to end with real processes: imgproxy instances and redis-server on loopback
ports (SPEC §5, §6, §9). nginx in front of them: test_nginx_site.py."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support import images, metric, write_config
from tests.support.processes import imgproxy_process

URL = "/media/photo.jpg?w=120&fm=webp"


def test_metrics_exposition(media: Path, tmp_path: Path) -> None:
    with imgproxy_process(write_config(tmp_path, media)) as base:
        httpx.get(base + URL)
        httpx.get(base + URL)
        httpx.get(base + "/media/nope.jpg")
        response = httpx.get(base + "/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        assert "# TYPE imgproxy_render_seconds histogram" in response.text
        assert metric(base, "imgproxy_requests_total", 'status="200"') == 2
        assert metric(base, "imgproxy_requests_total", 'status="404"') == 1
        assert metric(base, "imgproxy_renders_total") == 1
        assert metric(base, "imgproxy_cache_hits_total", 'tier="memory"') == 1
        assert metric(base, "imgproxy_cache_misses_total", 'tier="memory"') == 1
        assert metric(base, "imgproxy_render_seconds_count") == 1
        assert metric(base, "imgproxy_render_queue_depth") == 0
        assert "imgproxy_renders_in_flight" in response.text


def test_server_timing(media: Path, tmp_path: Path) -> None:
    with imgproxy_process(write_config(tmp_path, media, server={"timing": True})) as base:
        cold = httpx.get(base + URL).headers["server-timing"]
        for stage in ("resolve", "fetch", "decode", "render", "encode", "cache"):
            assert f"{stage};dur=" in cold
        warm = httpx.get(base + URL).headers["server-timing"]
        assert "cache;dur=" in warm and "render" not in warm
    with imgproxy_process(write_config(tmp_path, media)) as base:
        assert "server-timing" not in httpx.get(base + URL).headers


def test_disk_tier_survives_a_restart(media: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, media, cache={"disk_path": str(tmp_path / "disk")})
    with imgproxy_process(config) as base:
        first = httpx.get(base + URL)
        assert metric(base, "imgproxy_renders_total") == 1
    with imgproxy_process(config) as base:
        again = httpx.get(base + URL)
        assert again.content == first.content
        assert again.headers["etag"] == first.headers["etag"]
        assert metric(base, "imgproxy_renders_total") == 0
        assert metric(base, "imgproxy_cache_hits_total", 'tier="disk"') == 1


def test_two_instances_sharing_redis_render_once(media: Path, tmp_path: Path, redis: str) -> None:
    url = "/media/photo.jpg?w=222&fm=webp&q=71"
    config = write_config(tmp_path, media, cache={"redis_url": redis})
    with imgproxy_process(config) as one, imgproxy_process(config) as two:

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=60) as http:
                return await asyncio.gather(
                    *(http.get((one if i % 2 else two) + url) for i in range(40))
                )

        responses = asyncio.run(burst())
        assert {r.status_code for r in responses} == {200}
        assert len({r.content for r in responses}) == 1
        renders = [metric(base, "imgproxy_renders_total") for base in (one, two)]
        assert sum(renders) == 1, renders
    with imgproxy_process(config) as three:  # a new instance finds it in Redis
        assert httpx.get(three + url).content == responses[0].content
        assert metric(three, "imgproxy_cache_hits_total", 'tier="redis"') == 1
        assert metric(three, "imgproxy_renders_total") == 0


def test_redis_outage_never_fails_a_request(media: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, media, cache={"redis_url": "redis://127.0.0.1:1/0"})
    with imgproxy_process(config) as base:
        for width in range(40, 46):
            assert httpx.get(f"{base}/media/photo.jpg?w={width}").status_code == 200


def test_a_rewritten_source_is_never_served_stale_from_any_tier(
    media: Path, tmp_path: Path, redis: str
) -> None:
    cache = {"disk_path": str(tmp_path / "disk"), "redis_url": redis}
    config = write_config(tmp_path, media, cache=cache)
    url = "/media/photo.jpg?w=100&fm=png"
    with imgproxy_process(config) as base:
        before = httpx.get(base + url)
        assert images.decode(before.content).size == (100, 75)
        (media / "photo.jpg").write_bytes(images.jpeg((300, 600)))
        after = httpx.get(base + url)
        assert images.decode(after.content).size == (100, 200)
    with imgproxy_process(config) as base:  # empty memory; disk and Redis hold both versions
        fresh = httpx.get(base + url)
        assert images.decode(fresh.content).size == (100, 200)
        assert fresh.headers["etag"] == after.headers["etag"] != before.headers["etag"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imgproxy", *args], capture_output=True, text=True, timeout=120
    )


def test_purge_removes_one_sources_renditions_from_disk_and_redis(
    media: Path, tmp_path: Path, redis: str
) -> None:
    disk = tmp_path / "disk"
    config = write_config(tmp_path, media, cache={"disk_path": str(disk), "redis_url": redis})
    with imgproxy_process(config) as base:
        for query in ("w=10", "w=20", "w=30&fm=png"):
            assert httpx.get(f"{base}/media/photo.jpg?{query}").status_code == 200
        assert httpx.get(f"{base}/media/wide.png?w=10").status_code == 200
    files = sorted(p.suffix for p in disk.rglob("*") if p.is_file())
    assert files == [".jpeg", ".jpeg", ".json", ".json", ".png", ".png"]  # each source's facts
    result = run_cli("purge", "media/photo.jpg", "--config", str(config))
    assert result.returncode == 0, result.stderr
    # 3 renditions and the source's facts, on disk and in Redis
    assert "purged 8 cached entries of media/photo.jpg" in result.stdout
    assert len([p for p in disk.rglob("*") if p.is_file()]) == 2  # wide.png's stay
    with imgproxy_process(config) as base:
        httpx.get(f"{base}/media/photo.jpg?w=10")
        assert metric(base, "imgproxy_renders_total") == 1  # gone from Redis too
        httpx.get(f"{base}/media/wide.png?w=10")
        assert metric(base, "imgproxy_renders_total") == 1


def test_warm_renders_presets_then_skips_them(media: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    config = write_config(tmp_path, media, cache={"disk_path": str(disk)})
    first = run_cli("warm", "--store", "media", "--preset", "small,auto", "--config", str(config))
    assert first.returncode == 0, first.stderr
    files = 6  # photo.jpg, wide.png, alpha.png, anim.gif, sub/nested.jpg, me now.jpg
    # small: one per file; auto: avif, webp and jpeg/png per file
    assert f"made {files * 4}, failed 0, skipped 0" in first.stdout
    assert "100%" in first.stderr  # the progress bar
    second = run_cli("warm", "--store", "media", "--preset", "small,auto", "--config", str(config))
    assert f"made 0, failed 0, skipped {files * 4}" in second.stdout
    with imgproxy_process(config) as base:
        response = httpx.get(f"{base}/media/photo.jpg?p=auto", headers={"accept": "image/webp"})
        assert response.headers["content-type"] == "image/webp"
        assert metric(base, "imgproxy_renders_total") == 0
    bad = run_cli("warm", "--store", "media", "--preset", "nope", "--config", str(config))
    assert bad.returncode == 2 and "presets.nope" in bad.stderr


def test_two_processes_share_one_disk_folder(media: Path, tmp_path: Path) -> None:
    disk = tmp_path / "shared"
    config = write_config(tmp_path, media, cache={"disk_path": str(disk), "memory_bytes": 0})
    urls = [f"/media/photo.jpg?w={w}&fm=webp" for w in range(60, 80)]
    with imgproxy_process(config) as one, imgproxy_process(config) as two:

        async def both() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=60) as http:
                return await asyncio.gather(
                    *(http.get(base + url) for url in urls for base in (one, two))
                )

        responses = asyncio.run(both())
        assert {r.status_code for r in responses} == {200}
        for first, second in zip(responses[::2], responses[1::2], strict=True):
            assert first.content == second.content  # same rendition from either process
        files = [p for p in disk.rglob("*") if p.is_file() and p.suffix != ".json"]
        assert len(files) == len(urls)  # one complete file each, no temp files left behind
        assert len(list(disk.rglob("*.json"))) == 1  # and the source's facts, once
        for path in files:
            assert images.decode(path.read_bytes()).format == "WEBP"
        hits_before = metric(one, "imgproxy_cache_hits_total", 'tier="disk"')
        httpx.get(one + urls[0])
        assert metric(one, "imgproxy_cache_hits_total", 'tier="disk"') == hits_before + 1


def test_the_disk_tier_keeps_tiny_renditions_within_its_bytes_as_du_counts_them(
    media: Path, tmp_path: Path
) -> None:
    """40 tiny sources at 3 widths and as facts, 16 clients at once, into a 128 KiB disk
    tier: their lengths are a few KB, their blocks and folders 0.8 MB; what `du` sees of the
    tier settles within its budget."""
    for index in range(40):
        (media / f"dot{index}.png").write_bytes(images.png((8 + index % 4, 8)))
    disk, budget = tmp_path / "disk", 128 * 1024
    cache = {"memory_bytes": 0, "disk_path": str(disk), "disk_bytes": budget}
    urls = [f"/media/dot{i}.png?w={w}" for w in (1, 2, 3) for i in range(40)]
    urls += [f"/media/dot{i}.png?fm=json" for i in range(40)]
    with imgproxy_process(write_config(tmp_path, media, cache=cache)) as base:

        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                gate = asyncio.Semaphore(16)

                async def fetch(url: str) -> int:
                    async with gate:
                        return (await http.get(url)).status_code

                return await asyncio.gather(*(fetch(url) for url in urls))

        assert set(asyncio.run(burst())) == {200}
        deadline = time.monotonic() + 5  # eviction runs beside the requests
        while (used := _du(disk)) > budget and time.monotonic() < deadline:
            time.sleep(0.1)
        assert used <= budget, used
        assert any(disk.rglob("*.png"))  # evicted down to the budget, not to nothing
        assert httpx.get(base + "/media/dot0.png?w=3").status_code == 200  # a miss renders again


def _du(root: Path) -> int:
    """What `du` counts: the allocated blocks of every file and folder under the root."""
    return sum(path.stat().st_blocks * 512 for path in root.rglob("*"))
