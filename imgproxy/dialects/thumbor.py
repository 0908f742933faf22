"""thumbor's URLs -> the native request they mean (SPEC §15.2).

`/thumbor/{signature|unsafe}/[trim/][AxB:CxD/][fit-in/][-]Wx[-]H/[halign/][valign/][smart/]
[filters:NAME(ARGS):.../]IMAGE`: thumbor's own signature over the URL as sent, then each part
becomes native parameters, so the answer is the native URL's (bytes, ETag, cache entry).
What this server cannot mean exactly (adaptive/full fit-in, `orig`, fill(auto)...) is a 400
naming it, never a near miss.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, unquote_to_bytes

from imgproxy.dialects.colours import NAMED
from imgproxy.dialects.translation import Translation
from imgproxy.errors import BadRequest, BadSignature
from imgproxy.settings import Settings, ThumborDialectSettings
from imgproxy.store_options import HttpOptions

# thumbor's own URL grammar (libthumbor.url.Url, without its signature group): an option that
# does not match falls through into IMAGE, as in thumbor.
_URL = re.compile(
    r"(?:(?P<debug>debug)/)?(?:(?P<meta>meta)/)?"
    r"(?:(?P<trim>trim(?::(?:top-left|bottom-right))?(?::\d+)?)/)?"
    r"(?:(?P<crop>\d+x\d+:\d+x\d+)/)?"
    r"(?:(?P<fit>(?:adaptive-)?(?:full-)?fit-in)/)?"
    r"(?:(?P<size>(?P<hflip>-)?(?P<width>\d+|orig)?x(?P<vflip>-)?(?P<height>\d+|orig)?)/)?"
    r"(?:(?P<halign>left|right|center)/)?(?:(?P<valign>top|bottom|middle)/)?"
    r"(?:(?P<smart>smart)/)?(?:filters:(?P<filters>.+?\))/)?(?P<image>.+)",
    re.DOTALL,
)
_FILTER = re.compile(r"(\w+)\((.*)\)", re.DOTALL)
_DIGITS = re.compile(r"\d{1,9}")
_SIGNED = re.compile(r"-?\d{1,9}")
_DECIMAL = re.compile(r"-?(?:\d{1,9}\.?\d{0,9}|\d{0,9}\.\d{1,9})")
_BOOLEAN = {"true": True, "True": True, "1": True, "false": False, "False": False, "0": False}
_HEX = re.compile(r"[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8}")
_FORMATS = {
    "jpeg": "jpeg",
    "jpg": "jpeg",
    "png": "png",
    "webp": "webp",
    "avif": "avif",
    "gif": "gif",
}
_HALIGN = {"left": -1, "center": 0, "right": 1}
_VALIGN = {"top": -1, "middle": 0, "bottom": 1}
_COMPASS = {
    (0, -1): "n", (0, 1): "s", (1, 0): "e", (-1, 0): "w",
    (1, -1): "ne", (-1, -1): "nw", (1, 1): "se", (-1, 1): "sw",
}  # fmt: skip
# thumbor runs each filter given; these mean the same when repeated (or the last one wins).
_REPEATABLE = frozenset(
    {"format", "quality", "rotate", "no_upscale", "upscale", "strip_exif", "strip_icc"}
)


@dataclass(slots=True)
class _Meaning:
    """What one URL asks for, gathered part by part, then written as native parameters."""

    params: dict[str, str] = field(default_factory=dict)  # the ones geometry leaves alone
    width: int = 0
    height: int = 0
    fit_in: bool = False
    flip: tuple[bool, bool] = (False, False)  # horizontal, vertical: thumbor's, before rotate
    gravity: tuple[int, int] = (0, 0)  # -1/0/1 across and down; smart/focal go in `special`
    special: str = ""
    focal: tuple[float, float] = (0.5, 0.5)
    crop: tuple[int, int, int, int] | None = None  # left, top, right, bottom
    turns: int = 0  # thumbor's rotate(): quarter turns counter-clockwise, after fitting
    filled_after_turn: bool = False


class ThumborDialect:
    def __init__(
        self,
        config: ThumborDialectSettings,
        *,
        http_stores: Mapping[str, str] | None = None,
        watermarks: Mapping[str, str] | None = None,
    ) -> None:
        """`http_stores`: base_url -> store name; `watermarks`: a mark's path -> its name."""
        self.store = config.store
        self.key = config.security_key.encode()
        self.allow_unsafe = config.allow_unsafe
        bases = {
            url if url.endswith("/") else url + "/": name
            for url, name in (http_stores or {}).items()
        }
        self.http_stores = sorted(bases.items(), key=lambda item: -len(item[0]))
        self.watermarks = dict(watermarks or {})

    @classmethod
    def from_settings(cls, config: ThumborDialectSettings, settings: Settings) -> ThumborDialect:
        http = {
            store.options.base_url: name
            for name, store in settings.stores.items()
            if isinstance(store.options, HttpOptions)
        }
        marks = {mark.path: name for name, mark in settings.watermarks.items()}
        return cls(config, http_stores=http, watermarks=marks)

    def translate(self, rest: str, query: str) -> Translation:
        """thumbor ignores the query string (a cache-buster appended to its URLs changes
        nothing), so does this."""
        signature, slash, signed = rest.partition("/")
        if not slash or not signed:
            raise BadRequest("thumbor: expected /thumbor/{signature|unsafe}/[options/]IMAGE")
        self._check(signature, signed)
        match = _URL.fullmatch(signed)
        if match is None:  # only a URL that ends in "/" after its options gets here
            raise BadRequest("thumbor: no image named after the options")
        meaning = _Meaning()
        for group, part in _PARTS:
            if match[group] is not None:
                part(match[group], match, meaning)
        if match["filters"] is not None:
            self._filters(match["filters"], meaning)
        store, path = self._image(match["image"])
        return Translation(store, path, _params(meaning))

    def _check(self, signature: str, signed: str) -> None:
        """thumbor's signature: base64url(HMAC-SHA1(security_key, the rest as sent)), padded;
        the segment itself may arrive percent-encoded (`%3D` for `=`), as thumbor allows."""
        if signature == "unsafe":
            if not self.allow_unsafe:
                raise BadSignature("thumbor: unsafe URLs are off (dialects.thumbor.allow_unsafe)")
            return
        if not self.key:
            raise BadSignature("thumbor: no security_key is configured; only unsafe URLs")
        digest = hmac.new(self.key, _raw(signed), hashlib.sha1).digest()
        given = unquote(signature).encode("utf-8", "replace")
        if not hmac.compare_digest(base64.urlsafe_b64encode(digest), given):
            raise BadSignature("thumbor: the signature does not match this URL")

    def _filters(self, text: str, meaning: _Meaning) -> None:
        """`NAME(ARGS):NAME(ARGS)`, split where thumbor splits (at `):`); a filter this
        server cannot mean is a 400 naming it (thumbor would skip it silently)."""
        seen: set[str] = set()
        parts = text.split("):")
        for index, part in enumerate(parts):
            found = _FILTER.fullmatch(part if index == len(parts) - 1 else part + ")")
            if found is None:
                raise BadRequest(f"thumbor filters: {_show(part)} is not NAME(ARGS)")
            name, args = found[1], _arguments(found[2])
            if name == "watermark":
                self._watermark(args, meaning)
            elif name in _FILTERS:
                _FILTERS[name](args, meaning)
            else:
                known = ", ".join(sorted([*_FILTERS, "watermark"]))
                raise BadRequest(f"thumbor filter {_show(name)}: not supported (known: {known})")
            if name in seen and name not in _REPEATABLE:
                raise BadRequest(f"thumbor filter {name}: given more than once")
            seen.add(name)

    def _watermark(self, args: list[str], meaning: _Meaning) -> None:
        """Only a configured mark: its entry decides position and opacity, not the URL."""
        if not 4 <= len(args) <= 6:
            raise BadRequest("thumbor filter watermark: expects (image,x,y,alpha[,w,h])")
        name = self.watermarks.get(unquote(args[0]))
        if name is None:
            raise BadRequest(
                f"thumbor filter watermark: {_show(args[0])} is no configured [watermarks] path"
            )
        meaning.params["wm"] = name

    def _image(self, raw: str) -> tuple[str, str]:
        """IMAGE, percent-decoded once: a path in the dialect's store, or a full URL under
        an http store's base_url, which then names a path in that store."""
        try:
            image = unquote_to_bytes(_raw(raw)).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(
                "thumbor: the image is not valid UTF-8 after percent-decoding"
            ) from None
        if not image.startswith(("http://", "https://")):
            return self.store, image
        for base, store in self.http_stores:
            if image.startswith(base):
                return store, image[len(base) :]
        raise BadRequest(f"thumbor: {_show(image)} is under no http store's base_url")


def _raw(text: str) -> bytes:
    """The bytes as sent: the edges hand the raw path over decoded as latin-1."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _arguments(text: str) -> list[str]:
    """`a, 'b,c', 3` -> ['a', 'b,c', '3']: thumbor's quoted strings may hold commas."""
    args: list[str] = []
    for found in re.finditer(r"\s*('[^']*'|[^,]*)\s*(?:,|$)", text):
        if found.start() == len(text) and args:
            break
        args.append(found[1].strip("'") if found[1].startswith("'") else found[1].strip())
    return [] if args == [""] else args


def _int(raw: str, what: str) -> int:
    if not _DIGITS.fullmatch(raw):
        raise BadRequest(f"thumbor {what}: {_show(raw)} is too large")
    return int(raw)


# Parts of the URL, in thumbor's order.


def _debug(_: str, __: re.Match[str], ___: _Meaning) -> None:
    raise BadRequest("thumbor debug/ and meta/: not supported")


def _trim(raw: str, _: re.Match[str], meaning: _Meaning) -> None:
    """`trim[:top-left][:N]`: our trim compares with the top-left pixel; bottom-right is
    not something this server can do."""
    parts = raw.split(":")[1:]
    if "bottom-right" in parts:
        raise BadRequest("thumbor trim:bottom-right: not supported (top-left only)")
    numbers = [part for part in parts if part != "top-left"]
    meaning.params["trim"] = str(_int(numbers[0], "trim")) if numbers else "0"


def _crop(raw: str, _: re.Match[str], meaning: _Meaning) -> None:
    """AxB:CxD is the box's corners; thumbor ignores an empty box, and so does this."""
    left, top, right, bottom = (_int(n, "crop") for n in re.split(r"[x:]", raw))
    if right > left and bottom > top:
        meaning.crop = (left, top, right, bottom)


def _fit(raw: str, _: re.Match[str], meaning: _Meaning) -> None:
    if raw != "fit-in":
        raise BadRequest(f"thumbor {raw}: not supported (it needs the source's size); use fit-in")
    meaning.fit_in = True


def _size(_: str, match: re.Match[str], meaning: _Meaning) -> None:
    for side in ("width", "height"):
        if match[side] == "orig":
            raise BadRequest(f"thumbor {side} 'orig': not supported; give the size or 0")
    meaning.width = _int(match["width"] or "0", "width")
    meaning.height = _int(match["height"] or "0", "height")
    meaning.flip = (match["hflip"] is not None, match["vflip"] is not None)


def _halign(raw: str, _: re.Match[str], meaning: _Meaning) -> None:
    meaning.gravity = (_HALIGN[raw], meaning.gravity[1])


def _valign(raw: str, _: re.Match[str], meaning: _Meaning) -> None:
    meaning.gravity = (meaning.gravity[0], _VALIGN[raw])


def _smart(_: str, __: re.Match[str], meaning: _Meaning) -> None:
    meaning.special = meaning.special or "smart"  # an explicit focal() wins, as in thumbor


Part = Callable[[str, re.Match[str], _Meaning], None]
_PARTS: tuple[tuple[str, Part], ...] = (
    ("debug", _debug),
    ("meta", _debug),
    ("trim", _trim),
    ("crop", _crop),
    ("fit", _fit),
    ("size", _size),
    ("halign", _halign),
    ("valign", _valign),
    ("smart", _smart),
)


# Filters, by thumbor's names.


def _arity(name: str, args: list[str], low: int, high: int, usage: str) -> None:
    if not low <= len(args) <= high:
        raise BadRequest(f"thumbor filter {name}: expects {name}({usage})")


def _number(name: str, raw: str, pattern: re.Pattern[str] = _DECIMAL) -> float:
    if not pattern.fullmatch(raw):
        raise BadRequest(f"thumbor filter {name}: {_show(raw)} is not a number")
    return float(raw)


def _format(args: list[str], meaning: _Meaning) -> None:
    _arity("format", args, 1, 1, "jpeg|png|webp|avif|gif")
    found = _FORMATS.get(args[0].lower())
    if found is None:
        raise BadRequest(f"thumbor filter format: {_show(args[0])} is not jpeg|png|webp|avif|gif")
    meaning.params["fm"] = found


def _quality(args: list[str], meaning: _Meaning) -> None:
    _arity("quality", args, 1, 1, "N")
    meaning.params["q"] = _text(_number("quality", args[0], _DIGITS))


def _blur(args: list[str], meaning: _Meaning) -> None:
    """blur(radius[, sigma]): thumbor's sigma is the radius unless given (and not 0)."""
    _arity("blur", args, 1, 2, "radius[,sigma]")
    radius = _number("blur", args[0], _DIGITS)
    sigma = _number("blur", args[1]) if len(args) == 2 else 0.0
    meaning.params["blur"] = _text(sigma or radius)


def _sharpen(args: list[str], meaning: _Meaning) -> None:
    _arity("sharpen", args, 3, 3, "amount,radius,luminance_only")
    _number("sharpen", args[0])
    if args[2] not in _BOOLEAN:
        raise BadRequest(f"thumbor filter sharpen: {_show(args[2])} is not true|false")
    meaning.params["sharpen"] = _text(_number("sharpen", args[1]))


def _rotate(args: list[str], meaning: _Meaning) -> None:
    """rotate(A): thumbor turns counter-clockwise, after fitting."""
    _arity("rotate", args, 1, 1, "90|180|270")
    angle = int(_number("rotate", args[0], _SIGNED))
    if angle % 90:
        raise BadRequest(f"thumbor filter rotate: {angle} is not a multiple of 90")
    meaning.turns = (meaning.turns + angle // 90) % 4


def _fill(args: list[str], meaning: _Meaning) -> None:
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
        raise BadRequest(f"thumbor filter fill: {_show(colour)} is no colour this server has")
    meaning.filled_after_turn = meaning.turns % 2 == 1
    if meaning.fit_in:
        meaning.params["fit"] = "pad"


def _focal(args: list[str], meaning: _Meaning) -> None:
    """focal(AxB:CxD): the box's centre, in source pixels. Native focal points are fractions
    of the image being fitted, known here only when a crop box gives that image's size."""
    _arity("focal", args, 1, 1, "AxB:CxD")
    found = re.fullmatch(r"(\d{1,9})x(\d{1,9}):(\d{1,9})x(\d{1,9})", args[0])
    if found is None:
        raise BadRequest(f"thumbor filter focal: {_show(args[0])} is not AxB:CxD")
    left, top, right, bottom = (int(n) for n in found.groups())
    if right <= left or bottom <= top:
        return  # thumbor ignores an empty box
    if meaning.crop is None:
        raise BadRequest(
            "thumbor filter focal: needs a crop box (AxB:CxD/) in the URL on this server, "
            "to place the point without the source's size"
        )
    x0, y0, x1, y1 = meaning.crop
    x, y = left + (right - left) // 2, top + (bottom - top) // 2
    if x0 <= x <= x1 and y0 <= y <= y1:  # thumbor drops a point outside the crop
        meaning.special = "focal"
        meaning.focal = ((x - x0) / (x1 - x0), (y - y0) / (y1 - y0))


def _nothing(name: str, doc: str) -> Callable[[list[str], _Meaning], None]:
    def accept(args: list[str], _: _Meaning) -> None:
        _arity(name, args, 0, 0, "")

    accept.__doc__ = doc
    return accept


def _upscale(args: list[str], meaning: _Meaning) -> None:
    _arity("upscale", args, 0, 0, "")
    meaning.params["enlarge"] = "1"


_FILTERS: dict[str, Callable[[list[str], _Meaning], None]] = {
    "format": _format,
    "quality": _quality,
    "blur": _blur,
    "sharpen": _sharpen,
    "rotate": _rotate,
    "fill": _fill,
    "focal": _focal,
    "upscale": _upscale,
    "no_upscale": _nothing("no_upscale", "never enlarging is the default here"),
    "strip_exif": _nothing("strip_exif", "outputs never carry EXIF"),
    "strip_icc": _nothing("strip_icc", "a profile is kept or converted to sRGB"),
}


def _params(meaning: _Meaning) -> dict[str, str]:
    """The native parameters, with thumbor's after-fitting rotation moved before fitting,
    where `rot` acts: an odd quarter turn swaps the box, the flips and the crop's anchor."""
    if meaning.filled_after_turn and meaning.fit_in:
        raise BadRequest("thumbor filters: fill() after rotate() is not supported")
    params = dict(meaning.params)
    width, height = meaning.width, meaning.height
    (hflip, vflip), gravity, focal = meaning.flip, meaning.gravity, meaning.focal
    for _ in range(meaning.turns):  # each a quarter turn counter-clockwise
        width, height, hflip, vflip = height, width, vflip, hflip
        gravity = (gravity[1], -gravity[0])
        focal = (focal[1], 1 - focal[0])
    if meaning.turns:
        params["rot"] = str((4 - meaning.turns) * 90)
    if meaning.crop is not None:
        left, top, right, bottom = meaning.crop
        params["crop"] = f"{left},{top},{right - left},{bottom - top}"
    if width:
        params["w"] = str(width)
    if height:
        params["h"] = str(height)
    if width and height and not meaning.fit_in:
        params["fit"] = "cover"
    flip = ("h" if hflip else "") + ("v" if vflip else "")
    if flip:
        params["flip"] = flip
    if meaning.special:
        params["g"] = meaning.special
    elif gravity != (0, 0):
        params["g"] = _COMPASS[gravity]
    if meaning.special == "focal":
        params["fx"], params["fy"] = (_text(round(value, 6)) for value in focal)
    return params


def _text(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if value % 1 else str(int(value))


def _show(value: str) -> str:
    """A value quoted for an error message: escaped and cut, so hostile input stays inert."""
    return repr(value if len(value) <= 40 else value[:40] + "…")
