"""thumbor's URLs -> the native request they mean (SPEC §15.2).

`/thumbor/{signature|unsafe}/[trim/][AxB:CxD/][fit-in/][-]Wx[-]H/[halign/][valign/][smart/]
[filters:NAME(ARGS):.../]IMAGE`: thumbor's own signature over the URL as sent, then each part
becomes native parameters, so the answer is the native URL's (bytes, ETag, cache entry).
What this server cannot mean exactly (`orig`, fill(auto)...) is a 400 naming it, never a near
miss; adaptive- and full-fit-in are sized once the source is read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from urllib.parse import unquote, unquote_to_bytes

from imgproxy.dialects.thumbor_filters import Meaning, apply_filters
from imgproxy.dialects.thumbor_sizing import sized
from imgproxy.dialects.translation import Translation
from imgproxy.errors import BadRequest, BadSignature
from imgproxy.param_values import show
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
_DIGITS = re.compile(r"\d{1,9}")
_HALIGN = {"left": -1, "center": 0, "right": 1}
_VALIGN = {"top": -1, "middle": 0, "bottom": 1}
_COMPASS = {
    (0, -1): "n", (0, 1): "s", (1, 0): "e", (-1, 0): "w",
    (1, -1): "ne", (-1, -1): "nw", (1, 1): "se", (-1, 1): "sw",
}  # fmt: skip


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
        assert match is not None  # IMAGE takes whatever the options leave (at least `signed`)
        meaning = Meaning()
        for group, part in _PARTS:
            if match[group] is not None:
                part(match[group], match, meaning)
        if match["filters"] is not None:
            apply_filters(
                unquote(match["filters"]), meaning, self.watermarks
            )  # decoded once, as thumbor does
        store, path = self._image(match["image"])
        return Translation(store, path, _params(meaning), sized=sized(meaning))

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
        raise BadRequest(f"thumbor: {show(image)} is under no http store's base_url")


def _raw(text: str) -> bytes:
    """The bytes as sent: the edges hand the raw path over decoded as latin-1."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _int(raw: str, what: str) -> int:
    if not _DIGITS.fullmatch(raw):
        raise BadRequest(f"thumbor {what}: {show(raw)} is too large")
    return int(raw)


# Parts of the URL, in thumbor's order.


def _debug(_: str, __: re.Match[str], ___: Meaning) -> None:
    raise BadRequest("thumbor debug/ and meta/: not supported")


def _trim(raw: str, _: re.Match[str], meaning: Meaning) -> None:
    """`trim[:top-left][:N]`: our trim compares with the top-left pixel; bottom-right is
    not something this server can do."""
    parts = raw.split(":")[1:]
    if "bottom-right" in parts:
        raise BadRequest("thumbor trim:bottom-right: not supported (top-left only)")
    numbers = [part for part in parts if part != "top-left"]
    meaning.params["trim"] = str(_int(numbers[0], "trim")) if numbers else "0"


def _crop(raw: str, _: re.Match[str], meaning: Meaning) -> None:
    """AxB:CxD is the box's corners; thumbor ignores an empty box, and so does this."""
    left, top, right, bottom = (_int(n, "crop") for n in re.split(r"[x:]", raw))
    if right > left and bottom > top:
        meaning.crop = (left, top, right, bottom)


def _fit(raw: str, _: re.Match[str], meaning: Meaning) -> None:
    meaning.fit_in = True
    meaning.adaptive = raw.startswith("adaptive-")
    meaning.full = "full-" in raw


def _size(_: str, match: re.Match[str], meaning: Meaning) -> None:
    for side in ("width", "height"):
        if match[side] == "orig":
            raise BadRequest(f"thumbor {side} 'orig': not supported; give the size or 0")
    meaning.width = _int(match["width"] or "0", "width")
    meaning.height = _int(match["height"] or "0", "height")
    meaning.flip = (match["hflip"] is not None, match["vflip"] is not None)


def _halign(raw: str, _: re.Match[str], meaning: Meaning) -> None:
    meaning.gravity = (_HALIGN[raw], meaning.gravity[1])


def _valign(raw: str, _: re.Match[str], meaning: Meaning) -> None:
    meaning.gravity = (meaning.gravity[0], _VALIGN[raw])


def _smart(_: str, __: re.Match[str], meaning: Meaning) -> None:
    meaning.special = meaning.special or "smart"  # an explicit focal() wins, as in thumbor


Part = Callable[[str, re.Match[str], Meaning], None]
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


def _params(meaning: Meaning) -> dict[str, str]:
    """The native parameters, with thumbor's after-fitting rotation moved before fitting,
    where `rot` acts: an odd quarter turn swaps the box, the flips and the crop's anchor.
    thumbor's fill() pads to the box as asked, so after an odd turn it pads (or cuts) the
    turned image to the unturned box, with or without fit-in: not a native rendition."""
    if meaning.filled_after_turn and (meaning.fit_in or meaning.width or meaning.height):
        raise BadRequest("thumbor filters: fill() after rotate() is not supported")
    params = dict(meaning.params)
    width, height = meaning.width, meaning.height
    (hflip, vflip), gravity = meaning.flip, meaning.gravity
    for _ in range(meaning.turns):  # each a quarter turn counter-clockwise
        width, height, hflip, vflip = height, width, vflip, hflip
        gravity = (gravity[1], -gravity[0])
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
    if meaning.fit_in and not (width and height):
        # thumbor's upscale() enlarges only an image smaller than both sides of the box:
        # never past a fit-in box with a side of 0.
        params.pop("enlarge", None)
    flip = ("h" if hflip else "") + ("v" if vflip else "")
    if flip:
        params["flip"] = flip
    if meaning.special:
        params["g"] = meaning.special
    elif gravity != (0, 0):
        params["g"] = _COMPASS[gravity]
    if not params:
        # thumbor always re-encodes (never passes the original, or its EXIF and GPS, through;
        # strip_exif() says so outright): with nothing else asked, the explicit default.
        params["fit"] = "contain"
    return params
