"""The standalone server's ASGI app: `/healthz`, `/readyz`, `/metrics`, the demo page at `/` when
`server.demo = true`, and images for everything else.

A plain dispatch rather than a Starlette Router: the image path is the hot path and a
router's regex matching and middleware stack cost as much as a memory-cache hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send

from imgproxy import hints, logs
from imgproxy.asgi import ImageProxy
from imgproxy.render.probe import own_process_ceiling
from imgproxy.server.claims import PEERS_ENV
from imgproxy.server.exposition import CONTENT_TYPE_LATEST, Exposition
from imgproxy.server.heap import HeapTrimmer
from imgproxy.server.peers import WorkerPeers
from imgproxy.server.purging import PurgeListener
from imgproxy.server.readiness import ReadinessCheck
from imgproxy.settings import CONFIG_ENV, Settings

__all__ = ["CONFIG_ENV", "StandaloneApp", "app_from_env", "create_app"]
NO_STORE = (b"cache-control", b"no-store")
FLUSH_SECONDS = 1.0  # how late another worker's counts may reach /metrics


class StandaloneApp:
    def __init__(self, settings: Settings) -> None:
        self.proxy = ImageProxy(settings)
        self.exposition = Exposition(self.proxy.services.metrics)
        self.demo = settings.server.demo
        self.readiness = ReadinessCheck(self.proxy.services)
        self.purges = PurgeListener(self.proxy.services)  # `imgproxy purge` reaches its memory
        peers = os.environ.get(PEERS_ENV)  # one of several workers: they share decodes
        self.peers = WorkerPeers(self.proxy.services, Path(peers)) if peers else None
        self.trimmer: HeapTrimmer | None = None  # `imgproxy serve` sets it (app_from_env)

    async def _demo(self, scope: Scope, receive: Receive, send: Send) -> None:
        from imgproxy.server import demo  # its page and importlib.resources: 0.9 MiB a worker

        services = self.proxy.services
        if scope["path"] == "/":
            body, media_type = await demo.page(services), "text/html; charset=utf-8"
            if services.settings.server.client_hints:  # the page's images then carry them
                extra = ((b"accept-ch", hints.ACCEPT_CH.encode()),)
                await _send(send, body, media_type, extra=extra)
                return
        else:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            body, media_type = await demo.playground_url(services, query), "application/json"
        await _send(send, body, media_type)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/healthz":
            await _send(send, b"ok", "text/plain; charset=utf-8")
        elif scope["type"] == "http" and scope["path"] == "/readyz":
            ready = await self.readiness()
            await _send(send, ready.body(), "application/json", 200 if ready.ready else 503)
        elif scope["type"] == "http" and self.demo and scope["path"] in ("/", "/_demo/url"):
            await self._demo(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == "/metrics":
            await _send(send, self.exposition.render(), CONTENT_TYPE_LATEST)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.proxy(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """With several workers, each hands its counts to the others once a second; each
        listens for `imgproxy purge` while it serves, and trims its heap when idle."""
        background: list[asyncio.Task[None]] = []
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.purges.start()
                if self.peers is not None:
                    await self.peers.start()
                loop = asyncio.get_running_loop()
                if self.exposition.shared:
                    background.append(loop.create_task(self._flush_forever()))
                if self.trimmer is not None:
                    background.append(loop.create_task(self.trimmer.run_forever()))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in background:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                self.exposition.flush()
                if self.peers is not None:
                    await self.peers.stop()
                await self.purges.stop()
                await self.proxy.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.exposition.flush()


async def _send(
    send: Send,
    body: bytes,
    media_type: str,
    status: int = 200,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """A plain answer that no cache keeps (health, readiness, metrics, the demo): two ASGI
    messages, so the standalone server loads no response classes."""
    headers = [
        (b"content-type", media_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode()),
        NO_STORE,
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(settings: Settings) -> StandaloneApp:
    return StandaloneApp(settings)


def app_from_env() -> StandaloneApp:
    """uvicorn factory for `imgproxy serve` (each worker process builds its own app)."""
    path = os.environ.get(CONFIG_ENV)
    settings = Settings.from_file(path) if path else Settings.from_mapping({})
    logs.configure(level=settings.server.log_level, fmt=settings.server.log_format)
    own_process_ceiling(settings)
    app = create_app(settings)
    app.trimmer = HeapTrimmer(app.proxy.services.executor)  # the program's own process
    return app
