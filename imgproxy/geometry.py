"""Source size + box + fit -> the crop, content size and canvas of a rendition (pure).

Follows SPEC §10 for `enlarge=0`: no side of the content exceeds the source.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgproxy.params import Fit

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
    kept region the output's pixels on each axis: rounded up, never below the output."""
    (sw, sh), (ow, oh), (cw, ch) = source, geometry.size, geometry.crop
    return -(-sw * ow // cw), -(-sh * oh // ch)
