"""HTTP caching semantics as pure functions: ETags, dates, 304 decisions, Range (RFC 9110)."""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime

# RFC 9110 §15.4.5: a 304 carries the fields a 200 would have had among these (Date is the
# server's). Last-Modified is added because SPEC §5 asks for it and it costs nothing.
NOT_MODIFIED_HEADERS = frozenset(
    {"cache-control", "content-location", "etag", "expires", "last-modified", "vary"}
)

IMMUTABLE = "public, max-age=31536000, immutable"


@functools.lru_cache(maxsize=4096)
def surrogate_key(store: str, path: str) -> str:
    """A stable, header-safe id of one source, shared by all its renditions (SPEC §6)."""
    return make_etag(store, path).strip('"')


def make_etag(*parts: str) -> str:
    """A strong, quoted validator from the parts that determine the bytes."""
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=18).digest()
    return '"' + base64.urlsafe_b64encode(digest).decode() + '"'


@functools.lru_cache(maxsize=4096)
def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


def parse_http_date(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _opaque(tag: str) -> str:
    """Weak comparison (RFC 9110 §8.8.3.2) ignores the W/ prefix."""
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def etag_matches(if_none_match: str, etag: str) -> bool:
    if if_none_match.strip() == "*":
        return True
    wanted = _opaque(etag)
    return any(_opaque(tag) == wanted for tag in if_none_match.split(","))


def is_not_modified(
    *,
    etag: str,
    last_modified: float | None,
    if_none_match: str | None,
    if_modified_since: str | None,
) -> bool:
    """RFC 9110 §13.2.2: If-None-Match decides alone when present; If-Modified-Since only
    without it (Starlette's StaticFiles gets this wrong)."""
    if if_none_match is not None:
        return etag_matches(if_none_match, etag)
    if if_modified_since is None or last_modified is None:
        return False
    since = parse_http_date(if_modified_since)
    # HTTP dates have whole seconds: compare at that resolution.
    return since is not None and int(last_modified) <= since


def cache_control(default: str, *, immutable: bool) -> str:
    return IMMUTABLE if immutable else default


class RangeNotSatisfiable(Exception):
    pass


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(
    header: str | None, size: int, *, if_range: str | None, etag: str, last_modified: float | None
) -> ByteRange | None:
    """One `bytes=` range -> ByteRange; None means "send the whole representation"
    (no header, a failed If-Range, several ranges, or a syntax we ignore, RFC 9110 §14.2)."""
    if header is None or not _if_range_holds(if_range, etag, last_modified):
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()):
        return None
    if not first:  # suffix range: the last N bytes
        if not last.isdigit() or int(last) == 0 or size == 0:
            raise RangeNotSatisfiable
        return ByteRange(max(0, size - int(last)), size - 1)
    if not first.isdigit() or (last and not last.isdigit()):
        return None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable
    return ByteRange(start, end)


def _if_range_holds(if_range: str | None, etag: str, last_modified: float | None) -> bool:
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith('"'):
        return value == etag  # If-Range uses strong comparison
    since = parse_http_date(value)
    return since is not None and last_modified is not None and int(last_modified) == since
