"""The standalone server's ASGI app: images at `/`, plus `/healthz`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from imgproxy.asgi import ImageProxy
from imgproxy.settings import Settings

CONFIG_ENV = "IMGPROXY_CONFIG"


def create_app(settings: Settings) -> Starlette:
    proxy = ImageProxy(settings)

    async def healthz(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok", headers={"cache-control": "no-store"})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        proxy.close()

    app = Starlette(
        routes=[Route("/healthz", healthz, methods=["GET", "HEAD"]), Mount("", app=proxy)],
        lifespan=lifespan,
    )
    app.state.proxy = proxy
    return app


def app_from_env() -> Starlette:
    """uvicorn factory for `imgproxy serve` (each worker process builds its own app)."""
    path = os.environ.get(CONFIG_ENV)
    settings = Settings.from_file(path) if path else Settings.from_mapping({})
    return create_app(settings)
