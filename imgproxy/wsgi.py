"""WSGI edge: wraps a WSGI app (Django, Flask) so requests under `prefix` are answered by
the same ASGI ImageProxy, through a2wsgi's bridge (one event loop in one background thread,
not a second, synchronous pipeline). Everything else goes to the wrapped app."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from a2wsgi import ASGIMiddleware

from imgproxy.asgi import ImageProxy

Environ = dict[str, Any]
StartResponse = Any
WSGIApp = Any


class ImageProxyMiddleware:
    def __init__(self, app: WSGIApp, proxy: ImageProxy, *, prefix: str = "/media") -> None:
        self.app = app
        self.proxy = proxy
        self.prefix = "/" + prefix.strip("/")
        self.bridge = ASGIMiddleware(_RawPath(proxy))  # type: ignore[arg-type]

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if not path.startswith(self.prefix + "/"):  # a path-segment boundary: not /mediax
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        mounted = {
            **environ,
            "SCRIPT_NAME": environ.get("SCRIPT_NAME", "") + self.prefix,
            "PATH_INFO": path[len(self.prefix) :],
        }
        return self.bridge(mounted, start_response)  # type: ignore[arg-type]


class _RawPath:
    """Gives the ASGI scope the path as sent, when the WSGI server kept it (gunicorn's
    RAW_URI, uWSGI's REQUEST_URI): signatures are over the encoded form."""

    def __init__(self, app: ImageProxy) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        environ = scope.get("wsgi_environ", {})
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if raw:
            scope = {**scope, "raw_path": raw.partition("?")[0].encode("latin-1")}
        await self.app(scope, receive, send)
