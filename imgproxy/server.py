"""The standalone server's ASGI app: `/healthz`, `/metrics`, the demo page at `/` when
`server.demo = true`, and images for everything else.

A plain dispatch rather than a Starlette Router: the image path is the hot path and a
router's regex matching and middleware stack cost as much as a memory-cache hit.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from imgproxy import demo
from imgproxy.asgi import ImageProxy
from imgproxy.settings import Settings

CONFIG_ENV = "IMGPROXY_CONFIG"
NO_STORE = {"cache-control": "no-store"}


class StandaloneApp:
    def __init__(self, settings: Settings) -> None:
        self.proxy = ImageProxy(settings)
        self._healthy = PlainTextResponse("ok", headers=NO_STORE)
        self.demo = settings.server.demo

    async def _demo(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = self.proxy.services
        if scope["path"] == "/":
            body, media_type = await demo.page(services), "text/html; charset=utf-8"
        else:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            body, media_type = await demo.playground_url(services, query), "application/json"
        await Response(body, media_type=media_type, headers=NO_STORE)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/healthz":
            await self._healthy(scope, receive, send)
        elif scope["type"] == "http" and self.demo and scope["path"] in ("/", "/_demo/url"):
            await self._demo(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == "/metrics":
            body = self.proxy.services.metrics.exposition()
            metrics = Response(body, media_type=CONTENT_TYPE_LATEST, headers=NO_STORE)
            await metrics(scope, receive, send)
        else:
            await self.proxy(scope, receive, send)


def create_app(settings: Settings) -> StandaloneApp:
    return StandaloneApp(settings)


def app_from_env() -> StandaloneApp:
    """uvicorn factory for `imgproxy serve` (each worker process builds its own app)."""
    path = os.environ.get(CONFIG_ENV)
    settings = Settings.from_file(path) if path else Settings.from_mapping({})
    return create_app(settings)
