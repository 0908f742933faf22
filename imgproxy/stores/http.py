"""A remote origin -> StoredFile metadata (a HEAD: the origin's ETag/Last-Modified is the
version, so revalidating never downloads the body), a head (a ranged GET: a new photo's
facts are learned from its first 64 KiB) and the body, streamed.

Every hop, redirects included, is checked before connecting: scheme, `allowed_hosts`, and
each resolved address against the SSRF policy; the connection then goes to the address
that was checked (Host header and TLS SNI keep the name), so DNS cannot answer differently
in between. At most 3 redirects; a total deadline bounds a slow-drip origin.

A timeout is a 504; any other failure of the connection (refused, reset, a broken HTTP
answer) is a 502 at once, never a wait for the deadline. Every URL, a redirect's included,
is parsed and checked once (`parse_url`), so nothing httpx or IDNA raises becomes a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import ipaddress
import re
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote, urljoin

import httpx

from imgproxy.conditional import parse_http_date
from imgproxy.errors import (
    BadRequest,
    ImageProxyError,
    NotFound,
    TooLarge,
    UpstreamError,
    UpstreamTimeout,
)
from imgproxy.store_options import HttpOptions
from imgproxy.stores.addresses import AddressPolicy
from imgproxy.stores.base import StoredFile, first_bytes

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 3
# A head's answer when the origin honours its Range: from 0, and the whole length.
CONTENT_RANGE = re.compile(r"bytes 0-[0-9]{1,18}/([0-9]{1,18}|\*)", re.IGNORECASE)
MAX_PATH = 2000
PATH_SAFE = "/:@!$&'()*+,;=-._~"
# Images are compressed already: asking for the bytes as stored means nothing is inflated
# behind the byte limits' back (a body with a Content-Encoding is refused).
HEADERS = {"user-agent": "imgproxy", "accept-encoding": "identity"}
# A DNS label as resolvers take it (underscores occur in real host names).
LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?", re.IGNORECASE)


class HTTPStore:
    def __init__(
        self,
        base_url: str,
        *,
        approved: bool = False,
        timeout: float = 5.0,
        connect_timeout: float = 2.0,
        allowed_hosts: tuple[str, ...] = (),
        addresses: AddressPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.approved = approved
        self.timeout = timeout  # total, per stat and per body read
        self.allowed_hosts = tuple(host.lower() for host in allowed_hosts)
        self.addresses = addresses or AddressPolicy()
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(connect_timeout, timeout)),
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment may bypass the address checks
            headers=HEADERS,
            transport=transport,  # a test seam (httpx.MockTransport); None: real connections
        )

    @classmethod
    def from_settings(
        cls, options: HttpOptions, *, name: str, approved: bool, base_dir: Path
    ) -> HTTPStore:
        """Types and ranges are the settings' job; nothing here needs the network."""
        addresses = AddressPolicy(
            allow_private=options.allow_private_networks, allowed=options.allowed_networks
        )
        return cls(
            options.base_url,
            approved=approved,
            timeout=options.timeout,
            connect_timeout=options.connect_timeout,
            allowed_hosts=options.allowed_hosts,
            addresses=addresses,
        )

    def url_for(self, path: str) -> str:
        if len(path) > MAX_PATH:
            raise BadRequest("path: too long for the origin")
        if any(part in ("", ".", "..") for part in path.split("/")):
            raise BadRequest("path: empty, '.' and '..' segments are not allowed")
        return self.base_url + quote(path, safe=PATH_SAFE)

    async def stat(self, path: str) -> StoredFile:
        url = self._own_url(path)
        try:
            async with asyncio.timeout(self.timeout):
                response, final = await self._send("HEAD", url)
                if response.status_code in (405, 501):  # no HEAD: headers of a GET, no body
                    await response.aclose()
                    response, final = await self._send("GET", url)
                await response.aclose()
        except (TimeoutError, httpx.HTTPError, OSError) as exc:
            raise _failed("cannot reach the origin", exc) from None
        _raise_for_status(response)
        return _stored_file(path, response, final, self.approved)

    async def head(self, file: StoredFile, size: int) -> bytes:
        """The first `size` bytes of the version `stat` saw: a GET with a Range, so a new
        photo's facts are learned without its whole body, which its render then reads once.
        An origin that ignores the range answers 200: its first `size` bytes are read and
        the connection dropped. A 416 ("nothing in range") is true of an empty body only:
        from an origin whose ranges are broken, the head comes from a plain GET."""
        if size <= 0:
            return b""  # an empty range is not a range
        ranged = await self._first(file, size, {"range": f"bytes=0-{size - 1}"})
        return ranged or await self._first(file, size, None)

    async def _first(self, file: StoredFile, size: int, headers: dict[str, str] | None) -> bytes:
        chunks = self._get(self._own_url(file.path), _same_version(file), headers)
        return await first_bytes(chunks, size)

    async def open(self, file: StoredFile) -> AsyncIterator[bytes]:
        async for chunk in self._get(self._own_url(file.path), _same_version(file)):
            yield chunk

    async def download(self, url: str, *, limit: int) -> tuple[bytes, str]:
        """A whole absolute URL under the same rules (every hop checked, the deadline), cut
        with a 413 as soon as it passes `limit` bytes; the body and the final URL. Any
        string that is not an http(s) URL with a valid host and port is a 400."""
        target = requested_url(url)
        finals: list[str] = []
        parts: list[bytes] = []
        size = 0
        async for chunk in self._get(target, lambda response, final: finals.append(final)):
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"the image is larger than {limit} bytes")
        return b"".join(parts), finals[0]

    def _own_url(self, path: str) -> httpx.URL:
        try:
            return parse_url(self.url_for(path))
        except ValueError as exc:  # only a base_url the config let through can get here
            raise UpstreamError(f"the store's base_url is {exc}") from None

    async def _get(
        self,
        url: httpx.URL,
        check: Callable[[httpx.Response, str], None],
        headers: Mapping[str, str] | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """A GET's body as sent; `check` sees the answer and its final URL before any body."""
        # The deadline wraps each await, never a `yield`: the consumer's own code between
        # chunks must not be what a timeout cancels.
        deadline = asyncio.get_running_loop().time() + self.timeout
        response = None
        try:
            async with asyncio.timeout_at(deadline):
                response, final = await self._send("GET", url, headers)
            if response.status_code == 416 and headers and "range" in headers:
                return  # a head of an empty body: nothing in range
            _raise_for_status(response)
            check(response, final)
            coding = response.headers.get("content-encoding", "").strip().lower()
            if coding not in ("", "identity"):
                raise UpstreamError(f"the origin sent an encoded body ({coding[:40]!r})")
            chunks = response.aiter_bytes()  # no Content-Encoding: the bytes as sent
            while True:
                async with asyncio.timeout_at(deadline):
                    chunk = await anext(chunks, None)
                if chunk is None:
                    return
                yield chunk
        except TimeoutError:
            detail = f"the origin did not send the image within {self.timeout:g}s"
            raise UpstreamTimeout(detail) from None
        except (httpx.HTTPError, OSError) as exc:
            raise _failed("the origin failed", exc) from None
        finally:
            if response is not None:
                with contextlib.suppress(httpx.HTTPError, OSError):  # never hide the cause
                    await response.aclose()

    async def _send(
        self, method: str, target: httpx.URL, headers: Mapping[str, str] | None = None
    ) -> tuple[httpx.Response, str]:
        """One request, redirects followed by hand with every hop checked first."""
        for _ in range(MAX_REDIRECTS + 1):
            request = await self._pinned(method, target, headers)
            try:
                response = await self.client.send(request, stream=True)
            except (httpx.HTTPError, OSError) as exc:
                raise _failed("cannot reach the origin", exc) from None
            except AttributeError:
                # A reset just after connecting: under uvloop anyio reads the peer name of a
                # socket already gone (None.getpeername) while httpcore sets the stream up.
                raise UpstreamError("cannot reach the origin (connection reset)") from None
            except (httpx.InvalidURL, ValueError):
                # httpx parses a Location even when it does not follow it, and decodes its
                # host: bad Punycode (`http://xn--/x`) raises idna's error, a ValueError.
                raise UpstreamError("the origin sent an invalid redirect URL") from None
            location = response.headers.get("location")
            if response.status_code not in REDIRECTS or not location:
                return response, str(target)
            await response.aclose()
            target = _redirect_url(target, location)
        raise UpstreamError(f"the origin redirected more than {MAX_REDIRECTS} times")

    async def _pinned(
        self, method: str, target: httpx.URL, extra: Mapping[str, str] | None = None
    ) -> httpx.Request:
        """`target` came through `parse_url`: its host and port are valid."""
        host = target.host.lower().rstrip(".")
        if self.allowed_hosts and not any(fnmatch.fnmatch(host, g) for g in self.allowed_hosts):
            raise UpstreamError(f"the host {host!r} is not in allowed_hosts")
        port = target.port or (443 if target.scheme == "https" else 80)
        # The name as sent (IDNA 2008 by httpx) is the name resolved: Python's idna codec
        # (IDNA 2003) maps some names elsewhere ("faß" -> "fass").
        address = await self._resolve(target.raw_host.decode("ascii"), port)
        headers = {"host": target.netloc.decode("ascii"), **(extra or {})}
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        return self.client.build_request(
            method, target.copy_with(host=address), headers=headers, extensions=extensions
        )

    async def _resolve(self, host: str, port: int) -> str:
        """Every address the name resolves to must be allowed (a mixed answer is how DNS
        rebinding slips a private address in); the first is the one connected to."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except (OSError, UnicodeError):
            raise UpstreamError(f"cannot resolve the origin's host {host!r}") from None
        addresses = [str(info[4][0]) for info in infos]
        if not addresses or not all(self.addresses.permits(a) for a in addresses):
            raise UpstreamError("the origin resolves to an address this server may not contact")
        return addresses[0]

    async def close(self) -> None:
        await self.client.aclose()


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
    if not _valid_host(url.raw_host.decode("ascii", "replace")):
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


def _valid_host(host: str) -> bool:
    """An IP literal, or a name of 1-63 character labels and at most 253 characters."""
    if ":" in host:  # httpx leaves an IPv6 literal without its brackets
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    name = host[:-1] if host.endswith(".") else host
    return 0 < len(name) <= 253 and all(LABEL.fullmatch(label) for label in name.split("."))


def _redirect_url(current: httpx.URL, location: str) -> httpx.URL:
    """The next hop, or an UpstreamError: a hostile Location must never become a 500."""
    try:
        return parse_url(urljoin(str(current), location))
    except ValueError as exc:  # urljoin raises one too, for a bad IPv6 literal
        raise UpstreamError(f"the origin sent a redirect to {exc}") from None


def _failed(what: str, exc: Exception) -> ImageProxyError:
    """A timeout (the deadline, or httpx's connect/read/pool ones) is a 504; anything else
    the connection does (refused, reset, a malformed answer) is a 502 at once."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return UpstreamTimeout("the origin did not answer in time")
    return UpstreamError(f"{what} ({type(exc).__name__})")


def _raise_for_status(response: httpx.Response) -> None:
    status = response.status_code
    if status in (404, 410):
        raise NotFound("the origin has no such image")
    if status == 414:
        raise BadRequest("path: too long for the origin")
    if not 200 <= status < 300:
        raise UpstreamError(f"the origin answered {status}")


def _stored_file(path: str, response: httpx.Response, final: str, approved: bool) -> StoredFile:
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


def _same_version(file: StoredFile) -> Callable[[httpx.Response, str], None]:
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
