"""URLs for the `http` store, parsed and checked once by httpx, the parser that sends the
request: a host that is a valid DNS name or IP literal, a port in range, http(s) only. What
is wrong with a URL is a ValueError here, a 400 for a URL a caller asked for, and a 502 for
a redirect's Location, so nothing httpx or IDNA raises becomes a 500."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urljoin

import httpx

from imgproxy.errors import (
    BadRequest,
    UpstreamError,
)

# A DNS label as resolvers take it (underscores occur in real host names).
LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?", re.IGNORECASE)


def parse_url(text: str) -> httpx.URL:
    """`text` as an http(s) URL whose host is a valid DNS name or IP address and whose port
    is in range; else a ValueError saying what it is. Parsed by httpx, the parser that sends
    the request, so the checked URL is the one connected to."""
    try:
        url = httpx.URL(text)
        url.host  # noqa: B018 - decodes an xn-- label: bad Punycode raises here, not later
    except (httpx.InvalidURL, ValueError):  # idna's errors are UnicodeErrors: ValueErrors
        raise ValueError("an invalid URL") from None
    if url.scheme not in ("http", "https"):
        raise ValueError("a non-HTTP URL")
    if not valid_host(url.raw_host.decode("ascii", "replace")):
        raise ValueError("a URL without a valid host")
    if url.port is not None and not 0 < url.port < 65536:
        raise ValueError("a URL with an invalid port")
    return url


def requested_url(text: str) -> httpx.URL:
    """`parse_url` for a URL a caller asked for: what is wrong with it is a 400."""
    try:
        return parse_url(text)
    except ValueError as exc:
        raise BadRequest(f"url: is {exc}") from None


def valid_host(host: str) -> bool:
    """An IP literal, or a name of 1-63 character labels and at most 253 characters."""
    if ":" in host:  # httpx leaves an IPv6 literal without its brackets
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    name = host[:-1] if host.endswith(".") else host
    return 0 < len(name) <= 253 and all(LABEL.fullmatch(label) for label in name.split("."))


def redirect_url(current: httpx.URL, location: str) -> httpx.URL:
    """The next hop, or an UpstreamError: a hostile Location must never become a 500."""
    try:
        return parse_url(urljoin(str(current), location))
    except ValueError as exc:  # urljoin raises one too, for a bad IPv6 literal
        raise UpstreamError(f"the origin sent a redirect to {exc}") from None
