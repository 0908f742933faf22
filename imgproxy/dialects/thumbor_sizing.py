"""thumbor's meanings that depend on the source's size (SPEC §15.2), as Translation.sized:
no_upscale()'s cap, a crop box that misses, focal() in pixels, fit-in's rounding,
adaptive- and full-fit-in, fill() with one side open. Each is placed once the source is
read, as thumbor places it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from imgproxy.dialects.thumbor_filters import Meaning
from imgproxy.dialects.translation import Sized, chain
from imgproxy.errors import BadRequest
from imgproxy.geometry import (
    crop_region,
    focal_from_pixels,
    plan_region,
    turned,
    without_missing_crop,
)
from imgproxy.params import Fit, Transform, normalise


def sized(meaning: Meaning) -> Sized | None:
    """What thumbor decides from the source's size, in its order: no_upscale()'s cap on the
    box, whether a crop box misses the source (thumbor then ignores it; a native URL's is a
    400), where a focal() in its pixels falls as fractions of the whole source, fit-in's
    sizes (plain, adaptive or full), and fill()'s padding on a fit-in box with one side open."""
    steps: list[Sized] = []
    if meaning.no_upscale and (meaning.width or meaning.height):
        steps.append(_capped)
    if meaning.crop is not None:
        steps.append(without_missing_crop)
    at = meaning.focal_at
    if at is not None:
        steps.append(lambda t, size: focal_from_pixels(t, at, size))
    fit_in = FitIn.of(meaning)
    if fit_in is not None:
        steps.append(fit_in.resolve)
    elif meaning.fit_in and meaning.params.get("fit") != "pad" and "trim" not in meaning.params:
        steps.append(_fitted_as_thumbor)
    filled = meaning.fit_in and meaning.params.get("fit") == "pad"
    if filled and bool(meaning.width) != bool(meaning.height):
        steps.append(_filled_open_side)
    return chain(*steps)


def _fitted_as_thumbor(t: Transform, size: tuple[int, int]) -> Transform:
    """fit-in's size rounded as thumbor rounds it, where the native fit (half to even
    throughout) comes out a pixel apart: an open side of the box from the region's aspect
    (half to even), the fitted side (half up), upscale()'s enlargement (cut to whole
    pixels). A box with one side open is never enlarged (upscale() needs both)."""
    width, height = t.width or 0, t.height or 0
    if not (width or height):
        return t
    region = crop_region(size, t)[2:]
    rw, rh = turned(region, t.rotate)
    bw = width or round(height * rw / rh)
    bh = height or round(width * rh / rw)
    fitted = _fit_in_size((rw, rh), (bw, bh))
    if t.enlarge and width and height and rw < bw and rh < bh:  # upscale(), after the fit
        fitted = (bw, int(rh * bw / rw)) if rw / bw >= rh / bh else (int(rw * bh / rh), bh)
    return _sized_exactly(t, region, (max(1, fitted[0]), max(1, fitted[1])))


def _fit_in_size(
    source: tuple[int, int], box: tuple[int, int], *, full: bool = False
) -> tuple[int, int]:
    """thumbor's transformer.fit_in_resize: the source within the box, or covering it when
    `full`; the fitted side's half rounds up (its + 1e-5). A source already within the box
    is kept as it is, unless full."""
    (sw, sh), (bw, bh) = source, box
    sign = -1 if full else 1
    if not full and bw >= sw and bh >= sh:
        return sw, sh
    if sw / bw * sign >= sh / bh * sign:
        return bw, round(sh * bw / sw + 1e-5)
    return round(sw * bh / sh + 1e-5), bh


def _sized_exactly(t: Transform, region: tuple[int, int], size: tuple[int, int]) -> Transform:
    """`t` where its plain fit of the region already has thumbor's size (its bytes and ETag
    stay), else that exact size."""
    planned = plan_region(region, t)
    if planned.size == size and planned.canvas == size:
        return t
    w, h = size
    return normalise(dataclasses.replace(t, width=w, height=h, fit=Fit.FILL, enlarge=True))


def _filled_open_side(t: Transform, size: tuple[int, int]) -> Transform:
    """fill() pads fit-in's image to the side asked, the open one staying the image's: the
    native pad with one side open is a plain contain (params.normalise), so the padding is
    given outright, centred as thumbor's fill filter pastes it (rounded down before)."""
    _, _, width, height = crop_region(size, t)
    fitted = plan_region((width, height), t).size
    across, down = (t.width or fitted[0]) - fitted[0], (t.height or fitted[1]) - fitted[1]
    if across <= 0 and down <= 0:
        return t
    top, right, bottom, left = t.pad
    padded = (
        top + down // 2,
        right + across - across // 2,
        bottom + down - down // 2,
        left + across // 2,
    )
    return normalise(dataclasses.replace(t, pad=padded))


def _capped(t: Transform, size: tuple[int, int]) -> Transform:
    """thumbor's no_upscale(): each side of the box at most the source's (upright, before
    any crop; the box and the source turned alike by `rot`)."""
    width, height = turned(size, t.rotate)
    capped = (t.width and min(t.width, width), t.height and min(t.height, height))
    if capped == (t.width, t.height):
        return t
    return normalise(dataclasses.replace(t, width=capped[0], height=capped[1]))


@dataclass(frozen=True, slots=True)
class FitIn:
    """adaptive-fit-in turns the box to the source's orientation; full-fit-in makes the
    image cover the box (one side on it, the other past it, enlarging if need be). Both
    depend on the source's size: mapped as fit-in, then sized as thumbor's
    transformer.fit_in_resize sizes them once the source is read (Translation.sized)."""

    adaptive: bool
    full: bool

    @classmethod
    def of(cls, meaning: Meaning) -> FitIn | None:
        if not (meaning.adaptive or meaning.full):
            return None
        other = meaning.turns or meaning.params.get("fit") == "pad" or "trim" in meaning.params
        if not (meaning.width and meaning.height) or meaning.crop or other:
            raise BadRequest(
                "thumbor adaptive- and full-fit-in: supported with both sides given, and"
                " without trim, a crop box, rotate() or fill()"
            )
        return cls(meaning.adaptive, meaning.full)

    def resolve(self, t: Transform, size: tuple[int, int]) -> Transform:
        """The box is the transform's (thumbor's, as no_upscale() may have capped it)."""
        if not (t.width and t.height):  # `of` refused an open side
            return t
        (sw, sh), (tw, th) = size, (t.width, t.height)
        if self.adaptive and ((sw < sh and tw > th) or (sw > sh and tw < th)):
            tw, th = th, tw
        return _sized_exactly(t, size, _fit_in_size(size, (tw, th), full=self.full))
