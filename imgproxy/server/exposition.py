"""Metrics -> the Prometheus text format at `/metrics`, with prometheus_client (the `server`
extra), for one worker or summed over every worker of one server (SPEC §12.2).

One worker: families are built from its plain counters when scraped. Several workers
(`imgproxy serve --workers N` sets PROMETHEUS_MULTIPROC_DIR): prometheus_client's
multiprocess mode does the summing. Its counters write to shared files on every increment
(1.5 us, 3 us per histogram observation, measured here), too much for the hit path, so each
worker adds what it counted since the last flush, once a second and before answering a
scrape; a scrape may miss up to a second of the other workers' requests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from imgproxy.metrics import Histogram as Buckets
from imgproxy.metrics import Metrics

__all__ = ["CONTENT_TYPE_LATEST", "Exposition"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
HISTOGRAMS = {
    "imgproxy_request_duration_seconds": ("request_seconds", "Time to answer a request"),
    "imgproxy_render_seconds": ("render_seconds", "Decode + render + encode time"),
    "imgproxy_fetch_seconds": ("fetch_seconds", "Time to read a source's bytes"),
}


class Exposition:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.shared = bool(os.environ.get(MULTIPROC_ENV))
        self._shared = _Shared() if self.shared else None

    def render(self) -> bytes:
        registry = CollectorRegistry()
        if self._shared is not None:
            self._shared.flush(self.metrics)
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry.register(_Families(self.metrics))
        return generate_latest(registry)

    def flush(self) -> None:
        """Hand what was counted since the last flush to the other workers (no-op alone)."""
        if self._shared is not None:
            self._shared.flush(self.metrics)


class _Families(Collector):
    """One process: its counters as metric families, built at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        requests = CounterMetricFamily(
            "imgproxy_requests", "Responses by status", labels=["status"]
        )
        for status, count in sorted(m.statuses.items()):
            requests.add_metric([str(status)], count)
        hits = CounterMetricFamily("imgproxy_cache_hits", "Cache hits by tier", labels=["tier"])
        misses = CounterMetricFamily(
            "imgproxy_cache_misses", "Cache misses by tier", labels=["tier"]
        )
        for (tier, hit), count in sorted(m.lookups.items()):
            (hits if hit else misses).add_metric([tier], count)
        renders = CounterMetricFamily("imgproxy_renders", "Renditions rendered")
        renders.add_metric([], m.renders)
        decodes = CounterMetricFamily("imgproxy_decodes", "Sources decoded for renditions")
        decodes.add_metric([], m.decodes)
        yield from (requests, hits, misses, renders, decodes)
        for name, (attribute, documentation) in HISTOGRAMS.items():
            yield _histogram(name, documentation, getattr(m, attribute))
        yield GaugeMetricFamily("imgproxy_render_queue_depth", "Renders waiting", m.queue_depth())
        yield GaugeMetricFamily("imgproxy_renders_in_flight", "Renders running", m.in_flight())


def _histogram(name: str, documentation: str, buckets: Buckets) -> HistogramMetricFamily:
    cumulative, running = [], 0
    for bound, count in zip((*buckets.bounds, float("inf")), buckets.counts, strict=True):
        running += count
        cumulative.append((str(bound) if bound != float("inf") else "+Inf", running))
    return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=buckets.total)


class _Shared:
    """This worker's share of the multiprocess files, and what it has flushed so far."""

    def __init__(self) -> None:
        # registry=None: the multiprocess files are the registry (MultiProcessCollector).
        self.requests = Counter(
            "imgproxy_requests", "Responses by status", ["status"], registry=None
        )
        self.hits = Counter("imgproxy_cache_hits", "Cache hits by tier", ["tier"], registry=None)
        self.misses = Counter(
            "imgproxy_cache_misses", "Cache misses by tier", ["tier"], registry=None
        )
        self.renders = Counter("imgproxy_renders", "Renditions rendered", registry=None)
        self.decodes = Counter("imgproxy_decodes", "Sources decoded for renditions", registry=None)
        self.histograms = {
            attribute: Histogram(name, documentation, registry=None)
            for name, (attribute, documentation) in HISTOGRAMS.items()
        }
        # Summed over the workers alive now (the supervisor marks a dead one).
        self.depth = Gauge(
            "imgproxy_render_queue_depth",
            "Renders waiting",
            registry=None,
            multiprocess_mode="livesum",
        )
        self.running = Gauge(
            "imgproxy_renders_in_flight",
            "Renders running",
            registry=None,
            multiprocess_mode="livesum",
        )
        self.sent: dict[Any, float] = {}

    def flush(self, m: Metrics) -> None:
        for status, count in list(m.statuses.items()):
            self._add(("status", status), count, self.requests.labels(str(status)))
        for (tier, hit), count in list(m.lookups.items()):
            counter = self.hits if hit else self.misses
            self._add(("lookup", tier, hit), count, counter.labels(tier))
        self._add("renders", m.renders, self.renders)
        self._add("decodes", m.decodes, self.decodes)
        for attribute, histogram in self.histograms.items():
            buckets: Buckets = getattr(m, attribute)
            # prometheus_client keeps one value per bucket (made cumulative when collected)
            # and offers only observe(): the per-bucket values take the batched deltas.
            for index, count in enumerate(list(buckets.counts)):
                self._add((attribute, index), count, histogram._buckets[index])
            self._add((attribute, "sum"), buckets.total, histogram._sum)
        self.depth.set(m.queue_depth())
        self.running.set(m.in_flight())

    def _add(self, key: Any, now: float, value: Any) -> None:
        delta = now - self.sent.get(key, 0)
        if delta:
            value.inc(delta)
            self.sent[key] = now
