"""Source size + box + fit -> the crop, content size and canvas of a rendition (pure).

Follows SPEC §10 for `enlarge=0`: no side of the content exceeds the source. The §15.1
operations that change sizes are planned here too: `crop` and `rot` before the fit, `pad`
after it (`trim` depends on the pixels: the render plans again once it is known).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from imgproxy.params import Fit, Transform, in_pixels

PLACEHOLDER_SIDE = 100  # ThumbHash's own bound; BlurHash averages it further down


@dataclass(frozen=True, slots=True)
class Geometry:
    crop: tuple[int, int]  # the region of the source kept, in source pixels (w, h)
    size: tuple[int, int]  # that region resized to this
    canvas: tuple[int, int]  # the output; larger than `size` only for pad

    @property
    def offset(self) -> tuple[int, int]:
        return ((self.canvas[0] - self.size[0]) // 2, (self.canvas[1] - self.size[1]) // 2)


def plan(
    source: tuple[int, int], box: tuple[int | None, int | None], fit: Fit, *, enlarge: bool
) -> Geometry:
    sw, sh = source
    bw, bh = box
    if bw is None and bh is None:
        return Geometry(source, source, source)
    if fit is Fit.AUTO:
        fit = Fit.COVER if (sw >= sh) == ((bw or sw) >= (bh or sh)) else Fit.CONTAIN
    if fit is Fit.COVER and bw and bh:
        return _cover(sw, sh, bw, bh, enlarge)
    if fit is Fit.FILL and bw and bh:
        size = (bw, bh) if enlarge else (min(bw, sw), min(bh, sh))
        return Geometry(source, size, size)
    scale = min(side / src for side, src in ((bw, sw), (bh, sh)) if side)
    if not enlarge:
        scale = min(scale, 1.0)
    size = (_side(sw, scale, bw), _side(sh, scale, bh))
    canvas = (bw or size[0], bh or size[1]) if fit is Fit.PAD else size
    return Geometry(source, size, canvas)


def _cover(sw: int, sh: int, bw: int, bh: int, enlarge: bool) -> Geometry:
    # The largest region with the box's shape that fits in the source.
    if sw * bh > sh * bw:
        crop = (max(1, round(sh * bw / bh)), sh)
    else:
        crop = (sw, max(1, round(sw * bh / bw)))
    size = (bw, bh) if enlarge or crop[0] >= bw else crop
    return Geometry(crop, size, size)


def _side(source: int, scale: float, box: int | None) -> int:
    """Round to the nearest pixel, but never past the box side that set the scale."""
    side = max(1, round(source * scale))
    return min(side, box) if box else side


def decode_size(source: tuple[int, int], geometry: Geometry) -> tuple[int, int]:
    """The least the whole source can be decoded at (a JPEG's DCT scale) and still give the
    kept region the output's pixels on each axis: rounded up, never below the output.
    A `crop` makes the kept region smaller, so the same output needs a larger decode."""
    (sw, sh), (ow, oh), (cw, ch) = source, geometry.size, geometry.crop
    return -(-sw * ow // cw), -(-sh * oh // ch)


_Side = TypeVar("_Side", int, float)
Region = tuple[int, int, int, int]  # x, y, w, h in upright source pixels


def crop_region(source: tuple[int, int], t: Transform) -> Region:
    """The part of the source the operations start from: its `crop`, clipped (the variant
    has refused an empty one), or the whole source."""
    sw, sh = source
    crop = in_pixels(t.crop_fractions, source) if t.crop_fractions else t.crop
    if crop is None:
        return (0, 0, sw, sh)
    x, y, w, h = crop
    x, y = min(x, sw - 1), min(y, sh - 1)
    return (x, y, max(1, min(w, sw - x)), max(1, min(h, sh - y)))


def turned(size: tuple[_Side, _Side], rotate: int) -> tuple[_Side, _Side]:
    """A size after a clockwise rotation by `rotate` degrees."""
    return (size[1], size[0]) if rotate in (90, 270) else size


def plan_region(region: tuple[int, int], t: Transform) -> Geometry:
    """The fit of a (cropped, trimmed) region of `region` pixels, after its rotation."""
    return plan(turned(region, t.rotate), (t.width, t.height), t.fit, enlarge=t.enlarge)


def plan_transform(source: tuple[int, int], t: Transform) -> Geometry:
    """The fit of the whole transform but `trim` (which only the pixels can tell)."""
    return plan_region(crop_region(source, t)[2:], t)


def output_size(geometry: Geometry, t: Transform) -> tuple[int, int]:
    """The encoded frame's size: the fitted canvas and its `pad`."""
    top, right, bottom, left = t.pad
    return (geometry.canvas[0] + left + right, geometry.canvas[1] + top + bottom)


def unturned(geometry: Geometry, rotate: int) -> Geometry:
    """A rotated region's plan in the axes of the source, for choosing its decode scale."""
    if rotate not in (90, 270):
        return geometry
    return Geometry(turned(geometry.crop, 90), turned(geometry.size, 90), geometry.canvas)
