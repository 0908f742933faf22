"""imgproxy (Go)'s processing options (`name:arg:arg`) -> the state they leave (SPEC §15.3).

Options apply in URL order, a later one overriding an earlier one as in imgproxy; meta-options
(`resize`, `size`) set the options they stand for. Parsing is a table of small functions, each
raising a 400 that names the option as written, its arguments read by imgproxy_arguments;
imgproxy_params maps the state onto the native parameters once every option is known.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from imgproxy.dialects.imgproxy_arguments import (
    GRAVITIES,
    arity,
    boolean,
    gravity,
    integer,
    number,
)
from imgproxy.errors import BadRequest
from imgproxy.param_values import show

# imgproxy's resizing types -> the native `fit` (`auto` chooses by the source's orientation).
# fill-down is exactly cover (a source smaller than the box keeps the box's shape); fill too,
# except there: imgproxy cuts each side to the box without keeping its shape.
FITS = {"fit": "contain", "fill": "cover", "fill-down": "cover", "force": "fill", "auto": "auto"}
FORMATS = {
    "jpg": "jpeg",
    "jpeg": "jpeg",
    "png": "png",
    "webp": "webp",
    "avif": "avif",
    "gif": "gif",
}

State = dict[str, Any]  # an option's canonical name -> its parsed value, the last one wins

_HEX = re.compile(r"[0-9a-fA-F]{6}|[0-9a-fA-F]{3}")
_CACHEBUSTER = re.compile(r"[A-Za-z0-9._-]{1,64}")


def parse_options(segments: Sequence[str]) -> State:
    """`["rs:fill:300:400", "g:sm"]` -> the state every option leaves; unknown names are 400."""
    state: State = {}
    for segment in segments:
        name, *args = segment.split(":")
        canonical = ALIASES.get(name)
        if canonical is None:
            raise BadRequest(f"{show(name)}: unknown or unsupported imgproxy option")
        _APPLY[canonical](state, name, args)
    return state


def output_format(raw: str, option: str) -> str:
    """imgproxy's extension names -> a native `fm`; formats we do not write are 400."""
    if raw not in FORMATS:
        raise BadRequest(f"{show(option)}: must be one of {', '.join(FORMATS)}; got {show(raw)}")
    return FORMATS[raw]


def _size(state: State, name: str, args: Sequence[str]) -> None:
    """`width:height:enlarge:extend[:gravity...]`, empty arguments left as they were."""
    arity(name, args, 1, 7)
    setters: list[Callable[[State, str, list[str]], None]] = [
        _width,
        _height,
        _enlarge,
        _extend,
    ]
    for index, setter in enumerate(setters):
        if index < len(args) and args[index]:
            rest = list(args[index:]) if setter is _extend else [args[index]]
            setter(state, name, rest)


def _resize(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 8)
    if args[0]:
        _resizing_type(state, name, args[:1])
    if len(args) > 1:
        _size(state, name, args[1:])


def _resizing_type(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 1)
    if args[0] not in FITS:
        raise BadRequest(f"{show(name)}: resizing type must be {', '.join(FITS)}")
    state["resizing_type"] = args[0]


def _width(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 1)
    state["width"] = integer(args[0], name)


def _height(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 1)
    state["height"] = integer(args[0], name)


def _enlarge(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 1)
    state["enlarge"] = boolean(args[0], name)


def _extend(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 4)
    state["extend"] = boolean(args[0], name)
    if len(args) > 1 and gravity(args[1:], name)[0] != "center":
        raise BadRequest(f"{show(name)}: only the centre gravity is supported")


def _dpr(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 1)
    state["dpr"] = number(args[0], name, 1, 4)


def _gravity_option(state: State, name: str, args: list[str]) -> None:
    state["gravity"] = gravity(args, name)


def _crop_option(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 5)
    width = number(args[0], name)
    height = number(args[1], name) if len(args) > 1 else 0.0
    where = gravity(args[2:], name) if len(args) > 2 else None
    state["crop"] = (width, height, where)


def _trim(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 4)
    if any(args[1:2]) or any(boolean(raw, name) for raw in args[2:]):
        raise BadRequest(f"{show(name)}: only the threshold is supported (no colour, no equal)")
    state["trim"] = round(number(args[0], name, 0, 255))


def _padding(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 4)
    top = right = bottom = left = 0
    values = [integer(raw, name, 0, 1024) if raw else None for raw in args]
    values += [None] * (4 - len(values))
    if values[0] is not None:
        top = right = bottom = left = values[0]
    if values[1] is not None:
        right = left = values[1]
    if values[2] is not None:
        bottom = values[2]
    if values[3] is not None:
        left = values[3]
    state["padding"] = (top, right, bottom, left)


def _rotate(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 1)
    angle = integer(args[0], name, -(10**6), 10**6)
    if angle % 90:
        raise BadRequest(f"{show(name)}: only multiples of 90 are supported")
    state["rot"] = angle % 360 or None


def _flip(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 2)
    axes = "".join(axis for axis, raw in zip("hv", args, strict=False) if boolean(raw, name))
    state["flip"] = axes or None


def _filter(key: str, high: float) -> Callable[[State, str, list[str]], None]:
    def apply(state: State, name: str, args: list[str]) -> None:
        arity(name, args, 1, 1)
        state[key] = number(args[0], name, 0, high) or None  # imgproxy: 0 is off

    return apply


def _pixelate(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 1)
    size = integer(args[0], name, 0, 256)
    state["pixelate"] = size if size > 1 else None  # a 1-pixel block changes nothing


def _background(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 3)
    if len(args) == 3:
        state["bg"] = "".join(f"{integer(raw, name, 0, 255):02x}" for raw in args)
    elif not args[0]:
        state["bg"] = None  # imgproxy: no background manipulation; ours: the default
    elif _HEX.fullmatch(args[0]):
        state["bg"] = args[0].lower()
    else:
        raise BadRequest(f"{show(name)}: must be R:G:B or a hex colour, got {show(args[0])}")


def _quality(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 1)
    state["q"] = integer(args[0], name, 0, 100) or None  # 0: the format's default


def _format(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 1)
    state["fm"] = output_format(args[0], name)


def _watermark_option(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 5)
    opacity = number(args[0], name, 0, 1)
    position = None
    if len(args) > 1 and args[1]:
        if args[1] not in GRAVITIES:
            raise BadRequest(f"{show(name)}: position must be one of {', '.join(GRAVITIES)}")
        position = GRAVITIES[args[1]]
    if any(number(raw, name, -math.inf) != 0 for raw in args[2:4] if raw):
        raise BadRequest(f"{show(name)}: offsets are not supported")
    scale = number(args[4], name, 0, 1) if len(args) > 4 and args[4] else None
    state["watermark"] = (opacity, position, scale)


def _preset(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 1)  # the native `p` names one preset
    state["p"] = args[0] or None


def _cachebuster(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 1)
    if args[0] and not _CACHEBUSTER.fullmatch(args[0]):
        raise BadRequest(f"{show(name)}: must be 1..64 of A-Z a-z 0-9 . _ -")
    state["v"] = args[0] or None


def _strip_metadata(state: State, name: str, args: list[str]) -> None:
    arity(name, args, 1, 1)
    boolean(args[0], name)  # outputs never carry EXIF/XMP either way (SPEC §2.1)


_APPLY: dict[str, Callable[[State, str, list[str]], None]] = {
    "resize": _resize,
    "size": _size,
    "resizing_type": _resizing_type,
    "width": _width,
    "height": _height,
    "dpr": _dpr,
    "enlarge": _enlarge,
    "extend": _extend,
    "gravity": _gravity_option,
    "crop": _crop_option,
    "trim": _trim,
    "padding": _padding,
    "rotate": _rotate,
    "flip": _flip,
    "blur": _filter("blur", 100),
    "sharpen": _filter("sharpen", 10),
    "pixelate": _pixelate,
    "background": _background,
    "quality": _quality,
    "format": _format,
    "watermark": _watermark_option,
    "preset": _preset,
    "cachebuster": _cachebuster,
    "strip_metadata": _strip_metadata,
}
_SHORT = {
    "rs": "resize",
    "s": "size",
    "rt": "resizing_type",
    "w": "width",
    "h": "height",
    "el": "enlarge",
    "ex": "extend",
    "g": "gravity",
    "c": "crop",
    "t": "trim",
    "pd": "padding",
    "rot": "rotate",
    "fl": "flip",
    "bl": "blur",
    "sh": "sharpen",
    "pix": "pixelate",
    "bg": "background",
    "q": "quality",
    "f": "format",
    "ext": "format",
    "wm": "watermark",
    "pr": "preset",
    "cb": "cachebuster",
    "sm": "strip_metadata",
}
ALIASES: Mapping[str, str] = {**{name: name for name in _APPLY}, **_SHORT}
