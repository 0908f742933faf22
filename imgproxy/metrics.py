"""Prometheus metrics of one server process, exposed at `/metrics` (SPEC §2).

Per-request counts are plain integers (an increment on the hit path costs nanoseconds) that
a prometheus_client collector turns into counter families when scraped; latency histograms,
observed only when something renders, are prometheus_client's own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """One registry per pipeline, so several apps in one process (tests, mounts) stay apart."""

    def __init__(self, *, queue_depth: Callable[[], float], in_flight: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.statuses: Counter[int] = Counter()
        self.lookups: Counter[tuple[str, bool]] = Counter()
        self.renders = 0
        self.registry.register(_Counts(self))
        self.render_seconds = Histogram(
            "imgproxy_render_seconds",
            "Decode + render + encode time",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.fetch_seconds = Histogram(
            "imgproxy_fetch_seconds",
            "Time to read a source's bytes",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        depth = Gauge("imgproxy_render_queue_depth", "Renders waiting", registry=self.registry)
        depth.set_function(queue_depth)
        running = Gauge("imgproxy_renders_in_flight", "Renders running", registry=self.registry)
        running.set_function(in_flight)

    def response(self, status: int) -> None:
        self.statuses[status] += 1

    def rendered(self, *, fetch: float, render: float) -> None:
        """One rendition made: seconds reading its source, and decoding to encoding it."""
        self.renders += 1
        self.fetch_seconds.observe(fetch)
        self.render_seconds.observe(render)

    def cache(self, tier: str, hit: bool) -> None:
        self.lookups[(tier, hit)] += 1

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Counts(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[CounterMetricFamily]:
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
        yield from (requests, hits, misses, renders)
