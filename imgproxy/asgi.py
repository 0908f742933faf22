"""ASGI edge: scope -> ImageRequest, ImageResponse -> ASGI messages. Nothing else.

`ImageProxy` is mountable anywhere (Starlette/FastAPI `mount`, or as a whole app); its paths
and signatures are relative to the mount point (`root_path`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote, unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from imgproxy import maintenance, pipeline
from imgproxy.messages import ImageRequest, ImageResponse
from imgproxy.services import Authorize, Services
from imgproxy.settings import Settings
from imgproxy.stores import Store

PATH_SAFE = "/:@!$&'()*+,;=-._~"

# Where `imgproxy serve` notes when it had a request's whole head (connections.py): a hit
# may then share a stat begun after that (pipeline.py).
ARRIVED = "imgproxy.arrived"

# The request headers the core reads, and the access line's user agent; everything else is
# never decoded.
WANTED_HEADERS = frozenset(
    {
        b"accept",
        b"if-none-match",
        b"if-modified-since",
        b"range",
        b"if-range",
        b"x-imgproxy-accel",
        b"user-agent",
        b"sec-ch-dpr",  # client hints (hints.py), read only with server.client_hints
        b"dpr",
        b"sec-ch-width",
        b"width",
    }
)


class ImageProxy:
    def __init__(
        self,
        settings: Settings,
        *,
        stores: dict[str, Store] | None = None,
        authorize: Authorize | None = None,
    ) -> None:
        self.settings = settings
        self.services = Services.build(settings, stores=stores, authorize=authorize)
        # The authorize hook sees every header and Starlette's Request; without one, the
        # hit path decodes only the headers the core reads, and starlette.requests is never
        # loaded (2.4 MiB a worker).
        self._whole = authorize is not None
        self._native: Callable[[Scope, Receive], Any] | None = None
        if authorize is not None:
            from starlette.requests import Request

            self._native = Request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self.close)
            return
        if scope["type"] != "http":
            return
        whole = self._whole
        request = ImageRequest(
            method=scope["method"],
            path=route_path(scope),
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=_all_headers(scope) if whole else _headers(scope),
            # Without a hook only the access line reads it: the server's own pair, as is
            # (converting it costs 0.3 µs, 2% of a memory hit).
            client=_client(scope) if whole else scope.get("client"),
            native=self._native(scope, receive) if self._native is not None else None,
        )
        response = await pipeline.serve(self.services, request, arrived=scope.get(ARRIVED))
        head = scope["method"] == "HEAD"
        # A body that may outlast a slow client's reads (a streamed original's pieces are
        # counted as it streams them).
        if len(response.body) > SEND_PIECE and not head and response.rest is None:
            with self.services.executor.sending(response.body):
                await send_response(response, send, head=head)
        else:
            await send_response(response, send, head=head)

    async def warm(
        self, store: str, path: str, presets: Sequence[str]
    ) -> list[maintenance.Outcome]:
        """Render `presets` of one source into this proxy's own tiers, memory included, so the
        next request for them renders nothing. Run it on the loop this proxy serves on."""
        return await maintenance.warm_source(self.services, store, path, presets)

    async def purge(self, store: str, path: str) -> maintenance.Purged:
        """Drop every rendition of one source from this proxy's tiers (and the HTTP caches in
        `cache.purge_urls`). Run it on the loop this proxy serves on."""
        return await maintenance.purge(self.services, store, path)

    async def close(self) -> None:
        await self.services.close()


def route_path(scope: Scope) -> str:
    """The still-encoded path after the mount point (signatures are over this form). A
    server that gives no raw path gets the canonical encoding `url_for` produces."""
    raw: bytes | None = scope.get("raw_path")
    path: str = scope["path"]
    if raw is None:
        raw = quote(path, safe=PATH_SAFE).encode("latin-1")
    text = raw.decode("latin-1").partition("?")[0]
    root = scope.get("root_path", "").rstrip("/")
    # raw_path is the whole path as sent when it decodes to scope["path"]; strip as many
    # segments as the mount point has.
    if root and unquote(text) == path and path.startswith(root):
        depth = root.count("/")
        text = "/" + "/".join(text.split("/")[depth + 1 :])
    return text


def _headers(scope: Scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in WANTED_HEADERS:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            found[key] = f"{found[key]}, {text}" if key in found else text
    return found


def _client(scope: Scope) -> tuple[str, int] | None:
    client = scope.get("client")
    return (str(client[0]), int(client[1])) if client else None


def _all_headers(scope: Scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        found[key] = f"{found[key]}, {text}" if key in found else text
    return found


# Ready responses (a variant's 304, a memory hit) are the same objects request after
# request: their encoded header lists are kept by identity, so a hit hashes nothing. Bounded
# by header text as well as by count: a response that is not kept ready (an original, a
# long file name's) brings a new tuple each time, and one http-store URL with a 2,000
# character name asked 20,000 times kept 8192 of them, 41 MB a worker (SPEC §11.1).
ENCODED_LIMIT = 8192
ENCODED_CHARS = 2**20  # header names and values (kept as text and as bytes), and per pair:
PAIR_CHARS = 64  # what two tuples of a pair hold besides the text, as characters


class _Encodings:
    def __init__(self) -> None:
        self.kept: dict[int, tuple[tuple[tuple[str, str], ...], list[tuple[bytes, bytes]]]] = {}
        self.chars = 0

    def get(self, headers: tuple[tuple[str, str], ...]) -> list[tuple[bytes, bytes]]:
        known = self.kept.get(id(headers))
        if known is not None and known[0] is headers:  # the id is this very tuple's, still alive
            return known[1]
        encoded = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        chars = sum(len(k) + len(v) + PAIR_CHARS for k, v in encoded)
        if len(self.kept) >= ENCODED_LIMIT or self.chars + chars > ENCODED_CHARS:
            self.kept.clear()
            self.chars = 0
        self.kept[id(headers)] = (headers, encoded)
        self.chars += chars
        return encoded


_encoded = _Encodings().get  # a bound method: a hit makes one call, as a function's


# A body larger than this is sent in pieces of it, copies: a server keeps what a slow client
# has not read yet, and a piece it keeps holds only itself, never the whole body alive; the
# body stays counted in the in-flight budget until its last piece is handed over.
SEND_PIECE = 256 * 1024


async def send_response(response: ImageResponse, send: Send, *, head: bool) -> None:
    """Servers only read the header list they are given, so a shared one is safe."""
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": _encoded(response.headers),
        }
    )
    rest = response.rest
    body = response.body
    if rest is None and (head or len(body) <= SEND_PIECE):
        await send({"type": "http.response.body", "body": b"" if head else body})
        return
    if rest is None:  # in pieces, each sent once the client took most of the last
        for start in range(0, len(body), SEND_PIECE):
            piece = body[start : start + SEND_PIECE]
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    try:  # a streamed original: the server sends a piece only once the client took most of the last
        if not head:
            await send({"type": "http.response.body", "body": response.body, "more_body": True})
            async for piece in rest:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        await rest.aclose()


async def _lifespan(receive: Receive, send: Send, close: Callable[[], Awaitable[None]]) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await close()
            await send({"type": "lifespan.shutdown.complete"})
            return


class ImageProxyMiddleware:
    """Wraps any ASGI app: requests under `prefix` (on a path-segment boundary: `/media/x`,
    never `/mediax`) go to the proxy mounted there; lifespan and everything else go to the
    wrapped app."""

    def __init__(self, app: ASGIApp, proxy: ImageProxy, *, prefix: str = "/media") -> None:
        self.app = app
        self.proxy = proxy
        self.prefix = "/" + prefix.strip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            root = scope.get("root_path", "")
            inner = path[len(root) :] if root and path.startswith(root) else path
            if inner.startswith(self.prefix + "/"):
                mounted = {**scope, "root_path": root + self.prefix}
                await self.proxy(mounted, receive, send)
                return
        await self.app(scope, receive, send)
