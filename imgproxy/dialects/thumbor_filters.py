"""thumbor's filters (`filters:NAME(ARGS):...`) -> native parameters (SPEC §15.2): a table
by thumbor's names, each checking its arguments as thumbor's own regex would, and a 400
naming any filter this server cannot mean (thumbor would skip it silently).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from imgproxy.dialects.colours import NAMED
from imgproxy.errors import BadRequest
from imgproxy.param_values import show

_FILTER = re.compile(r"(\w+)\((.*)\)", re.DOTALL)
_DIGITS = re.compile(r"\d{1,9}")
_SIGNED = re.compile(r"-?\d{1,9}")
_DECIMAL = re.compile(r"-?(?:\d{1,9}\.?\d{0,9}|\d{0,9}\.\d{1,9})")
_BOOLEAN = {"true": True, "True": True, "1": True, "false": False, "False": False, "0": False}
_HEX = re.compile(r"[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8}")
_THUMBOR_MAX_RADIUS = 150  # thumbor's blur kernel: at most 150 pixels each side
_LEAST_BLUR = 0.3  # the native blur's least sigma; thumbor's kernels spread less change little
_FORMATS = {
    "jpeg": "jpeg",
    "jpg": "jpeg",
    "png": "png",
    "webp": "webp",
    "avif": "avif",
    "gif": "gif",
}
# thumbor runs each filter given; these mean the same when repeated (or the last one wins).
_REPEATABLE = frozenset(
    {"format", "quality", "rotate", "no_upscale", "upscale", "strip_exif", "strip_icc"}
)


@dataclass(slots=True)
class Meaning:
    """What one URL asks for, gathered part by part, then written as native parameters."""

    params: dict[str, str] = field(default_factory=dict)  # the ones geometry leaves alone
    width: int = 0
    height: int = 0
    fit_in: bool = False
    adaptive: bool = False  # adaptive-fit-in: the box turned to the source's orientation
    full: bool = False  # full-fit-in: the image covers the box rather than fitting in it
    flip: tuple[bool, bool] = (False, False)  # horizontal, vertical: thumbor's, before rotate
    gravity: tuple[int, int] = (0, 0)  # -1/0/1 across and down; smart/focal go in `special`
    special: str = ""
    crop: tuple[int, int, int, int] | None = None  # left, top, right, bottom
    focal_at: tuple[int, int] | None = None  # focal() in source pixels
    no_upscale: bool = False  # the box capped at the source's size, side by side
    turns: int = 0  # thumbor's rotate(): quarter turns counter-clockwise, after fitting
    filled_after_turn: bool = False


def apply_filters(text: str, meaning: Meaning, watermarks: Mapping[str, str]) -> None:
    """`NAME(ARGS):NAME(ARGS)`, split where thumbor splits (at `):`); a filter this
    server cannot mean is a 400 naming it (thumbor would skip it silently)."""
    seen: set[str] = set()
    parts = text.split("):")
    for index, part in enumerate(parts):
        found = _FILTER.fullmatch(part if index == len(parts) - 1 else part + ")")
        if found is None:
            raise BadRequest(f"thumbor filters: {show(part)} is not NAME(ARGS)")
        name, args = found[1], _arguments(found[2])
        if name == "watermark":
            _watermark(args, meaning, watermarks)
        elif name in _FILTERS:
            _FILTERS[name](args, meaning)
        else:
            known = ", ".join(sorted([*_FILTERS, "watermark"]))
            raise BadRequest(f"thumbor filter {show(name)}: not supported (known: {known})")
        if name in seen and name not in _REPEATABLE:
            raise BadRequest(f"thumbor filter {name}: given more than once")
        seen.add(name)


def _watermark(args: list[str], meaning: Meaning, watermarks: Mapping[str, str]) -> None:
    """Only a configured mark: its entry decides position and opacity, not the URL."""
    if not 4 <= len(args) <= 6:
        raise BadRequest("thumbor filter watermark: expects (image,x,y,alpha[,w,h])")
    name = watermarks.get(args[0])
    if name is None:
        raise BadRequest(
            f"thumbor filter watermark: {show(args[0])} is no configured [watermarks] path"
        )
    meaning.params["wm"] = name


def _arguments(text: str) -> list[str]:
    """`a, 'b,c', 3` -> ['a', 'b,c', '3']: thumbor's quoted strings may hold commas."""
    args: list[str] = []
    for found in re.finditer(r"\s*('[^']*'|[^,]*)\s*(?:,|$)", text):
        if found.start() == len(text) and args:
            break
        args.append(found[1].strip("'") if found[1].startswith("'") else found[1].strip())
    return [] if args == [""] else args


# Filters, by thumbor's names.


def _arity(name: str, args: list[str], low: int, high: int, usage: str) -> None:
    if not low <= len(args) <= high:
        raise BadRequest(f"thumbor filter {name}: expects {name}({usage})")


def _number(name: str, raw: str, pattern: re.Pattern[str] = _DECIMAL) -> float:
    if not pattern.fullmatch(raw):
        raise BadRequest(f"thumbor filter {name}: {show(raw)} is not a number")
    return float(raw)


def _format(args: list[str], meaning: Meaning) -> None:
    _arity("format", args, 1, 1, "jpeg|png|webp|avif|gif")
    found = _FORMATS.get(args[0].lower())
    if found is None:
        raise BadRequest(f"thumbor filter format: {show(args[0])} is not jpeg|png|webp|avif|gif")
    meaning.params["fm"] = found


def _quality(args: list[str], meaning: Meaning) -> None:
    _arity("quality", args, 1, 1, "N")
    meaning.params["q"] = number_text(_number("quality", args[0], _DIGITS))


def _blur(args: list[str], meaning: Meaning) -> None:
    """blur(radius[, sigma]): thumbor's sigma is the radius unless given (and not 0)."""
    _arity("blur", args, 1, 2, "radius[,sigma]")
    radius = _number("blur", args[0], _DIGITS)
    if radius < 1:
        raise BadRequest("thumbor filter blur: the radius must be at least 1")
    sigma = _number("blur", args[1]) if len(args) == 2 else 0.0
    spread = round(kernel_spread(int(radius), sigma or radius), 2)
    if spread >= _LEAST_BLUR:
        meaning.params["blur"] = number_text(spread)


def kernel_spread(radius: int, sigma: float) -> float:
    """The spread (standard deviation) of thumbor's blur kernel, the native blur's sigma.

    thumbor samples a Gaussian of `sigma` at whole pixels and cuts it off `radius` pixels
    each side (at most 150), then normalises it: with the sigma left to default, at one
    sigma, a much softer blur than the whole Gaussian (blur(5) spreads 2.92 pixels, not 5).
    Matching the spread, not the sigma, brought stripes blurred by blur(5) from a mean
    difference of 11.1 to thumbor's output down to 1.7 (0..255 a channel)."""
    if abs(sigma) < 0.001:
        return 0.0  # a kernel of one pixel (the weights beside it are below 1e-200)
    radius = min(radius, _THUMBOR_MAX_RADIUS)
    weights = [(x, math.exp(-(x * x) / (2 * sigma * sigma))) for x in range(-radius, radius + 1)]
    return math.sqrt(sum(x * x * w for x, w in weights) / sum(w for _, w in weights))


def _sharpen(args: list[str], meaning: Meaning) -> None:
    _arity("sharpen", args, 3, 3, "amount,radius,luminance_only")
    _number("sharpen", args[0])
    if args[2] not in _BOOLEAN:
        raise BadRequest(f"thumbor filter sharpen: {show(args[2])} is not true|false")
    meaning.params["sharpen"] = number_text(_number("sharpen", args[1]))


def _rotate(args: list[str], meaning: Meaning) -> None:
    """rotate(A): thumbor turns counter-clockwise, after fitting."""
    _arity("rotate", args, 1, 1, "90|180|270")
    angle = int(_number("rotate", args[0], _SIGNED))
    if angle % 90:
        raise BadRequest(f"thumbor filter rotate: {angle} is not a multiple of 90")
    meaning.turns = (meaning.turns + angle // 90) % 4


def _fill(args: list[str], meaning: Meaning) -> None:
    """fill(COLOUR): pads fit-in's box with the colour. `auto` and `blur` come from the
    pixels, and fill_transparent recolours the image's own alpha: not this server's."""
    _arity("fill", args, 1, 2, "colour[,fill_transparent]")
    if len(args) == 2 and _BOOLEAN.get(args[1], True):
        raise BadRequest("thumbor filter fill: fill_transparent is not supported")
    colour = args[0]
    if colour == "transparent":
        meaning.params["bg"] = "00000000"
    elif colour.lower() in NAMED:
        meaning.params["bg"] = NAMED[colour.lower()]
    elif _HEX.fullmatch(colour):
        digits = "".join(c * 2 for c in colour) if len(colour) <= 4 else colour
        meaning.params["bg"] = digits.lower()
    else:
        raise BadRequest(f"thumbor filter fill: {show(colour)} is no colour this server has")
    meaning.filled_after_turn = meaning.turns % 2 == 1
    if meaning.fit_in:
        meaning.params["fit"] = "pad"


def _focal(args: list[str], meaning: Meaning) -> None:
    """focal(AxB:CxD): the box's centre, in source pixels. Native focal points are fractions
    of the whole upright source (the renderer moves them into the crop and the turn), whose
    size is known only once it is read (Translation.sized). Where thumbor places a point in
    a trimmed source is not checked here: trim with focal() needs a crop box."""
    _arity("focal", args, 1, 1, "AxB:CxD")
    found = re.fullmatch(r"(\d{1,9})x(\d{1,9}):(\d{1,9})x(\d{1,9})", args[0])
    if found is None:
        raise BadRequest(f"thumbor filter focal: {show(args[0])} is not AxB:CxD")
    left, top, right, bottom = (int(n) for n in found.groups())
    if right <= left or bottom <= top:
        return  # thumbor ignores an empty box
    x, y = left + (right - left) // 2, top + (bottom - top) // 2
    if meaning.crop is None:
        if "trim" in meaning.params:
            raise BadRequest(
                "thumbor filter focal: with trim, needs a crop box (AxB:CxD/) in the URL on "
                "this server, to place the point without the trimmed size"
            )
        meaning.special, meaning.focal_at = "focal", (x, y)
        return
    x0, y0, x1, y1 = meaning.crop
    if x0 <= x <= x1 and y0 <= y <= y1:  # thumbor drops a point outside the crop
        meaning.special, meaning.focal_at = "focal", (x, y)


def _nothing(name: str, doc: str) -> Callable[[list[str], Meaning], None]:
    def accept(args: list[str], _: Meaning) -> None:
        _arity(name, args, 0, 0, "")

    accept.__doc__ = doc
    return accept


def _no_upscale(args: list[str], meaning: Meaning) -> None:
    """Never enlarging is the default here; thumbor's filter also caps each side of the box
    at the source's, whatever the fit (Translation.sized)."""
    _arity("no_upscale", args, 0, 0, "")
    meaning.no_upscale = True


def _upscale(args: list[str], meaning: Meaning) -> None:
    _arity("upscale", args, 0, 0, "")
    meaning.params["enlarge"] = "1"


_FILTERS: dict[str, Callable[[list[str], Meaning], None]] = {
    "format": _format,
    "quality": _quality,
    "blur": _blur,
    "sharpen": _sharpen,
    "rotate": _rotate,
    "fill": _fill,
    "focal": _focal,
    "upscale": _upscale,
    "no_upscale": _no_upscale,
    "strip_exif": _nothing("strip_exif", "outputs never carry EXIF"),
    "strip_icc": _nothing("strip_icc", "a profile is kept or converted to sRGB"),
}


def number_text(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if value % 1 else str(int(value))
