"""ASGI edge: scope -> ImageRequest, ImageResponse -> ASGI messages. Nothing else.

`ImageProxy` is mountable anywhere (Starlette/FastAPI `mount`, or as a whole app); its paths
and signatures are relative to the mount point (`root_path`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from urllib.parse import quote, unquote

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from imgproxy.messages import ImageRequest, ImageResponse
from imgproxy.pipeline import Authorize, Pipeline
from imgproxy.settings import Settings
from imgproxy.stores import Store

PATH_SAFE = "/:@!$&'()*+,;=-._~"

# The request headers the core reads; everything else is never decoded.
WANTED_HEADERS = frozenset(
    {b"accept", b"if-none-match", b"if-modified-since", b"range", b"if-range"}
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
        self.pipeline = Pipeline(settings, stores=stores, authorize=authorize)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self.close)
            return
        if scope["type"] != "http":
            return
        request = ImageRequest(
            method=scope["method"],
            path=route_path(scope),
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=_headers(scope),
            context=Request(scope, receive) if self.pipeline.authorize is not None else None,
        )
        response = await self.pipeline.serve(request)
        await send_response(response, send, head=scope["method"] == "HEAD")

    async def close(self) -> None:
        await self.pipeline.close()


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


@functools.lru_cache(maxsize=8192)
def _encoded(headers: tuple[tuple[str, str], ...]) -> list[tuple[bytes, bytes]]:
    """A variant's headers repeat request after request: encode each tuple once (servers
    only read the list)."""
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def send_response(response: ImageResponse, send: Send, *, head: bool) -> None:
    start = {"type": "http.response.start", "status": response.status}
    await send({**start, "headers": _encoded(response.headers)})
    await send({"type": "http.response.body", "body": b"" if head else response.body})


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
