"""What one server process counts: responses by status, cache lookups by tier, renders, and
latency histograms, as plain integers (an increment on the hit path costs nanoseconds).

`server/exposition.py` turns these numbers into the Prometheus text format when `/metrics` is
scraped, and sums the workers.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(slots=True)
class Histogram:
    """Prometheus-style buckets: counts[i] holds observations <= bounds[i] and above the
    bound before it (not cumulative); the last count is for everything above."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)


class Metrics:
    """One per Services, so several apps in one process (tests, mounts) stay apart."""

    def __init__(self, *, queue_depth: Callable[[], int], in_flight: Callable[[], int]) -> None:
        self.statuses: Counter[int] = Counter()
        self.lookups: Counter[tuple[str, bool]] = Counter()
        self.renders = 0
        self.decodes = 0  # still renders share one decode per version and DCT scale
        self.request_seconds = Histogram()
        self.render_seconds = Histogram()
        self.fetch_seconds = Histogram()
        self.queue_depth = queue_depth
        self.in_flight = in_flight

    def response(self, status: int, seconds: float) -> None:
        self.statuses[status] += 1
        self.request_seconds.observe(seconds)

    def rendered(self, *, fetch: float, render: float) -> None:
        """One rendition made: seconds reading its source, and decoding to encoding it."""
        self.renders += 1
        self.fetch_seconds.observe(fetch)
        self.render_seconds.observe(render)

    def decoded(self) -> None:
        """One source decoded: fewer than renders when renditions share a decode."""
        self.decodes += 1

    def cache(self, tier: str, hit: bool) -> None:
        self.lookups[(tier, hit)] += 1
