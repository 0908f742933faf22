"""Per-request stage durations for the `Server-Timing` header (when `server.timing = true`).

A context variable rather than a parameter threaded through every stage: recording is one
lookup when timing is off.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

STAGES = ("resolve", "fetch", "decode", "render", "encode", "cache")

_current: ContextVar[dict[str, float] | None] = ContextVar("imgproxy_timing", default=None)


def start() -> dict[str, float]:
    timings: dict[str, float] = {}
    _current.set(timings)
    return timings


def record(stage: str, seconds: float) -> None:
    timings = _current.get()
    if timings is not None:
        timings[stage] = timings.get(stage, 0.0) + seconds


@contextmanager
def measure(stage: str) -> Iterator[None]:
    if _current.get() is None:
        yield
        return
    began = time.perf_counter()
    try:
        yield
    finally:
        record(stage, time.perf_counter() - began)


def header(timings: dict[str, float]) -> str:
    return ", ".join(
        f"{stage};dur={timings[stage] * 1000:.2f}" for stage in STAGES if stage in timings
    )
