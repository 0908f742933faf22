"""The ImageProxy that serves this Django process, and the one door from Django's sync code to
its async work: the loop that proxy serves on. Warm and purge must reach the serving proxy's
own tiers (its memory tier above all) with its own clients, never a second set on a second loop.

    application = serving.wsgi(django_app, proxy, prefix="/media")  # wsgi.py
    application = serving.asgi(django_app, proxy, prefix="/media")  # asgi.py

Where no server runs (`manage.py shell`, a command), `current()` loads the site's WSGI
application (settings.WSGI_APPLICATION), which builds and registers its proxy.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.core.servers.basehttp import get_internal_wsgi_application
from starlette.types import ASGIApp, Receive, Scope, Send

from imgproxy.asgi import ImageProxy
from imgproxy.asgi import ImageProxyMiddleware as AsgiMiddleware
from imgproxy.wsgi import ImageProxyMiddleware as WsgiMiddleware
from imgproxy.wsgi import WSGIApp

T = TypeVar("T")


class Serving:
    """A proxy and a way to reach the loop it serves on."""

    def __init__(self, proxy: ImageProxy, loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self.proxy = proxy
        self._loop = loop

    def run(self, work: Callable[[ImageProxy], Coroutine[Any, Any, T]]) -> T:
        """`work(proxy)` on the serving loop; blocks this thread (never that loop's) until done."""
        loop = self._loop()
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:  # waiting here would stop the very loop that must do the work
            raise RuntimeError("Serving.run was called on the loop the proxy serves on")
        return asyncio.run_coroutine_threadsafe(work(self.proxy), loop).result()


_current: Serving | None = None
_loading = threading.Lock()


def register(proxy: ImageProxy, loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
    """Name the proxy this process serves with; the last registration wins."""
    global _current
    _current = Serving(proxy, loop)


def current() -> Serving:
    """The registered proxy; without one, the one the site's WSGI application registers."""
    if _current is None:
        with _loading:
            if _current is None:
                get_internal_wsgi_application()
    if _current is None:
        raise ImproperlyConfigured(
            "no ImageProxy serves this process: build the site's application with "
            "imgproxy.contrib.django.serving.wsgi(...) or .asgi(...)"
        )
    return _current


def wsgi(app: WSGIApp, proxy: ImageProxy, *, prefix: str = "/media") -> WsgiMiddleware:
    """`proxy` mounted at `prefix` in front of a WSGI app, registered with its loop thread."""
    middleware = WsgiMiddleware(app, proxy, prefix=prefix)
    register(proxy, lambda: middleware.loop)
    return middleware


class _NotingLoop:
    """The server's loop is known only once it calls the application."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)

    def running(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            raise RuntimeError("the ASGI server has not called the application yet")
        return self.loop


def asgi(app: ASGIApp, proxy: ImageProxy, *, prefix: str = "/media") -> ASGIApp:
    """`proxy` mounted at `prefix` in front of an ASGI app, registered with the server's loop
    (Django runs sync views in threads, off that loop, so they may wait on it)."""
    noting = _NotingLoop(AsgiMiddleware(app, proxy, prefix=prefix))
    register(proxy, noting.running)
    return noting
