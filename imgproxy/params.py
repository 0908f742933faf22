"""Query string -> a frozen, canonical Transform (or None for the original) (SPEC §2.1).

Parsing is a table of small value parsers (param_values.py). Canonicalisation (dpr folded
into the box, irrelevant options reset to their defaults) makes every spelling of one
rendition equal, so they share one ETag and one cache entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib.util import find_spec
from typing import Any

from imgproxy.errors import BadRequest
from imgproxy.formats import OutputFormat
from imgproxy.param_values import (
    choice,
    integer,
    number,
    parse_colour,
    parse_crop,
    parse_name,
    parse_pad,
    parse_version,
    show,
)
from imgproxy.query_string import split_query


class Fit(StrEnum):
    CONTAIN = "contain"
    COVER = "cover"
    FILL = "fill"
    PAD = "pad"
    # imgproxy's resizing_type auto (SPEC §15.3): cover when the source and the box are both
    # landscape (or square) or both portrait, else contain; decided in geometry.plan.
    AUTO = "auto"


class Flip(StrEnum):
    H = "h"
    V = "v"
    HV = "hv"


class Gravity(StrEnum):
    CENTER = "center"
    N = "n"
    S = "s"
    E = "e"
    W = "w"
    NE = "ne"
    NW = "nw"
    SE = "se"
    SW = "sw"
    FOCAL = "focal"
    ENTROPY = "entropy"
    SMART = "smart"


AUTO = "auto"
JSON = "json"
FormatChoice = OutputFormat | str  # an OutputFormat, AUTO or JSON

# The placeholder hashes are numpy code (render/placeholders.py): an optional extra, looked
# up here without importing it, so a server without it answers 400, never 500.
HASHES_AVAILABLE = find_spec("numpy") is not None

# The image operations of SPEC §15.1, in the order they apply (render/operations.py).
OPERATION_KEYS = ("crop", "trim", "rot", "flip", "blur", "sharpen", "pixelate", "pad", "wm")
TRANSFORM_KEYS = frozenset(
    {"w", "h", "dpr", "fit", "enlarge", "g", "fx", "fy", "fm", "q", "bg", *OPERATION_KEYS}
)
OTHER_KEYS = frozenset({"p", "v", "s"})


@dataclass(frozen=True, slots=True)
class Transform:
    """What to make of the source. Fields irrelevant to the result hold their defaults."""

    width: int | None = None
    height: int | None = None
    fit: Fit = Fit.CONTAIN
    enlarge: bool = False
    gravity: Gravity = Gravity.CENTER
    # None with g=focal: the point stored with the source (StoredFile.focal), else the centre.
    focal: tuple[float, float] | None = (0.5, 0.5)
    format: FormatChoice | None = None
    quality: int | None = None
    background: tuple[int, int, int, int] = (255, 255, 255, 255)
    # SPEC §15.1. A crop is in upright source pixels (x, y, w, h) or, until the variant
    # resolves it against the source's size, in fractions of it.
    crop: tuple[int, int, int, int] | None = None
    crop_fractions: tuple[float, float, float, float] | None = None
    trim: int | None = None  # tolerance against the top-left pixel
    rotate: int = 0  # clockwise degrees: 0, 90, 180, 270
    flip: Flip | None = None
    blur: float | None = None  # sigma in output pixels
    sharpen: float | None = None  # sigma in output pixels
    pixelate: int | None = None  # block side in output pixels
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, right, bottom, left
    watermark: str | None = None  # a [watermarks] name, composited last (SPEC §15.1)

    @property
    def metadata(self) -> bool:
        return self.format == JSON

    def canonical(self) -> str:
        """Geometry and colour, as a stable string; format and quality are added by the
        caller once the output format is known (`q` counts only for lossy formats)."""
        parts = [
            f"w={self.width or ''}",
            f"h={self.height or ''}",
            f"fit={self.fit}",
            f"enlarge={int(self.enlarge)}",
            f"g={self.gravity}",
            "fxy={:g},{:g}".format(*self.focal) if self.focal else "fxy=stored",
            "bg={:02x}{:02x}{:02x}{:02x}".format(*self.background),
        ]
        return "&".join(parts + self._operations())

    def _operations(self) -> list[str]:
        """Only the operations asked for, so every URL without them keeps the canonical
        form, cache key and ETag it had before they existed (SPEC §15.1)."""
        parts = []
        if self.crop:
            parts.append("crop={},{},{},{}".format(*self.crop))
        if self.crop_fractions:
            parts.append("crop={:g},{:g},{:g},{:g}:fractions".format(*self.crop_fractions))
        if self.trim is not None:
            parts.append(f"trim={self.trim}")
        if self.rotate:
            parts.append(f"rot={self.rotate}")
        if self.flip:
            parts.append(f"flip={self.flip}")
        if self.blur:
            parts.append(f"blur={self.blur:g}")
        if self.sharpen:
            parts.append(f"sharpen={self.sharpen:g}")
        if self.pixelate:
            parts.append(f"pixelate={self.pixelate}")
        if any(self.pad):
            parts.append("pad={},{},{},{}".format(*self.pad))
        if self.watermark:  # the mark's version and settings join in the variant's ETag
            parts.append(f"wm={self.watermark}")
        return parts


@dataclass(frozen=True, slots=True)
class Query:
    """The request's parameters after preset expansion: a transform, or None for the original."""

    transform: Transform | None
    version: str | None
    preset: str | None
    signature: str | None
    dpr_given: bool = False  # `dpr` in the URL or its preset: a DPR client hint then defers


def parse_query(
    pairs: Mapping[str, str],
    *,
    presets: Mapping[str, str],
    max_dimension: int,
    watermarks: Collection[str] = (),
) -> Query:
    """Expand `p`, then parse every transform parameter; explicit params win over the preset
    (whether they may be combined at all is the signature stage's decision, SPEC §3).
    `watermarks`: the configured `[watermarks]` names, the only values `wm` may take."""
    for name in pairs:
        if name not in TRANSFORM_KEYS and name not in OTHER_KEYS:
            allowed = ", ".join(sorted(TRANSFORM_KEYS | OTHER_KEYS))
            raise BadRequest(f"{show(name)}: unknown parameter (allowed: {allowed})")
    version = parse_version(pairs["v"]) if "v" in pairs else None
    preset = pairs.get("p")
    values = dict(expand_preset(preset, presets)) if preset is not None else {}
    values.update((k, v) for k, v in pairs.items() if k in TRANSFORM_KEYS)
    has_transform = preset is not None or bool(values)
    transform = build_transform(values, max_dimension) if has_transform else None
    if "wm" in values and values["wm"] not in watermarks:
        known = ", ".join(sorted(watermarks)) or "none configured"
        raise BadRequest(f"wm: unknown watermark {show(values['wm'])} (known: {known})")
    return Query(transform, version, preset, pairs.get("s"), "dpr" in values)


def expand_preset(name: str, presets: Mapping[str, str]) -> dict[str, str]:
    if name not in presets:
        known = ", ".join(sorted(presets)) or "none configured"
        raise BadRequest(f"p: unknown preset {show(name)} (known: {known})")
    values = split_query(presets[name])
    if set(values) - TRANSFORM_KEYS:
        raise BadRequest(f"p: preset {name!r} may only hold transform parameters")
    return values


def build_transform(values: Mapping[str, str], max_dimension: int) -> Transform:
    parsed: dict[str, Any] = {}
    for name, raw in values.items():
        parsed[name] = _PARSERS[name](raw, name, max_dimension)
    dpr = parsed.pop("dpr", 1.0)
    width, height = fold_dpr(parsed.get("w"), parsed.get("h"), dpr, max_dimension)
    transform = Transform(
        width=width,
        height=height,
        fit=parsed.get("fit", Fit.CONTAIN),
        enlarge=parsed.get("enlarge", False),
        gravity=parsed.get("g", Gravity.CENTER),
        focal=(parsed.get("fx", 0.5), parsed.get("fy", 0.5))
        if "fx" in parsed or "fy" in parsed
        else None,
        format=parsed.get("fm"),
        quality=parsed.get("q"),
        background=parsed.get("bg", (255, 255, 255, 255)),
        **parsed.get("crop", {}),
        trim=parsed.get("trim"),
        rotate=parsed.get("rot", 0),
        flip=parsed.get("flip"),
        blur=parsed.get("blur"),
        sharpen=parsed.get("sharpen"),
        pixelate=parsed.get("pixelate"),
        pad=parsed.get("pad", (0, 0, 0, 0)),
        watermark=parsed.get("wm"),
    )
    return normalise(transform)


def normalise(t: Transform) -> Transform:
    """Reset what cannot affect the result, so equal renditions compare equal."""
    if isinstance(t.format, OutputFormat) and t.format.is_placeholder:
        return Transform(format=t.format)  # the whole source's hash: geometry means nothing
    if t.crop_fractions == (0.0, 0.0, 1.0, 1.0):
        t = dataclasses.replace(t, crop_fractions=None)  # the whole source
    if t.width is None and t.height is None:
        t = dataclasses.replace(t, enlarge=False)
    if t.width is None or t.height is None:
        # With one side open, cover, fill and pad all reduce to contain.
        t = dataclasses.replace(t, fit=Fit.CONTAIN)
    if t.fit not in (Fit.COVER, Fit.AUTO):
        t = dataclasses.replace(t, gravity=Gravity.CENTER)
    if t.gravity is Gravity.SMART:
        t = dataclasses.replace(t, focal=None)  # found in the pixels, once per version
    elif t.gravity is not Gravity.FOCAL:
        t = dataclasses.replace(t, focal=(0.5, 0.5))
    return t


def fold_dpr(
    width: int | None, height: int | None, dpr: float, max_dimension: int
) -> tuple[int | None, int | None]:
    """dpr multiplies the box; the product is capped at max_dimension keeping its shape."""
    if dpr == 1.0:
        return width, height
    factor = min([dpr] + [max_dimension / side for side in (width, height) if side])
    return (
        max(1, round(width * factor)) if width else None,
        max(1, round(height * factor)) if height else None,
    )


def _parse_format(raw: str, name: str, _: int) -> FormatChoice:
    value = choice(raw, name, (*(f.value for f in OutputFormat), AUTO, JSON))
    if value in (AUTO, JSON):
        return value
    output = OutputFormat(value)
    if output.is_placeholder and not HASHES_AVAILABLE:
        raise BadRequest(
            f"{name}: {value} needs the 'placeholders' extra on this server"
            " (pip install 'imgproxy-server[placeholders]')"
        )
    return output


_PARSERS: dict[str, Callable[[str, str, int], Any]] = {
    "w": lambda raw, name, top: integer(raw, name, 1, top),
    "h": lambda raw, name, top: integer(raw, name, 1, top),
    "dpr": lambda raw, name, _: number(raw, name, 1, 4),
    "fit": lambda raw, name, _: Fit(choice(raw, name, tuple(Fit))),
    "enlarge": lambda raw, name, _: choice(raw, name, ("0", "1")) == "1",
    "g": lambda raw, name, _: Gravity(choice(raw, name, tuple(Gravity))),
    "fx": lambda raw, name, _: number(raw, name, 0, 1),
    "fy": lambda raw, name, _: number(raw, name, 0, 1),
    "fm": _parse_format,
    "q": lambda raw, name, _: integer(raw, name, 1, 100),
    "bg": parse_colour,
    "crop": parse_crop,
    "trim": lambda raw, name, _: integer(raw, name, 0, 255),
    "rot": lambda raw, name, _: int(choice(raw, name, ("0", "90", "180", "270"))),
    "flip": lambda raw, name, _: Flip(choice(raw, name, tuple(Flip))),
    "blur": lambda raw, name, _: number(raw, name, 0.3, 100),
    "sharpen": lambda raw, name, _: number(raw, name, 0.3, 10),
    "pixelate": lambda raw, name, _: integer(raw, name, 2, 256),
    "pad": parse_pad,
    "wm": parse_name,
}
