"""Red-team findings against SPEC §11.1 (every resource bounded), sixth pass."""

from __future__ import annotations

import gc
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from imgproxy.job import MarkJob
from imgproxy.render.budget import Budget
from imgproxy.render.watermark import ScaledMarks
from tests.support import images

MEMO_LIMIT = 256 * 1024


def test_scaled_marks_hold_no_more_than_their_bound() -> None:
    """The scaled-mark memo counted only pixels: an output too small for the mark inside its
    margins kept a None weighing 0 bytes, and a mark scaled to a few pixels weighed a few
    bytes for a kilobyte held. Every `wm=` URL picks its output size, so distinct small sizes
    (w=1..32 under a 16 px margin: 131,072 of them) grew a render process by 33 MB past the
    16 MiB bound, counted as nothing. Sent here from 8 render threads at once."""
    mark_png = images.encode(Image.new("RGBA", (200, 50), (255, 0, 0, 128)), "PNG")
    mark = MarkJob(
        "se", 0.6, 0.2, 16, None, 50_000_000, (200, 50), len(mark_png), ("m", "logo.png", "v1")
    )
    kept = ScaledMarks(MEMO_LIMIT)
    unfit = [(w, h) for w in range(1, 33) for h in range(1, 201)]  # inside the margins: None
    tiny = [(w, h) for w in range(40, 80) for h in range(33, 73)]  # marks of a few pixels

    def scale(output: tuple[int, int]) -> None:
        kept.get(mark, mark_png, output, Budget(10))

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(scale, unfit + tiny))
        gc.collect()  # a decode's reference cycles: garbage, not held
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept.bytes <= MEMO_LIMIT
    assert held < MEMO_LIMIT * 3 // 2, f"{held >> 10} KiB held by a {MEMO_LIMIT >> 10} KiB memo"
