"""`/metrics` as Prometheus reads it (server/exposition.py writes the text format itself):
a real server's scrape checked by Prometheus's own promtool, every family parsed by
prometheus_client's parser, hostile label values escaped, and the workers' snapshots summed,
a dead worker's counts kept and its gauges left out."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from imgproxy.metrics import Metrics
from imgproxy.server import exposition
from imgproxy.server.exposition import METRICS_ENV, Exposition, forget
from tests.support import images, need_binary, write_config
from tests.support.processes import served


def counted(depth: int = 0, running: int = 0) -> Metrics:
    m = Metrics(queue_depth=lambda: depth, in_flight=lambda: running)
    m.response(200, 0.004)
    m.response(200, 0.3)
    m.response(404, 20.0)  # past the last bound: only +Inf
    m.cache("memory", True)
    m.cache("disk", False)
    m.rendered(fetch=0.01, render=0.2)
    m.decoded()
    return m


def parsed(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as Prometheus's parser reads it: (name, labels) -> value."""
    samples = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_one_process_as_prometheus_parses_it() -> None:
    text = Exposition(counted(depth=3, running=1)).render()
    families = {f.name: f.type for f in text_string_to_metric_families(text.decode())}
    assert families == {
        "imgproxy_requests": "counter",
        "imgproxy_cache_hits": "counter",
        "imgproxy_cache_misses": "counter",
        "imgproxy_renders": "counter",
        "imgproxy_decodes": "counter",
        "imgproxy_request_duration_seconds": "histogram",
        "imgproxy_render_seconds": "histogram",
        "imgproxy_fetch_seconds": "histogram",
        "imgproxy_render_queue_depth": "gauge",
        "imgproxy_renders_in_flight": "gauge",
    }
    samples = parsed(text)
    assert samples[("imgproxy_requests_total", (("status", "200"),))] == 2
    assert samples[("imgproxy_requests_total", (("status", "404"),))] == 1
    assert samples[("imgproxy_cache_hits_total", (("tier", "memory"),))] == 1
    assert samples[("imgproxy_cache_misses_total", (("tier", "disk"),))] == 1
    assert samples[("imgproxy_decodes_total", ())] == 1
    latency = "imgproxy_request_duration_seconds"
    assert samples[(f"{latency}_bucket", (("le", "0.005"),))] == 1
    assert samples[(f"{latency}_bucket", (("le", "0.5"),))] == 2
    assert samples[(f"{latency}_bucket", (("le", "10.0"),))] == 2
    assert samples[(f"{latency}_bucket", (("le", "+Inf"),))] == 3
    assert samples[(f"{latency}_count", ())] == 3
    assert samples[(f"{latency}_sum", ())] == pytest.approx(20.304)
    assert samples[("imgproxy_render_queue_depth", ())] == 3
    assert samples[("imgproxy_renders_in_flight", ())] == 1


def test_label_values_are_escaped() -> None:
    m = Metrics(queue_depth=lambda: 0, in_flight=lambda: 0)
    hostile = 'a "tier"\\with\na newline'
    m.cache(hostile, True)
    samples = parsed(Exposition(m).render())
    assert samples[("imgproxy_cache_hits_total", (("tier", hostile),))] == 1


def test_workers_are_summed_and_a_dead_ones_gauges_leave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two other workers' snapshots beside this one's: counts and histograms add up; once the
    supervisor marks one dead, its counts stay (no counter goes back) and its gauges leave."""
    monkeypatch.setenv(METRICS_ENV, str(tmp_path))
    for pid, depth in ((101, 5), (102, 7)):
        (tmp_path / f"{pid}.json").write_text(json.dumps(exposition.snapshot(counted(depth=depth))))
    (tmp_path / "103.json.tmp").write_text("{half a snapsh")  # being written: not read
    here = Exposition(counted(depth=1, running=2))
    samples = parsed(here.render())
    assert (tmp_path / f"{os.getpid()}.json").exists()  # flushed before answering
    assert samples[("imgproxy_requests_total", (("status", "200"),))] == 6
    assert samples[("imgproxy_request_duration_seconds_bucket", (("le", "+Inf"),))] == 9
    assert samples[("imgproxy_render_seconds_sum", ())] == pytest.approx(0.6)
    assert samples[("imgproxy_render_queue_depth", ())] == 13
    assert samples[("imgproxy_renders_in_flight", ())] == 2

    forget(102)
    samples = parsed(here.render())
    assert samples[("imgproxy_requests_total", (("status", "200"),))] == 6
    assert samples[("imgproxy_render_queue_depth", ())] == 6


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_servers_scrape_passes_promtool(tmp_path: Path, workers: str) -> None:
    """Prometheus's own parser and linter (`promtool check metrics`) on a real server's
    /metrics, one worker's or the sum of two, after 200s, 304s, 404s and cache lookups."""
    promtool = need_binary("promtool")
    media = tmp_path / "media"
    media.mkdir()
    (media / "photo.jpg").write_bytes(images.jpeg((400, 300)))
    with served(write_config(tmp_path, media), "--workers", workers) as server:
        for n in range(8):
            reply = httpx.get(f"{server.url}/media/photo.jpg?w={50 + n}")
            assert reply.status_code == 200
            etag = {"if-none-match": reply.headers["etag"]}
            assert httpx.get(reply.url, headers=etag).status_code == 304
        assert httpx.get(f"{server.url}/media/none.jpg").status_code == 404
        scraped = httpx.get(f"{server.url}/metrics")
    assert scraped.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=scraped.content, capture_output=True, timeout=30
    )
    assert checked.returncode == 0 and not checked.stdout and not checked.stderr, checked
    assert b'imgproxy_requests_total{status="304"}' in scraped.content


def test_a_summed_sum_does_not_depend_on_the_order_files_are_read() -> None:
    """Three workers' `_sum`s added in the order the files were listed: 0.1 + 0.2 + 0.3 and
    0.3 + 0.2 + 0.1 differ in the last bit, and a scrape that listed them in the other order
    than the last one showed a lower `_sum` (a counter reset to Prometheus's rate())."""
    snapshots = []
    for seconds in (0.1, 0.2, 0.3):
        m = Metrics(queue_depth=lambda: 0, in_flight=lambda: 0)
        m.response(200, seconds)
        snapshots.append(exposition.snapshot(m))
    sums = {
        parsed(exposition.text(order))[("imgproxy_request_duration_seconds_sum", ())]
        for order in (snapshots, snapshots[::-1], snapshots[1:] + snapshots[:1])
    }
    assert len(sums) == 1, sums


def test_dead_workers_files_stay_few_and_no_count_goes_back_while_scraped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each worker that died (a crash, a SIGHUP reload) left its file and a marker for good:
    300 restarts were 600 files, all read by every later scrape (1000 dead workers: 67 ms of
    a worker's event loop a scrape). Now their counts are summed into one file as each dies,
    while scrapes run: no scrape sees a count lower than the one before, none twice over,
    and a half-written snapshot the dead worker left goes with it."""
    monkeypatch.setenv(METRICS_ENV, str(tmp_path))
    dead = 300
    # Never this process's own pid (a fresh machine's pids are this low): its live file
    # would replace a dead one's.
    pids = [pid for pid in range(1000, 1000 + dead + 1) if pid != os.getpid()][:dead]
    for pid in pids:
        (tmp_path / f"{pid}.json").write_text(json.dumps(exposition.snapshot(counted())))
        (tmp_path / f"{pid}.json.tmp").write_text("{half a snapsh")  # killed mid-flush
    here = Exposition(counted())
    ok = ("imgproxy_requests_total", (("status", "200"),))
    total = 2 * (dead + 1)

    def dying() -> None:
        for pid in pids:
            forget(pid)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        deaths = pool.submit(dying)
        seen = []
        while not deaths.done():
            seen.append(parsed(here.render())[ok])
        deaths.result()
    seen.append(parsed(here.render())[ok])
    assert len(list(tmp_path.iterdir())) <= 4  # this worker's, the dead ones', the lock
    assert len(seen) > 2 and set(seen) == {total}  # every scrape: every count, once
    samples = parsed(here.render())
    assert samples[("imgproxy_request_duration_seconds_count", ())] == 3 * (dead + 1)
    assert samples[("imgproxy_render_queue_depth", ())] == 0
