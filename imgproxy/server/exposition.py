"""Metrics -> the Prometheus text format (0.0.4) at `/metrics`, for one worker or summed over
every worker of one server (SPEC §12.2).

Several workers (`imgproxy serve --workers N` sets METRICS_ENV to a private directory): each
worker writes everything it has counted to a file of its own, once a second and before it
answers a scrape (written aside, then renamed: a reader sees a whole snapshot), and a scrape
sums every worker's file. A dead worker's counts stay in the sum, so no counter goes back;
its gauges (queue depth, in flight) leave it once the supervisor marks it dead (`forget`). A
scrape may miss up to a second of the other workers' requests.

The format is written here rather than by prometheus_client, whose import cost every process
of the server 1.74 MiB (each worker, the fork server and the supervisor) for a dozen
families; the tests read it with prometheus_client's own parser.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from imgproxy.metrics import Histogram, Metrics

__all__ = ["CONTENT_TYPE_LATEST", "METRICS_ENV", "Exposition", "forget"]

CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"
METRICS_ENV = "IMGPROXY_METRICS_DIR"  # set by the supervisor for its workers (workers.py)
DEAD = ".dead"  # beside a worker's file once it died: its gauges leave the sum

# Each family: its name, type and help, in the order a scrape lists them.
COUNTERS = (
    ("imgproxy_requests", "Responses by status"),
    ("imgproxy_cache_hits", "Cache hits by tier"),
    ("imgproxy_cache_misses", "Cache misses by tier"),
    ("imgproxy_renders", "Renditions rendered"),
    ("imgproxy_decodes", "Sources decoded for renditions"),
)
HISTOGRAMS = {
    "imgproxy_request_duration_seconds": ("request_seconds", "Time to answer a request"),
    "imgproxy_render_seconds": ("render_seconds", "Decode + render + encode time"),
    "imgproxy_fetch_seconds": ("fetch_seconds", "Time to read a source's bytes"),
}
GAUGES = (
    ("imgproxy_render_queue_depth", "Renders waiting"),
    ("imgproxy_renders_in_flight", "Renders running"),
)

# A snapshot: each family's samples, a sample's name and labels as written -> its value.
Samples = dict[str, dict[str, float]]


def snapshot(m: Metrics) -> Samples:
    """What one process has counted, as the samples of each family."""
    requests: dict[str, float] = {
        _sample("imgproxy_requests_total", status=str(s)): n for s, n in m.statuses.items()
    }
    hits: dict[str, float] = {}
    misses: dict[str, float] = {}
    for (tier, hit), count in m.lookups.items():
        name = "imgproxy_cache_hits_total" if hit else "imgproxy_cache_misses_total"
        (hits if hit else misses)[_sample(name, tier=tier)] = count
    samples: Samples = {
        "imgproxy_requests": requests,
        "imgproxy_cache_hits": hits,
        "imgproxy_cache_misses": misses,
        "imgproxy_renders": {"imgproxy_renders_total": m.renders},
        "imgproxy_decodes": {"imgproxy_decodes_total": m.decodes},
    }
    for name, (attribute, _) in HISTOGRAMS.items():
        samples[name] = _buckets(name, getattr(m, attribute))
    samples["imgproxy_render_queue_depth"] = {"imgproxy_render_queue_depth": m.queue_depth()}
    samples["imgproxy_renders_in_flight"] = {"imgproxy_renders_in_flight": m.in_flight()}
    return samples


def _buckets(name: str, histogram: Histogram) -> dict[str, float]:
    """Cumulative buckets (sums of workers' cumulative buckets are the sum's), count, sum."""
    samples: dict[str, float] = {}
    running = 0
    bounds = (*(repr(float(b)) for b in histogram.bounds), "+Inf")
    for bound, count in zip(bounds, histogram.counts, strict=True):
        running += count
        samples[_sample(f"{name}_bucket", le=bound)] = running
    samples[f"{name}_count"] = running
    samples[f"{name}_sum"] = histogram.total
    return samples


def _sample(name: str, **labels: str) -> str:
    written = ",".join(f'{key}="{_escaped(value)}"' for key, value in labels.items())
    return f"{name}{{{written}}}"


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def text(snapshots: Iterable[Samples], live: Iterable[Samples]) -> bytes:
    """The exposition of `snapshots` summed (every worker's, dead or alive), gauges summed over
    `live` alone."""
    summed = _sum(snapshots, [*(name for name, _ in COUNTERS), *HISTOGRAMS])
    gauges = _sum(live, [name for name, _ in GAUGES])
    lines: list[str] = []
    for name, help_ in COUNTERS:
        _family(lines, f"{name}_total", "counter", help_, sorted(summed[name].items()))
    for name, (_, help_) in HISTOGRAMS.items():
        _family(lines, name, "histogram", help_, summed[name].items())
    for name, help_ in GAUGES:
        _family(lines, name, "gauge", help_, gauges[name].items() or [(name, 0.0)])
    return "".join(lines).encode()


def _sum(snapshots: Iterable[Samples], families: Iterable[str]) -> Samples:
    """Each sample summed exactly (fsum): a float sum in the order the files happen to be
    listed rounded differently from one scrape to the next (0.1 + 0.2 + 0.3 against
    0.3 + 0.2 + 0.1), and a `_sum` a hair lower than the last scrape's is a counter reset
    to Prometheus, whose rate() then counts the whole sum again."""
    addends: dict[str, dict[str, list[float]]] = {name: {} for name in families}
    for samples in snapshots:
        for name, values in addends.items():
            for sample, value in samples.get(name, {}).items():
                values.setdefault(sample, []).append(value)
    return {
        name: {sample: math.fsum(each) for sample, each in values.items()}
        for name, values in addends.items()
    }


def _family(
    lines: list[str], name: str, kind: str, help_: str, samples: Iterable[tuple[str, float]]
) -> None:
    lines.append(f"# HELP {name} {help_}\n# TYPE {name} {kind}\n")
    lines.extend(f"{sample} {_value(value)}\n" for sample, value in samples)


def _value(value: float) -> str:
    return repr(float(value)) if value != float("inf") else "+Inf"


class Exposition:
    """One process's `/metrics`: its own counts, or with METRICS_ENV every worker's."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        folder = os.environ.get(METRICS_ENV)
        self.folder = Path(folder) if folder else None
        self.shared = self.folder is not None

    def render(self) -> bytes:
        if self.folder is None:
            own = snapshot(self.metrics)
            return text([own], [own])
        self.flush()
        every, live = [], []
        for samples, alive in _read(self.folder):
            every.append(samples)
            if alive:
                live.append(samples)
        return text(every, live)

    def flush(self) -> None:
        """Hand everything counted so far to the other workers (a no-op alone)."""
        if self.folder is None:
            return
        mine = self.folder / f"{os.getpid()}.json"
        aside = mine.with_suffix(".json.tmp")
        aside.write_text(json.dumps(snapshot(self.metrics)))
        os.replace(aside, mine)


def _read(folder: Path) -> Iterator[tuple[Samples, bool]]:
    """Each worker's last snapshot, and whether that worker is alive."""
    for path in folder.glob("*.json"):
        try:
            samples = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            continue  # written aside and renamed, so only a file being removed
        yield samples, not path.with_suffix(DEAD).exists()


def forget(pid: int | None) -> None:
    """A dead worker's gauges leave the sum; its counts stay (called by the supervisor, whose
    METRICS_ENV its workers share)."""
    folder = os.environ.get(METRICS_ENV)
    if folder and pid is not None:
        Path(folder, f"{pid}{DEAD}").touch()
