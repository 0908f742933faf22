"""Outcomes -> ImageResponse values: image headers (SPEC §5), 304s and JSON errors."""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import quote

from imgproxy.cache import READY_HEADER_CHARS, READY_PER_RENDITION, Headers, Rendition
from imgproxy.conditional import NOT_MODIFIED_HEADERS, ByteRange, RangeNotSatisfiable, parse_range
from imgproxy.errors import ImageProxyError, MethodNotAllowed, Overloaded
from imgproxy.messages import ImageResponse

SECURITY_HEADERS = (
    ("x-content-type-options", "nosniff"),
    ("content-security-policy", "default-src 'none'; sandbox"),
)


def image_response(status: int, body: bytes, headers: tuple[tuple[str, str], ...]) -> ImageResponse:
    """`headers` are a Variant's, security headers included (fixed once per variant)."""
    return ImageResponse(status, (*headers, ("content-length", str(len(body)))), body)


def ready_response(found: Rendition, status: int, headers: Headers) -> ImageResponse:
    """The 200 (or placeholder 404) of `found` for one Variant, built once and kept on the
    rendition itself (SPEC §11): a memory hit then builds no header list. Keyed by the
    Variant's own header tuple, so a URL never gets another's Vary or Cache-Control (SPEC
    §6); kept on the rendition, so it lives exactly as long as the memory tier keeps the
    body (SPEC §11.1)."""
    kept = found.responses.get(id(headers))
    if kept is not None and kept[0] is headers and kept[1].status == status:
        return kept[1]
    response = image_response(status, found.body, headers)
    if sum(len(name) + len(value) for name, value in headers) > READY_HEADER_CHARS:
        return response  # heavier than the tier counts a kept response (memory.py)
    if len(found.responses) >= READY_PER_RENDITION:
        found.responses.clear()
    found.responses[id(headers)] = (headers, response)
    return response


def original_response(
    status: int,
    size: int,
    headers: tuple[tuple[str, str], ...],
    *,
    range_header: str | None,
    if_range: str | None,
    etag: str,
    last_modified: float | None,
) -> tuple[ImageResponse, ByteRange | None]:
    """An original's head from its size, whole (200), in part (206) or refused (416): one
    `Range` (SPEC §5); a placeholder's 404 is whole. With the bytes it needs (none for a
    416), which are streamed."""
    whole = ByteRange(0, size - 1)
    if status != 200:
        return ImageResponse(status, (*headers, ("content-length", str(size)))), whole
    try:
        wanted = parse_range(
            range_header, size, if_range=if_range, etag=etag, last_modified=last_modified
        )
    except RangeNotSatisfiable:
        return image_response(416, b"", (("content-range", f"bytes */{size}"), *headers)), None
    if wanted is None:
        return ImageResponse(200, (*headers, ("content-length", str(size)))), whole
    content_range = ("content-range", wanted.content_range(size))
    length = ("content-length", str(wanted.end - wanted.start + 1))
    return ImageResponse(206, (*headers, content_range, length)), wanted


def accel_response(
    status: int, headers: tuple[tuple[str, str], ...], location: str
) -> ImageResponse:
    """A disk hit for nginx to send (X-Accel-Redirect): only after every check was made, so
    nginx only ever sends what the server would have sent."""
    return ImageResponse(
        status, (*headers, ("x-accel-redirect", location), ("content-length", "0"))
    )


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


def content_disposition(filename: str, extension: str) -> str:
    """`inline` with the stored name, its extension matched to what is actually sent. Made
    once a Variant, which the variants' memo weighs with it: no cache of its own (one of
    4096 names counted but not weighed held 16 MB with an http store's 2,000-character names)."""
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    name = f"{stem or 'image'}.{extension}"
    # ASCII only: str.isalnum() admits every script, and a header value is latin-1 at most.
    ascii_name = "".join(c if (c.isascii() and c.isalnum()) or c in "._-" else "_" for c in name)
    # A name that is not UTF-8 on disk (surrogate escapes) must not fail the response.
    encoded = quote(name, safe="", errors="replace")
    return f"inline; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}"
