"""Prometheus metrics of one server process, exposed at `/metrics` (SPEC §2)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """One registry per pipeline, so several apps in one process (tests, mounts) stay apart."""

    def __init__(self, *, queue_depth: Callable[[], float], in_flight: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("imgproxy_requests", "Responses by status", ["status"], registry=r)
        self.cache_hits = Counter("imgproxy_cache_hits", "Cache hits by tier", ["tier"], registry=r)
        self.cache_misses = Counter(
            "imgproxy_cache_misses", "Cache misses by tier", ["tier"], registry=r
        )
        self.renders = Counter("imgproxy_renders", "Renditions rendered", registry=r)
        self.render_seconds = Histogram(
            "imgproxy_render_seconds",
            "Decode + render + encode time",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fetch_seconds = Histogram(
            "imgproxy_fetch_seconds",
            "Time to read a source's bytes",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        Gauge(
            "imgproxy_render_queue_depth", "Renders waiting for a thread", registry=r
        ).set_function(queue_depth)
        Gauge("imgproxy_renders_in_flight", "Renders running now", registry=r).set_function(
            in_flight
        )
        self._by_status: dict[int, Counter] = {}

    def response(self, status: int) -> None:
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self.requests.labels(str(status))
        child.inc()

    def cache(self, tier: str, hit: bool) -> None:
        (self.cache_hits if hit else self.cache_misses).labels(tier).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
