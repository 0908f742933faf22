"""thumbor's adaptive- and full-fit-in (SPEC §15.2), which depend on the source's size."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from imgproxy.dialects.thumbor_filters import Meaning
from imgproxy.errors import BadRequest
from imgproxy.geometry import plan_region
from imgproxy.params import Fit, Transform, normalise


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
        sign = -1 if self.full else 1
        if not self.full and tw >= sw and th >= sh:
            fitted = (sw, sh)
        elif sw / tw * sign >= sh / th * sign:  # thumbor's + 1e-5: halves round up
            fitted = (tw, round(sh * tw / sw + 1e-5))
        else:
            fitted = (round(sw * th / sh + 1e-5), th)
        planned = plan_region(size, t)
        if planned.size == fitted and planned.canvas == fitted:
            return t  # what plain fit-in already gives
        w, h = fitted
        return normalise(dataclasses.replace(t, width=w, height=h, fit=Fit.FILL, enlarge=True))
