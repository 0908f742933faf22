"""Per-request stage durations for the `Server-Timing` header (when `server.timing = true`).

A context variable rather than a parameter threaded through every stage: recording is one
lookup when timing is off.
"""

from __future__ import annotations

import contextlib
import time
from contextlib import AbstractContextManager
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


class _Measure:
    __slots__ = ("began", "stage")

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.began = 0.0

    def __enter__(self) -> None:
        self.began = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        record(self.stage, time.perf_counter() - self.began)


_OFF = contextlib.nullcontext()


def measure(stage: str) -> AbstractContextManager[None]:
    """Times a block into the current request's timings; a shared no-op when timing is off."""
    return _OFF if _current.get() is None else _Measure(stage)


def header(timings: dict[str, float]) -> str:
    return ", ".join(
        f"{stage};dur={timings[stage] * 1000:.2f}" for stage in STAGES if stage in timings
    )
