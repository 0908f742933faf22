"""A remote origin -> StoredFile metadata (a HEAD: the origin's ETag/Last-Modified is the
version, so revalidating never downloads the body), a head (a ranged GET: a new photo's
facts are learned from its first 64 KiB) and the body, streamed.

Every hop, redirects included, is checked before connecting: scheme, `allowed_hosts`, and
each resolved address against the SSRF policy; the connection then goes to the address
that was checked (Host header and TLS SNI keep the name), so DNS cannot answer differently
in between. At most 3 redirects; a total deadline bounds a slow-drip origin.

A timeout is a 504; any other failure of the connection (refused, reset, a broken HTTP
answer) is a 502 at once, never a wait for the deadline (http_answers.py). Every URL, a
redirect's included, is parsed and checked once (http_urls.py), so nothing httpx or IDNA
raises becomes a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from pathlib import Path
from urllib.parse import quote

import httpx

from imgproxy.errors import (
    BadRequest,
    TooLarge,
    UpstreamError,
    UpstreamTimeout,
)
from imgproxy.store_options import HttpOptions
from imgproxy.stores.addresses import AddressPolicy
from imgproxy.stores.base import StoredFile, first_bytes
from imgproxy.stores.http_answers import failed, raise_for_status, same_version, stored_file
from imgproxy.stores.http_urls import parse_url, redirect_url, requested_url

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 3
MAX_PATH = 2000
PATH_SAFE = "/:@!$&'()*+,;=-._~"
# Images are compressed already: asking for the bytes as stored means nothing is inflated
# behind the byte limits' back (a body with a Content-Encoding is refused).
HEADERS = {"user-agent": "imgproxy", "accept-encoding": "identity"}


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
            raise failed("cannot reach the origin", exc) from None
        raise_for_status(response)
        return stored_file(path, response, final, self.approved)

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
        chunks = self._get(self._own_url(file.path), same_version(file), headers)
        return await first_bytes(chunks, size)

    async def open(self, file: StoredFile) -> AsyncIterator[bytes]:
        async for chunk in self._get(self._own_url(file.path), same_version(file)):
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
            raise_for_status(response)
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
            raise failed("the origin failed", exc) from None
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
                raise failed("cannot reach the origin", exc) from None
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
            target = redirect_url(target, location)
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
