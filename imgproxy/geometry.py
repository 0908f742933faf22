"""Source size + box + fit -> the crop, content size and canvas of a rendition (pure).

Follows SPEC §10 for `enlarge=0`: no side of the content exceeds the source. The §15.1
operations that change sizes are planned here too: `crop` and `rot` before the fit, `pad`
after it (`trim` depends on the pixels: the render plans again once it is known).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypeVar

from imgproxy.errors import BadRequest
from imgproxy.params import Fit, Transform, normalise

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


def unturn(rect: Region, size: tuple[int, int], degrees: int) -> Region:
    """A rectangle of an image turned clockwise by `degrees` (of `size`), in the axes of
    the image before it was turned."""
    x, y, w, h = rect
    turned_w, turned_h = size
    if degrees == 90:
        return (y, turned_w - x - w, h, w)
    if degrees == 180:
        return (turned_w - x - w, turned_h - y - h, w, h)
    if degrees == 270:
        return (turned_h - y - h, x, h, w)
    return rect


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


def in_pixels(
    fractions: tuple[float, float, float, float], source: tuple[int, int]
) -> tuple[int, int, int, int]:
    """A crop in fractions as whole source pixels, never empty."""
    (fx, fy, fw, fh), (sw, sh) = fractions, source
    x, y = min(round(fx * sw), sw - 1), min(round(fy * sh), sh - 1)
    return (x, y, max(1, round((fx + fw) * sw) - x), max(1, round((fy + fh) * sh) - y))


def resolve_crop(t: Transform, source: tuple[int, int]) -> Transform:
    """The crop in pixels of this source (upright): fractions resolved, the region clipped,
    the whole source as no crop at all; 400 for a region wholly outside it."""
    sw, sh = source
    if t.crop_fractions is not None:
        t = dataclasses.replace(t, crop=in_pixels(t.crop_fractions, source), crop_fractions=None)
    if t.crop is None:
        return t
    x, y, w, h = t.crop
    w, h = min(w, sw - x), min(h, sh - y)
    if w <= 0 or h <= 0:
        raise BadRequest(
            f"crop: the region {','.join(map(str, t.crop))} lies outside the {sw}x{sh} source"
        )
    return dataclasses.replace(t, crop=None if (x, y, w, h) == (0, 0, sw, sh) else (x, y, w, h))


def without_missing_crop(t: Transform, source: tuple[int, int]) -> Transform:
    """`t` without its crop when the region lies wholly outside the source (as thumbor
    ignores such a box), else `t` as it is: resolve_crop clips one that overlaps."""
    if t.crop is None and t.crop_fractions is None:
        return t
    try:
        resolve_crop(t, source)
    except BadRequest:
        return normalise(dataclasses.replace(t, crop=None, crop_fractions=None))
    return t


def focal_from_pixels(t: Transform, at: tuple[int, int], size: tuple[int, int]) -> Transform:
    """A focal point a dialect gave in the source's pixels, placed once the source's upright
    size is known: the transform of the native URL with those fractions of the whole source
    (`g=focal&fx=..&fy=..`, to 6 decimals as a dialect writes them), which the renderer moves
    into the cropped, trimmed and turned region itself. A point outside the source goes to its
    nearest edge, where thumbor's crop, centred on it and kept inside the image, ends up too."""
    (x, y), (width, height) = at, size
    fx, fy = min(x / width, 1.0), min(y / height, 1.0)
    return normalise(dataclasses.replace(t, focal=(round(fx, 6), round(fy, 6))))
