"""imgproxy (Go)'s argument syntax, read as imgproxy reads it: Go's booleans, bounded
numbers and integers, an option's argument count, and its gravities. Each raises a 400
naming the option as written."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from imgproxy.errors import BadRequest
from imgproxy.param_values import show

# imgproxy's gravity names -> the native `g` values (SPEC §2.1).
GRAVITIES = {
    "no": "n",
    "so": "s",
    "ea": "e",
    "we": "w",
    "noea": "ne",
    "nowe": "nw",
    "soea": "se",
    "sowe": "sw",
    "ce": "center",
}
TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})  # Go's strconv.ParseBool
FALSE = frozenset({"", "0", "f", "F", "false", "FALSE", "False"})

Gravity = tuple[str, float, float]  # a native `g` value, and fx, fy for `focal`

NUMBER = re.compile(r"[+-]?(?:[0-9]{1,9}(?:\.[0-9]{0,9})?|\.[0-9]{1,9})")
INTEGER = re.compile(r"[+-]?[0-9]{1,9}")


def arity(name: str, args: Sequence[str], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        raise BadRequest(f"{show(name)}: takes {low}..{high} arguments, got {len(args)}")


def number(raw: str, name: str, low: float = 0.0, high: float = math.inf) -> float:
    if not NUMBER.fullmatch(raw) or not low <= float(raw) <= high:
        raise BadRequest(f"{show(name)}: must be a number {low:g}..{high:g}, got {show(raw)}")
    return float(raw)


def integer(raw: str, name: str, low: int = 0, high: int = 10**9) -> int:
    if not INTEGER.fullmatch(raw) or not low <= int(raw) <= high:
        raise BadRequest(f"{show(name)}: must be an integer {low}..{high}, got {show(raw)}")
    return int(raw)


def boolean(raw: str, name: str) -> bool:
    if raw not in TRUE and raw not in FALSE:
        raise BadRequest(f"{show(name)}: must be 1, t, true, 0, f or false; got {show(raw)}")
    return raw in TRUE


def gravity(args: Sequence[str], name: str) -> Gravity:
    """`ce`, `no:0:0`, `sm`, `fp:0.3:0.6` -> a native gravity; offsets must be 0."""
    kind = args[0]
    if kind == "sm":
        arity(name, args, 1, 1)
        return ("smart", 0.0, 0.0)
    if kind == "fp":
        arity(name, args, 3, 3)
        return ("focal", number(args[1], name, 0, 1), number(args[2], name, 0, 1))
    if kind not in GRAVITIES:
        raise BadRequest(f"{show(name)}: gravity must be {', '.join(GRAVITIES)}, sm or fp:X:Y")
    arity(name, args, 1, 3)
    if any(number(offset, name, -math.inf) != 0 for offset in args[1:]):
        raise BadRequest(f"{show(name)}: gravity offsets are not supported")
    return (GRAVITIES[kind], 0.0, 0.0)
