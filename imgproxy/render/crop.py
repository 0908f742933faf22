"""Gravity -> where a cover crop sits in the source (entropy needs the pixels)."""

from __future__ import annotations

import math

from PIL import Image

from imgproxy.params import Gravity

_ANCHORS = {
    Gravity.CENTER: (0.5, 0.5),
    Gravity.N: (0.5, 0.0),
    Gravity.S: (0.5, 1.0),
    Gravity.E: (1.0, 0.5),
    Gravity.W: (0.0, 0.5),
    Gravity.NE: (1.0, 0.0),
    Gravity.NW: (0.0, 0.0),
    Gravity.SE: (1.0, 1.0),
    Gravity.SW: (0.0, 1.0),
}


def place(
    source: tuple[int, int], crop: tuple[int, int], gravity: Gravity, focal: tuple[float, float]
) -> tuple[int, int]:
    """Top-left corner of the crop for an anchor gravity or a focal point."""
    (sw, sh), (cw, ch) = source, crop
    if gravity is Gravity.FOCAL:
        # Centre the crop on the point, then slide it back inside the source.
        x = round(focal[0] * sw - cw / 2)
        y = round(focal[1] * sh - ch / 2)
    else:
        ax, ay = _ANCHORS.get(gravity, (0.5, 0.5))
        x, y = round((sw - cw) * ax), round((sh - ch) * ay)
    return (min(max(x, 0), sw - cw), min(max(y, 0), sh - ch))


def entropy_offset(image: Image.Image, crop: tuple[int, int]) -> tuple[int, int]:
    """Keep the busiest region: trim, step by step, whichever edge slice carries less
    information (the approach of libvips' `interesting=entropy`), on a small grey copy."""
    sw, sh = image.size
    scale = min(1.0, 256 / max(sw, sh))
    small = image.convert("L").resize((max(1, round(sw * scale)), max(1, round(sh * scale))))
    left, top, right, bottom = 0, 0, small.width, small.height
    want_w = max(1, round(crop[0] * scale))
    want_h = max(1, round(crop[1] * scale))
    while right - left > want_w:
        step = min(max(1, (right - left - want_w) // 4), right - left - want_w)
        a = _entropy(small.crop((left, top, left + step, bottom)))
        b = _entropy(small.crop((right - step, top, right, bottom)))
        left, right = (left + step, right) if a < b else (left, right - step)
    while bottom - top > want_h:
        step = min(max(1, (bottom - top - want_h) // 4), bottom - top - want_h)
        a = _entropy(small.crop((left, top, right, top + step)))
        b = _entropy(small.crop((left, bottom - step, right, bottom)))
        top, bottom = (top + step, bottom) if a < b else (top, bottom - step)
    x = min(round(left / scale), sw - crop[0])
    y = min(round(top / scale), sh - crop[1])
    return (max(x, 0), max(y, 0))


def _entropy(region: Image.Image) -> float:
    histogram = region.histogram()
    total = sum(histogram) or 1
    return -sum(n / total * math.log2(n / total) for n in histogram if n)
