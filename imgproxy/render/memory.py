"""Source facts + a RenderJob -> the bytes its render holds at once: the source, what the
decoder buffers (a progressive JPEG's coefficients), the decoded pixels and the output frames.
Reserved from `limits.inflight_bytes` before the source is read (SPEC §11.1): by the
server's executor, and for blocking callers (`imgproxy.inspect`) by `hold`.

The estimate is made from the header facts alone, before anything is decoded.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from imgproxy.facts import SourceInfo
from imgproxy.formats import OutputFormat
from imgproxy.geometry import (
    PLACEHOLDER_SIDE,
    crop_region,
    decode_size,
    output_size,
    plan_transform,
    unturned,
)
from imgproxy.job import RenderJob
from imgproxy.params import Gravity, Transform
from imgproxy.render.crop import SMART_SIDE

# What one decoded pixel costs while a render holds it, as measured with Pillow 13
# (tests/render/test_memory.py): its own 4 bytes (RGB is stored as 4), a conversion's or an
# orientation's copy, and the premultiplied copy an RGBA resize makes. libwebp and libavif
# decode into buffers of their own (and an animation canvas), which Pillow copies.
PIXEL_BYTES = 12
LIBRARY_PIXEL_BYTES = {"WEBP": 20, "AVIF": 20, "HEIF": 20}
# Each output frame, resized, a flattened copy (alpha to JPEG) and the encoder's own copy.
OUTPUT_PIXEL_BYTES = 12
# libavif and libwebp keep working planes of their own while they encode: measured peaks per
# output pixel at q=100 were 21-24 bytes (AVIF) and 10-18 (WebP, the higher with alpha).
ENCODER_PIXEL_BYTES = {OutputFormat.AVIF: 32, OutputFormat.WEBP: 24}
# The §15.1 operations' copies (render/operations.py): trim's difference and mask beside the
# region it reads; per output frame, a rotation's or flip's copy and blur's or sharpen's
# (its own copy and Pillow's pass buffer), pixelate's, and the frame before its pad.
TRIM_PIXEL_BYTES = 12
# A `wm=` mark scaled to at most the output: its RGBA copy and the premultiplied one.
MARK_PIXEL_BYTES = 8
OPERATION_PIXEL_BYTES = 4
DCT_SCALES = (8, 4, 2, 1)  # a JPEG decoded at 1/8, 1/4, 1/2 or whole, as Pillow's draft()
DCT_SCALED = frozenset({"JPEG"})  # MPO photos are judged as JPEG (render/probe.py)


def working_bytes(info: SourceInfo, job: RenderJob) -> int:
    """An upper estimate: too low lets concurrent renders pass the budget, too high only
    makes a large source wait for a larger share of it."""
    t = job.transform
    if job.output.is_placeholder:
        t = Transform(width=PLACEHOLDER_SIDE, height=PLACEHOLDER_SIDE)
    source = (info.width, info.height)
    geometry = plan_transform(source, t)
    per_pixel = LIBRARY_PIXEL_BYTES.get(info.format, PIXEL_BYTES)
    decoded = _decoded_pixels(info, t)
    if t.gravity is Gravity.SMART and t.focal is None:  # analysed beside the decoded frame:
        # a JPEG decoded again at its analysis scale, any other format's frame copied
        decoded += _decoded_pixels(info, Transform(width=SMART_SIDE, height=SMART_SIDE))
    frames = info.frames if job.animate else 1
    per_output = ENCODER_PIXEL_BYTES.get(job.output, OUTPUT_PIXEL_BYTES)
    width, height = output_size(geometry, t)  # with its pad
    output = width * height * per_output * frames
    working = info.bytes + info.coefficient_bytes + decoded * per_pixel + output
    return working + _operation_bytes(source, geometry.canvas, t) + _mark_bytes(job, width * height)


def _operation_bytes(source: tuple[int, int], canvas: tuple[int, int], t: Transform) -> int:
    """What the operations hold beside the frames counted above: one output frame's copies
    at a time (an animation's frames go through them in turn), and trim's over its region."""
    copies = sum(
        (
            bool(t.rotate),
            bool(t.flip),
            2 * bool(t.blur),
            2 * bool(t.sharpen),
            bool(t.pixelate),
            bool(any(t.pad)),
        )
    )
    extra = canvas[0] * canvas[1] * copies * OPERATION_PIXEL_BYTES
    if t.trim is not None:
        _, _, w, h = crop_region(source, t)
        extra += w * h * TRIM_PIXEL_BYTES
    return extra


def _mark_bytes(job: RenderJob, output_pixels: int) -> int:
    """A `wm=` mark's bytes and its whole decode (as a source's: a huge mark costs its
    pixels before it is scaled down), its scaled copies (at most the output's size: RGBA and
    premultiplied) and the copy of the frame it is drawn on (render/watermark.py)."""
    mark = job.mark
    if mark is None:
        return 0
    decoded = mark.size[0] * mark.size[1] * PIXEL_BYTES
    return mark.bytes + decoded + output_pixels * (MARK_PIXEL_BYTES + OPERATION_PIXEL_BYTES)


def _decoded_pixels(info: SourceInfo, t: Transform) -> int:
    """A JPEG's pixels at its DCT scale; any other format's are all decoded."""
    scale = dct_scale(info, t)
    return -(-info.width // scale) * -(-info.height // scale)


def dct_scale(info: SourceInfo, t: Transform) -> int:
    """1, 2, 4 or 8: the DCT scale render/__init__.py's _draft asks of Pillow for a JPEG (the
    largest whose decode still covers `decode_size`); 1 for any other format. Jobs of one
    version with the same scale start from the same decoded pixels (sharing.py)."""
    width, height = info.width, info.height
    if info.format not in DCT_SCALED or not (t.width or t.height) or t.trim is not None:
        return 1
    geometry = unturned(plan_transform((width, height), t), t.rotate)
    want_w, want_h = decode_size((width, height), geometry)
    most = min(width // want_w, height // want_h)
    return next((s for s in DCT_SCALES if most >= s), 1)


class ThreadBudget:
    """`inflight_bytes` for threads, first come first served; a share larger than the whole
    budget takes the whole budget, and then runs alone rather than never."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._free = total
        self._line: deque[object] = deque()
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        share = min(max(nbytes, 0), self.total)
        turn = object()
        with self._changed:
            self._line.append(turn)
            try:
                self._changed.wait_for(lambda: self._line[0] is turn and self._free >= share)
            except BaseException:
                self._line.remove(turn)
                self._changed.notify_all()  # it may have been first in line
                raise
            self._line.popleft()
            self._free -= share
            self._changed.notify_all()  # the next in line may fit as well
        try:
            yield
        finally:
            with self._changed:
                self._free += share
                self._changed.notify_all()


_BUDGETS: dict[tuple[int, int], ThreadBudget] = {}


def hold(total: int, nbytes: int) -> AbstractContextManager[None]:
    """`nbytes` of this process's `total`-byte budget for blocking callers: every call with
    the same limit shares one (a forked child has its own)."""
    key = (os.getpid(), total)
    budget = _BUDGETS.get(key) or _BUDGETS.setdefault(key, ThreadBudget(total))
    return budget.hold(nbytes)
