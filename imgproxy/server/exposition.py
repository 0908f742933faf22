"""Metrics -> the Prometheus text format (0.0.4) at `/metrics`, for one worker or summed over
every worker of one server (SPEC §12.2).

Several workers (`imgproxy serve --workers N` sets METRICS_ENV to a private directory): each
worker writes everything it has counted to a file of its own, once a second and before it
answers a scrape (written aside, then renamed: a reader sees a whole snapshot), and a scrape
sums every worker's file. A dead worker's counts stay in the sum, so no counter goes back:
the supervisor adds them to one file of the dead workers' counts and removes the worker's
(`forget`), without its gauges (queue depth, in flight). One file a dead worker, as
prometheus_client's multiprocess mode kept, made each restart and reload cost every later
scrape: 1000 of them took 67 ms of a worker's event loop a scrape. A scrape may miss up to
a second of the other workers' requests.

The format is written here rather than by prometheus_client, whose import cost every process
of the server 1.74 MiB (each worker, the fork server and the supervisor) for a dozen
families; the tests read it with prometheus_client's own parser.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from imgproxy.metrics import Histogram, Metrics

__all__ = ["CONTENT_TYPE_LATEST", "METRICS_ENV", "Exposition", "forget"]

CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"
METRICS_ENV = "IMGPROXY_METRICS_DIR"  # set by the supervisor for its workers (workers.py)
DEAD = "dead.json"  # the counts of every worker that died, summed (`forget`)
LOCK = ".lock"  # a scrape reads every file, and `forget` moves one's counts, under it

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
COUNTED = [*(name for name, _ in COUNTERS), *HISTOGRAMS]  # what a dead worker leaves

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


def text(snapshots: Iterable[Samples]) -> bytes:
    """The exposition of `snapshots` summed (the dead workers' have no gauges)."""
    snapshots = list(snapshots)
    summed = _sum(snapshots, COUNTED)
    gauges = _sum(snapshots, [name for name, _ in GAUGES])
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
            return text([snapshot(self.metrics)])
        self.flush()
        return text(_read(self.folder))

    def flush(self) -> None:
        """Hand everything counted so far to the other workers (a no-op alone)."""
        if self.folder is None:
            return
        mine = self.folder / f"{os.getpid()}.json"
        aside = mine.with_suffix(".json.tmp")
        aside.write_text(json.dumps(snapshot(self.metrics)))
        os.replace(aside, mine)


def _read(folder: Path) -> list[Samples]:
    """Each live worker's last snapshot, and the dead workers' counts."""
    found = []
    with _locked(folder, exclusive=False):  # not while a dead worker's counts move
        for path in folder.glob("*.json"):
            try:
                found.append(json.loads(path.read_text()))
            except (FileNotFoundError, ValueError):
                continue  # written aside and renamed, so only a file being removed
    return found


@contextlib.contextmanager
def _locked(folder: Path, *, exclusive: bool) -> Iterator[None]:
    """flock: POSIX, as the workers that share these files are (one process needs none)."""
    import fcntl

    with open(folder / LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield  # closing the file unlocks it


def forget(pid: int | None) -> None:
    """A dead worker's counts join the dead workers' file, and its own file and gauges leave
    the sum (called by the supervisor, whose METRICS_ENV its workers share, once the worker
    has exited: a live one would write its file again)."""
    folder = os.environ.get(METRICS_ENV)
    if not folder or pid is None:
        return
    mine, dead = Path(folder, f"{pid}.json"), Path(folder, DEAD)
    with _locked(Path(folder), exclusive=True):
        try:
            samples = [json.loads(mine.read_text())]
        except (FileNotFoundError, ValueError):
            samples = []  # died before its first snapshot
        if samples:
            with contextlib.suppress(FileNotFoundError):
                samples.append(json.loads(dead.read_text()))
            aside = dead.with_suffix(".json.tmp")
            aside.write_text(json.dumps(_sum(samples, COUNTED)))
            os.replace(aside, dead)
        for path in (mine, mine.with_suffix(".json.tmp")):  # and what it was writing
            path.unlink(missing_ok=True)
