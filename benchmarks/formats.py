"""(h) Output costs of SPEC §13, in-process on one thread, rounds alternating:

- a placeholder hash (fm=thumbhash, fm=blurhash) vs a 300 px JPEG rendition of the same
  6 MP JPEG: both decode at a DCT scale, the hash then sees 100 px;
- AVIF at render.avif_speed 8 (our default) vs libavif's default speed 6 (Pillow's): wall
  time and bytes of a 1200 px rendition at the same quality.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness import median, print_row, ratios
from imgproxy.formats import OutputFormat
from imgproxy.params import build_transform
from imgproxy.render import RenderJob, render

DECODERS = ("JPEG",)


def job(query: dict[str, str], output: OutputFormat, quality: int | None = None) -> RenderJob:
    t = build_transform(query, 4096)
    return RenderJob(t, output, quality, DECODERS, False, 50_000_000)


def seconds(call: Callable[[], object], n: int) -> float:
    """Median wall seconds of `n` calls."""
    times = []
    for _ in range(n):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def alternate(data: bytes, jobs: list[RenderJob], rounds: int, n: int) -> list[list[float]]:
    """Per job, the median seconds of `n` renders in each round; the order flips each round."""
    figures: list[list[float]] = [[] for _ in jobs]
    for r in range(rounds):
        order = list(range(len(jobs))) if r % 2 == 0 else list(reversed(range(len(jobs))))
        for index in order:
            figures[index].append(seconds(functools.partial(render, data, jobs[index]), n))
    return figures


def run(source: Path, rounds: int, n: int = 5) -> list[dict[str, object]]:
    data = source.read_bytes()
    rows: list[dict[str, object]] = []
    jpeg = job({"w": "300"}, OutputFormat.JPEG, 80)
    for fm in (OutputFormat.THUMBHASH, OutputFormat.BLURHASH):
        hashed = job({"fm": fm.value}, fm)
        ours, baseline = alternate(data, [hashed, jpeg], rounds, n)
        rows.append(
            {
                "case": f"fm={fm.value} vs 300 px JPEG, 6 MP JPEG source",
                "ours_ms": median(ours) * 1000,
                "baseline_ms": median(baseline) * 1000,
                **ratios(ours, baseline),
                "text": render(data, hashed).body.decode(),
            }
        )
        print_row(rows[-1])
    fast = job({"w": "1200"}, OutputFormat.AVIF, 60)
    default = dataclasses.replace(fast, avif_speed=6)
    times = dict(zip((8, 6), alternate(data, [fast, default], rounds, max(1, n // 2)), strict=True))
    sizes = {speed: len(render(data, each).body) for speed, each in ((8, fast), (6, default))}
    rows.append(
        {
            "case": "AVIF 1200 px q=60: speed 8 vs speed 6 (time)",
            "ours_ms": median(times[8]) * 1000,
            "baseline_ms": median(times[6]) * 1000,
            **ratios(times[8], times[6]),
            "bytes_8": sizes[8],
            "bytes_6": sizes[6],
            "bytes_ratio": sizes[8] / sizes[6],
        }
    )
    print_row(rows[-1])
    return rows
