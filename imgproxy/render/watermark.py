"""The `wm=` mark drawn on each output frame (SPEC §15.1): after pad, before encode.

The mark is opened like a source, with its own store's decoders and pixel limit, turned
upright and made RGBA; scaled to its width (a fraction of the output's, or its own) but never
past the output less its margins; its alpha multiplied by the opacity; then composited over
the frame: an RGB frame stays opaque, an RGBA frame keeps its transparency outside the mark
(Porter-Duff "over", so a half-transparent mark on a transparent pixel stays half
transparent). One scaled copy serves every frame of an animation.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from PIL import Image

from imgproxy.job import MarkJob
from imgproxy.render.budget import Budget
from imgproxy.render.color import orient, orientation
from imgproxy.render.layout import REDUCING_GAP
from imgproxy.render.probe import open_image

Stamp = Callable[[Image.Image], Image.Image]
# The marks scaled for recent output sizes, kept by this process so a new size of a popular
# rendition does not decode the mark again: least recently used out past this many bytes of
# pixels (a mark is never larger than its output, itself within limits.max_output_pixels).
MARK_MEMO_BYTES = 16 * 1024 * 1024
# What an entry holds besides its pixels: the key, the OrderedDict node and the Image object
# (measured: about 1 KiB; 260 B for a None). Counting pixels alone, outputs too small for the
# mark (None, 0 bytes) and tiny marks (a few bytes) grew the memo past any bound: 131,072
# distinct sizes under 32 px held 33 MB counted as 0 (SPEC §11.1).
MARK_ENTRY_BYTES = 1024


def stamper(mark: MarkJob | None, data: bytes | None, budget: Budget) -> Stamp:
    """A function drawing the mark on a frame; the identity when there is none. The mark
    is decoded and scaled on the first frame, for that frame's size."""
    if mark is None or data is None:
        return lambda frame: frame
    scaled: dict[tuple[int, int], Image.Image | None] = {}

    def stamp(frame: Image.Image) -> Image.Image:
        if frame.size not in scaled:
            scaled[frame.size] = _SCALED.get(mark, data, frame.size, budget)
        ready = scaled[frame.size]
        return frame if ready is None else draw(frame, ready, mark)

    return stamp


def prepared(
    mark: MarkJob, data: bytes, output: tuple[int, int], budget: Budget
) -> Image.Image | None:
    """The mark upright, in RGBA, at its size on this output, its opacity applied; None
    when no pixel of it fits inside the margins."""
    with open_image(data, mark.decoders, mark.max_pixels, budget) as image:
        turn = orientation(image)
        upright = image.size if turn in (1, 2, 3, 4) else (image.height, image.width)
        size = mark_size(mark, upright, output)
        if size is None:
            return None
        if image.format == "JPEG":  # decoded no larger than needed (SPEC §11 shrink on load)
            image.draft("RGB", size if upright == image.size else (size[1], size[0]))
        image.load()
        turned = orient(image, turn)
        rgba = turned if turned.mode == "RGBA" else turned.convert("RGBA")
        budget.check()
        if rgba.size != size:  # Pillow resizes RGBA premultiplied: no colour bleeds from
            # transparent pixels; a large reduction is boxed first (REDUCING_GAP)
            rgba = rgba.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
        elif rgba is image:
            rgba = rgba.copy()  # its own pixels, not the closed file's image
    if mark.opacity < 1:
        alpha = rgba.getchannel("A").point(lambda value: round(value * mark.opacity))
        rgba.putalpha(alpha)
    return rgba


class ScaledMarks:
    """Scaled marks by (mark key, output size), bounded by MARK_MEMO_BYTES; shared by the
    render threads. A mark without a key (built by hand) is never kept."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: OrderedDict[tuple[object, ...], Image.Image | None] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(
        self, mark: MarkJob, data: bytes, output: tuple[int, int], budget: Budget
    ) -> Image.Image | None:
        key = (mark.key, output)
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
        made = prepared(mark, data, output, budget)  # outside the lock: threads decode at once
        size = _weight(made)
        if mark.key and size <= self.limit:
            with self._lock:
                if key not in self._kept:
                    self._kept[key] = made
                    self._bytes += size
                while self._bytes > self.limit:
                    _, old = self._kept.popitem(last=False)
                    self._bytes -= _weight(old)
        return made

    @property
    def bytes(self) -> int:
        return self._bytes


def _weight(made: Image.Image | None) -> int:
    return MARK_ENTRY_BYTES + (made.width * made.height * 4 if made is not None else 0)


_SCALED = ScaledMarks(MARK_MEMO_BYTES)


def mark_size(
    mark: MarkJob, own: tuple[int, int], output: tuple[int, int]
) -> tuple[int, int] | None:
    """Its width as asked (`scale` of the output's, or its own), its shape kept, shrunk to
    fit inside the output less the margins; None when that leaves less than a pixel."""
    room_w, room_h = output[0] - 2 * mark.margin, output[1] - 2 * mark.margin
    if room_w < 1 or room_h < 1:
        return None
    wanted = mark.scale * output[0] if mark.scale else own[0]
    factor = min(wanted / own[0], room_w / own[0], room_h / own[1])
    width, height = round(own[0] * factor), round(own[1] * factor)
    return (width, height) if width >= 1 and height >= 1 else None


def place(
    position: str, size: tuple[int, int], output: tuple[int, int], margin: int
) -> tuple[int, int]:
    """The mark's top-left corner for a gravity, `margin` pixels in from the edges it names."""
    (w, h), (ow, oh) = size, output
    sides = "" if position == "center" else position  # n s e w and their corners
    x = margin if "w" in sides else ow - w - margin if "e" in sides else (ow - w) // 2
    y = margin if "n" in sides else oh - h - margin if "s" in sides else (oh - h) // 2
    return (x, y)


def draw(frame: Image.Image, mark: Image.Image, job: MarkJob) -> Image.Image:
    """The frame with the mark composited over it (a copy: the frame may be a decode's)."""
    where = place(job.position, mark.size, frame.size, job.margin)
    if frame.mode == "RGBA":
        out = frame.copy()
        out.alpha_composite(mark, dest=where)
        return out
    out = frame.convert("RGB") if frame.mode != "RGB" else frame.copy()
    out.paste(mark, where, mark)  # the mark's alpha as the mask: "over" an opaque frame
    return out
