"""Python helpers that build URLs this server accepts: signed when keys are configured, in
canonical parameter order, and `srcset` lists for responsive images (SPEC §3, §8)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import quote, urlsplit

from imgproxy.query_string import split_query
from imgproxy.settings import Settings
from imgproxy.signing import canonical_query, message, signature

UNRESERVED = "-._~"


def sign_url(url: str, key: str | bytes, *, signature_length: int = 32) -> str:
    """`/store/path?params` (the part after the mount, as it will be sent) -> the same URL
    with its `s` appended; an existing `s` is replaced."""
    parts = urlsplit(url)
    params = split_query(parts.query)
    params.pop("s", None)
    secret = key.encode() if isinstance(key, str) else key
    signed = signature(secret, message(parts.path, params), signature_length)
    query = canonical_query(params)
    return f"{parts.path}?{query + '&' if query else ''}s={signed}"


def url_for(
    store: str,
    path: str,
    *,
    settings: Settings,
    mount: str = "",
    **params: str | int | float,
) -> str:
    """The URL of `path` in `store` with `params`, under `mount` (e.g. "/media"), signed
    with the first configured key when signing is on."""
    relative = f"/{store}/{quote(path, safe='/')}"
    values = {name: _text(value) for name, value in params.items()}
    query = canonical_query(values)
    url = f"{relative}?{query}" if query else relative
    keys = settings.security.keys
    needs_signature = keys and (values or settings.security.sign_originals)
    if needs_signature and not _unsigned_preset(values, settings):
        url = sign_url(url, keys[0], signature_length=settings.security.signature_length)
    return mount.rstrip("/") + url


def srcset(
    store: str,
    path: str,
    widths: Sequence[int],
    *,
    settings: Settings,
    mount: str = "",
    **params: str | int | float,
) -> str:
    """`<img srcset>` candidates, one rendition per width: "URL 320w, URL 640w". A given
    `h` belongs to the first width and scales with the others, so every candidate has the
    same shape (a 240x240 crop becomes 480x480, not 480x240)."""
    first = widths[0] if widths else 1
    height = params.pop("h", None)
    candidates = []
    for width in widths:
        sized: dict[str, str | int | float] = {**params, "w": width}
        if height is not None:
            sized["h"] = max(1, round(float(height) * width / first))
        url = url_for(store, path, settings=settings, mount=mount, **sized)
        candidates.append(f"{url} {width}w")
    return ", ".join(candidates)


def _text(value: str | int | float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _unsigned_preset(values: Mapping[str, str], settings: Settings) -> bool:
    return settings.security.allow_unsigned_presets and "p" in values and set(values) <= {"p", "v"}
