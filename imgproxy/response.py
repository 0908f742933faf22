"""Outcomes -> ImageResponse values: image headers (SPEC §5), 304s and JSON errors."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from urllib.parse import quote

from imgproxy.conditional import NOT_MODIFIED_HEADERS
from imgproxy.errors import ImageProxyError, MethodNotAllowed, Overloaded
from imgproxy.messages import ImageResponse

SECURITY_HEADERS = (
    ("x-content-type-options", "nosniff"),
    ("content-security-policy", "default-src 'none'; sandbox"),
)


def image_response(status: int, body: bytes, headers: tuple[tuple[str, str], ...]) -> ImageResponse:
    """`headers` are a Variant's, security headers included (fixed once per variant)."""
    return ImageResponse(status, (*headers, ("content-length", str(len(body)))), body)


def not_modified(headers: Iterable[tuple[str, str]]) -> ImageResponse:
    kept = tuple((name, value) for name, value in headers if name in NOT_MODIFIED_HEADERS)
    return ImageResponse(304, kept)


def error_response(error: ImageProxyError) -> ImageResponse:
    body = json.dumps({"error": error.code, "detail": error.detail}).encode()
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("cache-control", "no-store"),
        *SECURITY_HEADERS,
    ]
    if isinstance(error, MethodNotAllowed):
        headers.append(("allow", "GET, HEAD"))
    if isinstance(error, Overloaded):
        headers.append(("retry-after", str(error.retry_after)))
    return ImageResponse(error.status, tuple(headers), body)


@functools.lru_cache(maxsize=4096)
def content_disposition(filename: str, extension: str) -> str:
    """`inline` with the stored name, its extension matched to what is actually sent."""
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    name = f"{stem or 'image'}.{extension}"
    ascii_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return f"inline; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
