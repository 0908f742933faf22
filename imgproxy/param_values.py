"""One query value -> its typed value, or a 400 that names the parameter and shows the value
escaped and cut (params.py's table of parsers, and the dialects' options)."""

from __future__ import annotations

import re
from typing import Any

from imgproxy.errors import BadRequest

MAX_PAD = 1024  # per side, in output pixels (SPEC §15.1)

_INT = re.compile(r"[0-9]{1,9}")
_NUMBER = re.compile(r"[0-9]{1,3}(\.[0-9]{1,8})?|\.[0-9]{1,8}")
_HEX = re.compile(r"[0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8}")
_VERSION = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # as settings.PRESET_NAME


def integer(raw: str, name: str, low: int, high: int) -> int:
    if not _INT.fullmatch(raw) or not low <= int(raw) <= high:
        raise BadRequest(f"{name}: must be an integer {low}..{high}, got {show(raw)}")
    return int(raw)


def number(raw: str, name: str, low: float, high: float) -> float:
    if not _NUMBER.fullmatch(raw) or not low <= float(raw) <= high:
        raise BadRequest(f"{name}: must be a number {low:g}..{high:g}, got {show(raw)}")
    return float(raw)


def choice(raw: str, name: str, choices: tuple[str, ...]) -> str:
    if raw not in choices:
        raise BadRequest(f"{name}: must be one of {', '.join(choices)}; got {show(raw)}")
    return raw


def parse_colour(raw: str, name: str, _: int) -> tuple[int, int, int, int]:
    if not _HEX.fullmatch(raw):
        raise BadRequest(f"{name}: must be hex rgb, rrggbb or rrggbbaa; got {show(raw)}")
    digits = "".join(c * 2 for c in raw) if len(raw) == 3 else raw
    digits = digits if len(digits) == 8 else digits + "ff"
    r, g, b, a = (int(digits[i : i + 2], 16) for i in range(0, 8, 2))
    return (r, g, b, a)


def parse_crop(raw: str, name: str, _: int) -> dict[str, Any]:
    """`x,y,w,h` in source pixels, or (any value written with a point) fractions of the
    source; a region reaching past the source is clipped to it, an empty one is 400."""
    values = raw.split(",")
    fractions = "." in raw
    pattern = _NUMBER if fractions else _INT
    if len(values) != 4 or not all(pattern.fullmatch(v) for v in values):
        raise BadRequest(
            f"{name}: must be x,y,w,h as four integers (pixels) or four numbers 0..1 written"
            f" with a point (fractions); got {show(raw)}"
        )
    if not fractions:
        x, y, w, h = (int(v) for v in values)
        if not w or not h:
            raise BadRequest(f"{name}: the region is empty; got {show(raw)}")
        return {"crop": (x, y, w, h)}
    fx, fy, fw, fh = (float(v) for v in values)
    if max(fx, fy, fw, fh) > 1:
        raise BadRequest(f"{name}: fractions must be 0..1; got {show(raw)}")
    fw, fh = min(fw, 1 - fx), min(fh, 1 - fy)  # clipped to the source
    if fw <= 0 or fh <= 0:
        raise BadRequest(f"{name}: the region is empty; got {show(raw)}")
    return {"crop_fractions": (fx, fy, fw, fh)}


def parse_pad(raw: str, name: str, _: int) -> tuple[int, int, int, int]:
    values = raw.split(",")
    if len(values) not in (1, 4) or not all(
        _INT.fullmatch(v) and int(v) <= MAX_PAD for v in values
    ):
        raise BadRequest(
            f"{name}: must be t,r,b,l or one integer for all, each 0..{MAX_PAD}; got {show(raw)}"
        )
    top, right, bottom, left = (int(v) for v in values * (4 // len(values)))
    return (top, right, bottom, left)


def parse_name(raw: str, name: str, _: int) -> str:
    """A `[watermarks]` name's spelling; whether it is configured is parse_query's check."""
    if not _NAME.fullmatch(raw):
        raise BadRequest(f"{name}: must be a [watermarks] name (A-Z a-z 0-9 _ -); got {show(raw)}")
    return raw


def parse_version(raw: str) -> str:
    if not _VERSION.fullmatch(raw):
        raise BadRequest(f"v: must be 1..64 characters of A-Z a-z 0-9 . _ -; got {show(raw)}")
    return raw


def show(value: str) -> str:
    """A value quoted for an error message: escaped and cut, so hostile input stays inert."""
    return repr(value if len(value) <= 40 else value[:40] + "…")
