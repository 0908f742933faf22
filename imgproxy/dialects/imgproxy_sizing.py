"""imgproxy's sizing, for the URLs whose meaning depends on the source's size (SPEC §15.3).

imgproxy scales first and crops after: `fill` without `enlarge` on a smaller source keeps
every pixel it has up to the box (a 200x100 source in a 300x50 box gives 200x50, where a
native cover keeps the box's shape); `extend` pads whatever the resizing type; `force` keeps
the source's side where the box's is 0; `dpr` enlarges a box-less URL with `enlarge`. None
of these can be said before the source is read. Such a URL is mapped like the others
(`native_params`) and carries a `Sizing`: once the source's upright size is known, the
variant (variant.py) asks it for the transform. Where imgproxy's answer has the size the
mapped transform already plans, that transform stands (the common case: a large source,
the same bytes and ETag as before); otherwise it becomes the native transform with the same
answer: a crop of the source, an exact size and the padding (`crop=..&w=..&h=..&fit=fill
&enlarge=1&pad=..`).

The rules are imgproxy's (processing/prepare.go, calc_position.go, extend.go, read to
reproduce what it does): shrink factors per side, made equal by the resizing type; without
`enlarge`, no shrink below 1 and `dpr` capped to what the source allows; the scaled image
cropped to the box at the gravity; the result extended to the box.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from imgproxy.dialects.imgproxy_arguments import Gravity
from imgproxy.errors import BadRequest
from imgproxy.geometry import plan_region, turned, unturn
from imgproxy.params import Fit, Transform, normalise


@dataclass(frozen=True, slots=True)
class Sizing:
    box: tuple[int, int]  # imgproxy's width and height; 0 leaves a side open
    kind: str  # its resizing type: fit, fill, fill-down, force, auto
    enlarge: bool
    extend: bool
    dpr: float
    gravity: Gravity
    padding: tuple[int, int, int, int]  # imgproxy's, before `dpr`: top, right, bottom, left

    @classmethod
    def needed(
        cls, box: tuple[int, int], kind: str, enlarge: bool, extend: bool, dpr: float
    ) -> bool:
        """Whether the answer may depend on the source's size beyond what a native fit says.
        imgproxy scales each side by its own factor and, without `enlarge`, caps `dpr` to
        what the source allows (the capped one scales the extension's box and the padding):
        any `dpr` is sized once the source is read."""
        if dpr != 1:
            return True
        if not any(box):
            return False
        both = all(box)
        return (
            (extend and (kind != "fit" or not both))
            or (kind == "force" and (not both or not enlarge))
            or (kind in ("fill", "fill-down", "auto") and both and not enlarge)
        )

    def resolve(self, t: Transform, size: tuple[int, int]) -> Transform:
        """`t` (what the URL was mapped to) for a source of this upright size: unchanged
        when its plan has imgproxy's sizes, else the native transform that has them."""
        source = turned(size, t.rotate)
        scaled, kept, canvas, dpr = self._plan(source)
        top_, right, bottom, left_ = (round(side * dpr) for side in self.padding)  # RoundToEven
        padding = (top_, right, bottom, left_)
        shown = (min(kept[0], canvas[0]), min(kept[1], canvas[1]))
        planned = plan_region(size, t)
        if planned.size == shown and planned.canvas == canvas:
            return t if t.pad == padding else normalise(dataclasses.replace(t, pad=padding))
        if kept != scaled and self.gravity[0] == "smart":
            raise BadRequest("gravity: sm cannot crop a source smaller than the box")
        left, top = _position(scaled, kept, self.gravity)
        region = unturn(_in_source((left, top, *shown), scaled, source), source, t.rotate)
        pad_x, pad_y = canvas[0] - shown[0], canvas[1] - shown[1]
        before_x, before_y = _centred(pad_x), _centred(pad_y)
        return normalise(
            dataclasses.replace(
                t,
                width=shown[0],
                height=shown[1],
                fit=Fit.FILL,
                enlarge=True,
                crop=None if region == (0, 0, *size) else region,
                crop_fractions=None,
                pad=(
                    top_ + before_y,
                    right + pad_x - before_x,
                    bottom + pad_y - before_y,
                    left_ + before_x,
                ),
            )
        )

    def _plan(
        self, source: tuple[int, int]
    ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], float]:
        """imgproxy's scaled size, the part of it kept (cropped to the box), the canvas
        (extended to the box) and the `dpr` it applies, for a source of this (rotated) size."""
        sw, sh = source
        ws, hs, dpr = self._capped(*self._shrinks(source))
        ws, hs = min(ws / dpr, sw), min(hs / dpr, sh)
        scaled = (_round(sw / ws), _round(sh / hs))
        kept, canvas = self._cut_and_extended(scaled, dpr)
        return scaled, kept, canvas, dpr

    def _shrinks(self, source: tuple[int, int]) -> tuple[float, float]:
        """The shrink factor of each side to the box, made equal by the resizing type (an
        open side follows the other, except for `force`)."""
        sw, sh = source
        bw, bh = self.box
        dw, dh = bw or sw, bh or sh
        ws = sw / dw if dw != sw else 1.0
        hs = sh / dh if dh != sh else 1.0
        kind = self.kind
        if ws != 1 or hs != 1:
            if kind == "auto":
                kind = "fill" if (sw - sh >= 0) == (dw - dh >= 0) else "fit"
            if bw == 0 and kind != "force":
                ws = hs
            elif bh == 0 and kind != "force":
                hs = ws
            elif kind == "fit":
                ws = hs = max(ws, hs)
            elif kind in ("fill", "fill-down"):
                ws = hs = min(ws, hs)
        return ws, hs

    def _capped(self, ws: float, hs: float) -> tuple[float, float, float]:
        """The shrink factors and `dpr` without `enlarge`: no shrink below 1, and `dpr` capped
        to what the source allows (not scaled down with the shrinks when extending)."""
        dpr = self.dpr
        if not self.enlarge:
            least = min(ws, hs)
            if least < 1:
                ws, hs = ws / least, hs / least
                if not self.extend:
                    dpr /= least
            dpr = min(dpr, ws, hs)
        return ws, hs, dpr

    def _cut_and_extended(
        self, scaled: tuple[int, int], dpr: float
    ) -> tuple[tuple[int, int], tuple[int, int]]:
        """The part of the scaled image kept (cropped to the box at `dpr`) and the canvas
        it is extended to."""
        bw, bh = self.box
        target = (_round(bw * dpr), _round(bh * dpr))
        crop = target
        if self.kind == "fill-down" and not self.enlarge and all(target):
            crop = _fill_down_crop(scaled, target)
        kept = (min(scaled[0], crop[0] or scaled[0]), min(scaled[1], crop[1] or scaled[1]))
        canvas = kept
        if self.extend and (target[0] > kept[0] or target[1] > kept[1]):
            # The box, whole: a side of the image longer than the box's is cut to it, from
            # its start (imgproxy embeds at offset 0 there: a fill-down crop rounded to 0).
            canvas = (target[0] or kept[0], target[1] or kept[1])
        return kept, canvas


def _fill_down_crop(scaled: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """fill-down on an image smaller than the box: the box's shape, as large as the image
    allows (a side that rounds to 0 is not cropped at all, as in imgproxy)."""
    across, down = target[0] / scaled[0], target[1] / scaled[1]
    if across > down and across > 1:
        return (scaled[0], _round(scaled[0] * target[1] / target[0]))
    if down > across and down > 1:
        return (_round(scaled[1] * target[0] / target[1]), scaled[1])
    return target


def _in_source(
    region: tuple[int, int, int, int], scaled: tuple[int, int], source: tuple[int, int]
) -> tuple[int, int, int, int]:
    """A region of the scaled image as one of the source, at least a pixel, inside it."""
    (x, y, w, h), (sw, sh) = region, source
    fx, fy = scaled[0] / sw, scaled[1] / sh
    x, y = min(round(x / fx), sw - 1), min(round(y / fy), sh - 1)
    return (x, y, max(1, min(round(w / fx), sw - x)), max(1, min(round(h / fy), sh - y)))


def _round(value: float) -> int:
    """Go's math.Round: halves away from zero."""
    return math.floor(value + 0.5)


def _centred(extra: int) -> int:
    """The share of `extra` pixels before the image when centred, as imgproxy places it."""
    return round((extra + 1) / 2) if extra > 0 else 0  # Go's RoundToEven of (extra + 1) / 2


def _position(image: tuple[int, int], inner: tuple[int, int], gravity: Gravity) -> tuple[int, int]:
    """Where a region of `inner` starts in `image` for imgproxy's gravity (no offsets)."""
    (width, height), (iw, ih) = image, inner
    kind, fx, fy = gravity
    if kind == "focal":
        left, top = round(width * fx) - iw // 2, round(height * fy) - ih // 2
    else:
        left, top = _centred(width - iw), _centred(height - ih)
        sides = "" if kind in ("center", "smart") else kind
        if "n" in sides:
            top = 0
        if "s" in sides:
            top = height - ih
        if "e" in sides:
            left = width - iw
        if "w" in sides:
            left = 0
    return max(0, min(left, width - iw)), max(0, min(top, height - ih))
