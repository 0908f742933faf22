"""Client hints -> the transform a device needs (SPEC §15.4).

`Sec-CH-DPR`/`DPR` multiplies the box of a URL that names no `dpr`; `Sec-CH-Width`/`Width`
(physical pixels) bounds its width. Both are unsigned request headers, so each is snapped to
a short ladder: a client varying them can ask for at most HINTED_VARIANTS renditions of
one URL, never one per integer (SPEC §11.1).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from imgproxy.messages import ImageRequest
from imgproxy.params import Fit, Transform, fold_dpr

# Every name a hint may come under; a response that could depend on them names them all in
# Vary, whichever the request sent (a cache must not give a DPR 1 answer to a DPR 2 device).
VARY = "Sec-CH-DPR, DPR, Sec-CH-Width, Width"
ACCEPT_CH = "Sec-CH-DPR, Sec-CH-Width, DPR, Width"
DPR_STEP = 0.25  # 1, 1.25, ... 4: 13 values
WIDTH_STEP = 64  # widths rounded up to this: at most max_output_dimension / 64 values
_NUMBER = re.compile(r"[0-9]{1,3}(\.[0-9]{1,8})?")
# ASCII digits only: str.isdigit() also says yes to latin-1's "²³¹", which int() refuses.
_WIDTH = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True, slots=True)
class Hints:
    dpr: float | None = None
    width: int | None = None


def read(request: ImageRequest, max_dimension: int) -> Hints:
    """The request's hints, snapped; a malformed or absent one is ignored, as a browser's
    hint is advice, never a reason to refuse the image."""
    dpr_text = request.header("sec-ch-dpr") or request.header("dpr")
    width_text = request.header("sec-ch-width") or request.header("width")
    dpr = width = None
    if dpr_text and _NUMBER.fullmatch(dpr_text.strip()):
        value = min(max(float(dpr_text), 1.0), 4.0)
        dpr = round(value / DPR_STEP) * DPR_STEP
    if width_text and _WIDTH.fullmatch(width_text.strip()):
        value = max(int(width_text), 1)
        width = min(math.ceil(value / WIDTH_STEP) * WIDTH_STEP, max_dimension)
    return Hints(dpr if dpr != 1.0 else None, width)


def apply(t: Transform, hints: Hints, *, dpr_given: bool, max_dimension: int) -> Transform:
    """The URL's transform for this device. `dpr` in the URL wins over the DPR hint."""
    width, height = t.width, t.height
    if hints.dpr is not None and not dpr_given:
        width, height = fold_dpr(width, height, hints.dpr, max_dimension)
    if hints.width is not None:
        if width is not None and height is not None and t.fit is not Fit.CONTAIN:
            if hints.width < width:  # a box to fill keeps its shape
                height = max(1, round(height * hints.width / width))
                width = hints.width
        else:
            width = min(width or hints.width, hints.width)
    return dataclasses.replace(t, width=width, height=height)
