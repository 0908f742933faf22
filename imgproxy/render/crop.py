"""Gravity -> where a cover crop sits in the source (entropy and smart need the pixels)."""

from __future__ import annotations

import math

from PIL import Image, ImageChops, ImageFilter

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
    if gravity in (Gravity.FOCAL, Gravity.SMART):
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


SMART_SIDE = 64  # the saliency map's longer side: subjects, not texture
SKIN_CB, SKIN_CR = (77, 127), (133, 173)  # skin tones in YCbCr, any complexion
PEAK_SHARE = 0.5  # the subject: the pixels around the peak at least this salient


def smart_point(image: Image.Image) -> tuple[float, float]:
    """Where the subject is, as fractions of the width and height. On a small copy, each of
    detail (edges), colour (saturation) and skin tones counts by how far it stands above
    its own median, so a busy or tinted background cancels out; the blurred sum's peak is the
    subject, and its centre is the centroid of the salient pixels around that peak.
    Computed once per source version and kept: a crop of every size centres on it."""
    small = image.convert("RGB")
    small.thumbnail((SMART_SIDE, SMART_SIDE), Image.Resampling.BOX)
    _, cb, cr = small.convert("YCbCr").split()
    skin = ImageChops.multiply(
        cb.point(lambda v: 255 if SKIN_CB[0] <= v <= SKIN_CB[1] else 0),
        cr.point(lambda v: 255 if SKIN_CR[0] <= v <= SKIN_CR[1] else 0),
    )
    cues = [
        small.convert("L").filter(ImageFilter.FIND_EDGES),
        small.convert("HSV").getchannel("S"),
        skin,
    ]
    salient = Image.new("L", small.size, 0)
    for cue in cues:
        salient = ImageChops.add(salient, _standing_out(cue), scale=1.0)
    salient = salient.filter(ImageFilter.GaussianBlur(1.5))
    values, width = salient.tobytes(), salient.width
    peak = max(range(len(values)), key=values.__getitem__)
    if values[peak] == 0:
        return (0.5, 0.5)  # nothing stands out: the centre
    px, py = peak % width, peak // width
    reach = max(2, SMART_SIDE // 6)
    floor = values[peak] * PEAK_SHARE
    total = x = y = 0.0
    for row in range(max(0, py - reach), min(salient.height, py + reach + 1)):
        for column in range(max(0, px - reach), min(width, px + reach + 1)):
            value = values[row * width + column]
            if value >= floor:
                total += value
                x += (column + 0.5) * value
                y += (row + 0.5) * value
    return (x / total / width, y / total / salient.height)


def _standing_out(cue: Image.Image) -> Image.Image:
    """How far each pixel stands above the cue's median, as a third of the 0..255 range."""
    histogram = cue.histogram()
    half, seen, median = sum(histogram) / 2, 0, 0
    for level, count in enumerate(histogram):
        seen += count
        if seen >= half:
            median = level
            break
    top = max((level for level, count in enumerate(histogram) if count), default=0)
    spread = max(1, top - median)
    return cue.point(lambda v: max(0, v - median) * 85 // spread)
