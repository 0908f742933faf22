"""WSGI edge: wraps a WSGI app (Django, Flask) so requests under `prefix` are answered by
the same pipeline as the ASGI app, run in one event loop on one background thread.

The core takes and returns plain values, so this edge only translates environ ->
ImageRequest and ImageResponse -> start_response, with one thread hop per request. (A
generic ASGI->WSGI bridge, a2wsgi, measured 14.5x the ASGI path's cost per cache hit here;
see benchmarks/README.md.)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from imgproxy import pipeline
from imgproxy.asgi import PATH_SAFE, SEND_PIECE, ImageProxy
from imgproxy.forks import after_fork
from imgproxy.messages import ImageRequest, ImageResponse

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

# The request headers the core reads, and the access line's user agent, by their WSGI names.
WANTED = {
    "HTTP_ACCEPT": "accept",
    "HTTP_IF_NONE_MATCH": "if-none-match",
    "HTTP_IF_MODIFIED_SINCE": "if-modified-since",
    "HTTP_RANGE": "range",
    "HTTP_IF_RANGE": "if-range",
    "HTTP_X_IMGPROXY_ACCEL": "x-imgproxy-accel",
    "HTTP_USER_AGENT": "user-agent",
    "HTTP_SEC_CH_DPR": "sec-ch-dpr",
    "HTTP_DPR": "dpr",
    "HTTP_SEC_CH_WIDTH": "sec-ch-width",
    "HTTP_WIDTH": "width",
}


class ImageProxyMiddleware:
    def __init__(self, app: WSGIApp, proxy: ImageProxy, *, prefix: str = "/media") -> None:
        self.app = app
        self.services = proxy.services
        self._whole = proxy.services.authorize is not None  # see asgi.ImageProxy
        self.prefix = "/" + prefix.strip("/")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting = threading.Lock()
        # A loop thread does not survive fork (gunicorn --preload builds the app in the
        # master): each process starts its own, on its first image request.
        after_fork(self._forget_loop)

    def _forget_loop(self) -> None:
        self._loop = None
        self._starting = threading.Lock()  # a lock held at fork time stays held in the child

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            with self._starting:
                loop = self._loop
                if loop is None:
                    loop = asyncio.new_event_loop()
                    threading.Thread(
                        target=loop.run_forever, name="imgproxy-wsgi-loop", daemon=True
                    ).start()
                    self._loop = loop
        return loop

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if not path.startswith(self.prefix + "/"):  # a path-segment boundary: not /mediax
            return self.app(environ, start_response)
        whole = self._whole
        request = ImageRequest(
            method=environ["REQUEST_METHOD"],
            path=_encoded_path(environ, self.prefix),
            query=environ.get("QUERY_STRING", ""),
            headers=_all_headers(environ) if whole else _headers(environ),
            client=_client(environ),
            native=environ if whole else None,
        )
        future = asyncio.run_coroutine_threadsafe(self._answer(request), self.loop)
        response, counted = future.result()
        status = HTTPStatus(response.status)
        try:
            start_response(f"{status.value} {status.phrase}", list(response.headers))
        except BaseException:  # no body is returned, so no close() will give the count back
            if counted is not None:
                self.loop.call_soon_threadsafe(counted.close)
            raise
        if response.rest is not None:
            return _Streamed(response.body, response.rest, self.loop)
        if counted is not None:
            return _Counted(response.body, counted, self.loop)
        return [b""] if request.method == "HEAD" else [response.body]

    async def _answer(
        self, request: ImageRequest
    ) -> tuple[ImageResponse, contextlib.ExitStack | None]:
        """The response, and for a body that may outlast a slow client's reads, its count in
        the in-flight budget, taken on the loop (the executor is the loop's), as under ASGI."""
        response = await pipeline.serve(self.services, request)
        body = response.body
        if len(body) <= SEND_PIECE or response.rest is not None or request.method == "HEAD":
            return response, None
        counted = contextlib.ExitStack()
        counted.enter_context(self.services.executor.sending(body))
        return response, counted


class _Counted:
    """A large body, counted in the in-flight budget until the server closes it (PEP 3333:
    however the sending ends): a server thread writing to a client that never reads holds
    its bytes inside the budget, and renders wait for them (SPEC §11.1)."""

    def __init__(
        self, body: bytes, counted: contextlib.ExitStack, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._body = body
        self._counted = counted
        self._loop = loop

    def __iter__(self) -> Iterator[bytes]:
        yield self._body

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._counted.close)


class _Streamed:
    """A streamed original's body for the WSGI server, each piece fetched from the loop once
    the server has written the last; `close()` (PEP 3333) ends the stream however it ends."""

    def __init__(
        self, first: bytes, rest: AsyncGenerator[bytes], loop: asyncio.AbstractEventLoop
    ) -> None:
        self._first = first
        self._rest = rest
        self._loop = loop

    def __iter__(self) -> Iterator[bytes]:
        yield self._first
        while True:
            piece = asyncio.run_coroutine_threadsafe(anext(self._rest, None), self._loop)
            chunk = piece.result()
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._rest.aclose(), self._loop).result()


def _headers(environ: Environ) -> dict[str, str]:
    return {name: environ[key] for key, name in WANTED.items() if key in environ}


def _all_headers(environ: Environ) -> dict[str, str]:
    """WSGI's HTTP_* keys (and the two it keeps apart) as lower-case header names."""
    found = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            found[key.replace("_", "-").lower()] = environ[key]
    return found


def _client(environ: Environ) -> tuple[str, int] | None:
    host = environ.get("REMOTE_ADDR")
    port = environ.get("REMOTE_PORT")
    if not host:
        return None
    return (host, int(port)) if port and str(port).isdigit() else (host, 0)


def _encoded_path(environ: Environ, prefix: str) -> str:
    """The path after the prefix as sent (signatures are over it): from the raw URI when the
    server kept one (gunicorn's RAW_URI, uWSGI's REQUEST_URI), else canonically encoded.
    WSGI hands PATH_INFO over as latin-1 decoded bytes."""
    raw = _origin_form(environ.get("RAW_URI") or environ.get("REQUEST_URI") or "")
    if raw:
        mounted = environ.get("SCRIPT_NAME", "").rstrip("/").count("/") + prefix.count("/")
        return "/" + "/".join(raw.split("/")[mounted + 1 :])
    path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
    return quote(path[len(prefix) :], safe=PATH_SAFE)


def _origin_form(target: str) -> str:
    """The path of a request target as sent, without its query. An absolute-form target
    (`GET http://pics/media/x.png`, which servers must accept: RFC 9112 §3.2.2) keeps it
    whole in the raw URI, where PATH_INFO has only its path: its scheme and host are
    dropped, so the path alone picks the store, as under ASGI. Anything else ("" when the
    server kept no raw URI): "", and PATH_INFO is used."""
    target = target.partition("?")[0]
    if target.startswith("/"):
        return target
    _, sep, rest = target.partition("://")
    return "/" + rest.partition("/")[2] if sep else ""
