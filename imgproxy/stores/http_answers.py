"""An origin's answers, read for the `http` store: the status as an error, the headers as a
StoredFile whose version is the origin's validator (an ETag, else Last-Modified), and
whether a GET answered the version its HEAD did. A connection's failure is a 504 when it is
a timeout, else a 502 at once."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import PurePosixPath
from urllib.parse import unquote

import httpx

from imgproxy.conditional import parse_http_date
from imgproxy.errors import (
    BadRequest,
    ImageProxyError,
    NotFound,
    UpstreamError,
    UpstreamTimeout,
)
from imgproxy.stores.base import StoredFile

# A head's answer when the origin honours its Range: from 0, and the whole length.
CONTENT_RANGE = re.compile(r"bytes 0-[0-9]{1,18}/([0-9]{1,18}|\*)", re.IGNORECASE)


def failed(what: str, exc: Exception) -> ImageProxyError:
    """A timeout (the deadline, or httpx's connect/read/pool ones) is a 504; anything else
    the connection does (refused, reset, a malformed answer) is a 502 at once."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return UpstreamTimeout("the origin did not answer in time")
    return UpstreamError(f"{what} ({type(exc).__name__})")


def raise_for_status(response: httpx.Response) -> None:
    status = response.status_code
    if status in (404, 410):
        raise NotFound("the origin has no such image")
    if status == 414:
        raise BadRequest("path: too long for the origin")
    if not 200 <= status < 300:
        raise UpstreamError(f"the origin answered {status}")


def stored_file(path: str, response: httpx.Response, final: str, approved: bool) -> StoredFile:
    headers = response.headers
    # No image has 0 bytes: a HEAD that says so was answered without a body by a framework
    # (Starlette's streaming answers do), and knows nothing of the GET's length.
    size = _length(headers) or None
    modified = parse_http_date(headers.get("last-modified", ""))
    etag = _opaque(headers)
    if etag:
        version = "etag:" + etag
    elif modified is not None:
        version = f"lm:{modified!r}:{size}"
    else:
        # No validator at all: versions roll over hourly so a changed image is picked up.
        version = f"none:{size}:{int(time.time() // 3600)}"
    filename = unquote(PurePosixPath(httpx.URL(final).path).name) or path.rsplit("/", 1)[-1]
    return StoredFile(path, version, approved, size, modified, filename)


def _opaque(headers: httpx.Headers) -> str | None:
    """The ETag's opaque tag: `W/` dropped, since a front that compresses weakens it (nginx
    does) and a HEAD may carry another strength than its GET (RFC 9110 weak comparison)."""
    etag = headers.get("etag", "").strip()
    return etag.removeprefix("W/") or None


def same_version(file: StoredFile) -> Callable[[httpx.Response, str], None]:
    def check(response: httpx.Response, final: str) -> None:
        if _changed(file, response):
            raise UpstreamError("the origin's image changed during the request")

    return check


def _changed(file: StoredFile, response: httpx.Response) -> bool:
    """Whether a GET answered another version than the HEAD `file` came from, judged only
    on what both answers say: origins frame them differently (a chunked GET, a HEAD without
    a length, an ETag on one method only or weakened by a front), and framing is no change.
    The ETag decides when both have one; else Last-Modified and the lengths both give. A
    206's range is checked first, whatever its ETag: bytes from elsewhere in the very same
    version (an EXIF thumbnail's) are not its head."""
    headers = response.headers
    size = _length(headers) if response.status_code != 206 else _whole(headers)
    etag = _opaque(headers)
    if etag is not None and file.version.startswith("etag:"):
        return etag != file.version.removeprefix("etag:")
    modified = parse_http_date(headers.get("last-modified", ""))
    if modified is not None and file.modified is not None and modified != file.modified:
        return True
    return size is not None and file.size is not None and size != file.size


def _whole(headers: httpx.Headers) -> int | None:
    """A 206's whole length, from `Content-Range: bytes 0-65535/732124`; a range that does
    not start at 0 is refused (a head is asked from 0)."""
    found = CONTENT_RANGE.fullmatch(headers.get("content-range", "").strip())
    if found is None:
        raise UpstreamError("the origin sent a partial answer without a valid Content-Range")
    return int(found[1]) if found[1] != "*" else None


def _length(headers: httpx.Headers) -> int | None:
    length = headers.get("content-length", "")
    # ASCII digits only ('²'.isdigit() is True), and few enough for int().
    return int(length) if length.isascii() and length.isdigit() and len(length) < 19 else None
