"""`/imgproxy/{signature}/{options}/{source}` -> the native request it means (SPEC §15.3).

The signature is imgproxy (Go)'s own, checked over the path as sent before anything in it is
parsed; then the options become native parameters and the source a path in a store.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from urllib.parse import unquote

from imgproxy.dialects.imgproxy_options import output_format, parse_options
from imgproxy.dialects.imgproxy_params import native_params, sizing
from imgproxy.dialects.translation import Translation
from imgproxy.errors import BadRequest, BadSignature, ConfigError
from imgproxy.settings import ImgproxyDialectSettings, Settings, WatermarkSettings
from imgproxy.store_options import HttpOptions

INSECURE = "insecure"
_BASE64 = re.compile(r"[A-Za-z0-9_-]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_LOCAL = "local:///"


class ImgproxyUrls:
    """imgproxy's URL dialect: its signature, options and sources over our stores."""

    def __init__(
        self,
        config: ImgproxyDialectSettings,
        *,
        http_stores: Mapping[str, str] | None = None,
        watermarks: Mapping[str, WatermarkSettings] | None = None,
    ) -> None:
        self.store = config.store
        self.allow_insecure = config.allow_insecure
        self.size = config.signature_size
        # Decoded once: the pairs are tried in order, any one matching (key rotation).
        self.pairs = [
            (bytes.fromhex(key), bytes.fromhex(salt))
            for key, salt in zip(config.keys, config.salts, strict=True)
        ]
        # Longest base URL first, so a store under another store's URL wins its own paths.
        self.http_stores = sorted(
            (
                (url if url.endswith("/") else url + "/", name)
                for name, url in (http_stores or {}).items()
            ),
            key=lambda pair: -len(pair[0]),
        )
        self.watermark: tuple[str, WatermarkSettings] | None = None
        if config.watermark:
            mark = (watermarks or {}).get(config.watermark)
            if mark is None:
                raise ConfigError(
                    f"dialects.imgproxy.watermark: no [watermarks.{config.watermark}]"
                )
            self.watermark = (config.watermark, mark)

    @classmethod
    def from_settings(cls, config: ImgproxyDialectSettings, settings: Settings) -> ImgproxyUrls:
        http_stores = {
            name: store.options.base_url
            for name, store in settings.stores.items()
            if isinstance(store.options, HttpOptions)
        }
        return cls(config, http_stores=http_stores, watermarks=settings.watermarks)

    def translate(self, rest: str, query: str) -> Translation:
        """imgproxy signs and reads the path only: a query string (a CDN's cache buster) is
        ignored, as imgproxy ignores it."""
        signature, _, signed = rest.partition("/")
        self.check_signature(signature, "/" + signed)
        parts = signed.split("/")
        start = next((i for i, part in enumerate(parts) if ":" not in part), len(parts))
        state = parse_options(parts[:start])
        params = native_params(state, watermark=self.watermark)
        store, path, extension = self.source(parts[start:])
        if extension:
            params["fm"] = output_format(extension, "extension")  # wins over `format`, as there
        if not params.keys() - {"v"}:
            # imgproxy always re-encodes (never passes the original, or its EXIF, through):
            # with no option that says how, the native equivalent is the explicit default.
            params["fit"] = "contain"
        sized = sizing(state)
        return Translation(store, path, params, sized=None if sized is None else sized.resolve)

    def check_signature(self, signature: str, signed: str) -> None:
        """imgproxy's signature: base64url(HMAC-SHA256(key, salt + path)[:size]), unpadded;
        exactly that spelling, compared in constant time against every pair."""
        if signature == INSECURE and self.allow_insecure:
            return
        given = signature.encode()
        message = signed.encode()
        matched = False
        for key, salt in self.pairs:
            digest = hmac.new(key, salt + message, hashlib.sha256).digest()[: self.size]
            expected = base64.urlsafe_b64encode(digest).rstrip(b"=")
            matched |= hmac.compare_digest(expected, given)
        if not matched:
            raise BadSignature("the imgproxy signature does not match")

    def source(self, parts: Sequence[str]) -> tuple[str, str, str]:
        """`plain/{percent-encoded URL}[@ext]` or `{base64url URL, split at will}[.ext]` ->
        (store, decoded path in it, extension)."""
        if not parts or not any(parts):
            raise BadRequest("source: no image named after the options")
        if parts[0] == "plain" and len(parts) > 1:
            url, extension = _split_once("/".join(parts[1:]), "@")
            try:
                url = unquote(url, errors="strict")
            except UnicodeDecodeError:
                raise BadRequest("source: not valid UTF-8 after percent-decoding") from None
        else:
            encoded, extension = _split_once("".join(parts), ".")
            url = _base64(encoded.rstrip("="))
        return (*self._locate(url), extension)

    def _locate(self, url: str) -> tuple[str, str]:
        """A source URL -> (store, decoded path): `local:///p` and a bare path are in the
        dialect's store, an http(s) URL in the `http` store whose base_url it starts with."""
        if "?" in url or "#" in url:
            raise BadRequest("source: a query or fragment in the source URL is not supported")
        store, encoded = self.store, url
        if url.startswith(_LOCAL):
            encoded = url[len(_LOCAL) :]
        elif _SCHEME.match(url):
            found = next(
                ((n, url[len(b) :]) for b, n in self.http_stores if url.startswith(b)), None
            )
            if found is None:
                raise BadRequest("source: a URL must start with an http store's base_url")
            store, encoded = found
        elif url.startswith("/"):
            encoded = url[1:]  # imgproxy joins such paths to its base URL
        try:
            return store, unquote(encoded, errors="strict")
        except UnicodeDecodeError:
            raise BadRequest("source: not valid UTF-8 after percent-decoding") from None


def _split_once(text: str, mark: str) -> tuple[str, str]:
    head, *tail = text.split(mark)
    if len(tail) > 1:
        raise BadRequest(f"source: more than one {mark!r} (formats) given")
    if not head:
        raise BadRequest("source: the image URL is empty")
    return head, tail[0] if tail else ""


def _base64(encoded: str) -> str:
    if not _BASE64.fullmatch(encoded) or len(encoded) % 4 == 1:
        raise BadRequest("source: not URL-safe base64")
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        return raw.decode()
    except (binascii.Error, UnicodeDecodeError):
        raise BadRequest("source: not URL-safe base64 of a UTF-8 URL") from None
