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

# Request headers are arbitrary latin-1 text: only RFC 9110's ASCII grammar is parsed, and
# only up to these lengths (anything longer is not a value this server could act on).
OWS = " \t"
MAX_DATE = 64
MAX_RANGE = 256
# A byte position past any representation this server sends: a longer number means the same,
# and int() never sees thousands of digits (it raises past 4300).
HUGE = 10**18


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
    """An HTTP-date (RFC 9110 §5.6.7) -> a timestamp; None for anything else. An HTTP-date is
    ASCII and about 30 characters: longer or non-ASCII text is not parsed at all."""
    if len(value) > MAX_DATE or not value.isascii():
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None


def _opaque(tag: str) -> str:
    """Weak comparison (RFC 9110 §8.8.3.2) ignores the W/ prefix."""
    tag = tag.strip(OWS)
    return tag[2:] if tag.startswith("W/") else tag


def etag_matches(if_none_match: str, etag: str) -> bool:
    if if_none_match.strip(OWS) == "*":
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
    (no header, a failed If-Range, several ranges, or a syntax we ignore, RFC 9110 §14.2).
    Raises RangeNotSatisfiable (416) only for a valid range outside the representation."""
    if header is None or len(header) > MAX_RANGE:
        return None
    if not _if_range_holds(if_range, etag, last_modified):
        return None
    unit, equals, spec = header.partition("=")
    if not equals or unit.strip(OWS).lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip(OWS).partition("-")
    start, end = _position(first), _position(last)
    if not dash or (start is None and first) or (end is None and last):
        return None
    if start is None:  # suffix range: the last N bytes
        if end is None:
            return None
        if end == 0 or size == 0:
            raise RangeNotSatisfiable
        return ByteRange(max(0, size - end), size - 1)
    if end is not None and end < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable
    return ByteRange(start, size - 1 if end is None else min(end, size - 1))


def _position(text: str) -> int | None:
    """RFC 9110 `1*DIGIT`: ASCII digits only (str.isdigit admits '²', and int()
    reads Arabic-Indic digits), capped at HUGE."""
    if not text or not (text.isascii() and text.isdigit()):
        return None
    significant = text.lstrip("0")
    return int(significant or "0") if len(significant) < 19 else HUGE


def _if_range_holds(if_range: str | None, etag: str, last_modified: float | None) -> bool:
    if if_range is None:
        return True
    value = if_range.strip(OWS)
    if value.startswith('"'):
        return value == etag  # If-Range uses strong comparison
    since = parse_http_date(value)
    return since is not None and last_modified is not None and int(last_modified) == since


def validator_headers(
    etag: str, control: str, key: str, modified: float | None, vary: list[str]
) -> list[tuple[str, str]]:
    """The headers a 304 repeats (RFC 9110 §15.4.5): the validators, caching, the surrogate
    key, and Vary naming what the answer depends on besides the URL."""
    return [
        ("etag", etag),
        ("cache-control", control),
        ("surrogate-key", key),
        *([("last-modified", http_date(modified))] if modified is not None else []),
        *([("vary", ", ".join(vary))] if vary else []),
    ]
