"""The ImageProxy that serves this Django process, and the one door from Django's sync code to
its async work: the loop that proxy serves on. Warm and purge must reach the serving proxy's
own tiers (its memory tier above all) with its own clients, never a second set on a second loop.

    application = serving.wsgi(django_app, proxy, prefix="/media")  # wsgi.py
    application = serving.asgi(django_app, proxy, prefix="/media")  # asgi.py

Where no server runs (`manage.py shell`, a command), `current()` loads the site's WSGI
application (settings.WSGI_APPLICATION), which builds and registers its proxy when it mounts
one. When nothing does (the usual deployment: Django saves, a separate `imgproxy serve`
serves; commands and task workers alike), `current()` is a proxy of this process's own, built
from `settings.IMGPROXY` alone (the stores and tiers the server is configured with) and
without a memory tier: it warms and purges the tiers the servers share (disk, Redis, S3), the
broadcast and `cache.purge_urls`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from django.core.servers.basehttp import get_internal_wsgi_application
from starlette.types import ASGIApp, Receive, Scope, Send

from imgproxy.asgi import ImageProxy
from imgproxy.asgi import ImageProxyMiddleware as AsgiMiddleware
from imgproxy.contrib.django.conf import imgproxy_settings
from imgproxy.wsgi import ImageProxyMiddleware as WsgiMiddleware
from imgproxy.wsgi import WSGIApp

T = TypeVar("T")


class Serving:
    """A proxy and a way to reach the loop it serves on; `own`: built by this module, on a
    loop of its own, because nothing serves this process."""

    def __init__(
        self,
        proxy: ImageProxy,
        loop: Callable[[], asyncio.AbstractEventLoop],
        *,
        own: bool = False,
    ) -> None:
        self.proxy = proxy
        self.own = own
        self._loop = loop

    def running(self) -> bool:
        """Whether its loop runs: at exit a server's has stopped, a loop thread's has not."""
        try:
            return self._loop().is_running()
        except RuntimeError:  # an ASGI server that never called the application
            return False

    def run(
        self, work: Callable[[ImageProxy], Coroutine[Any, Any, T]], timeout: float | None = None
    ) -> T:
        """`work(proxy)` on the serving loop; blocks this thread (never that loop's) until done."""
        loop = self._loop()
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:  # waiting here would stop the very loop that must do the work
            raise RuntimeError("Serving.run was called on the loop the proxy serves on")
        return asyncio.run_coroutine_threadsafe(work(self.proxy), loop).result(timeout)


_current: Serving | None = None
_own: Serving | None = None
_looked = False  # the site's WSGI application was loaded once, in case it registers a proxy
_loading = threading.Lock()


def register(proxy: ImageProxy, loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
    """Name the proxy this process serves with; the last registration wins."""
    global _current
    _current = Serving(proxy, loop)


def current() -> Serving:
    """The registered proxy; without one, the one the site's WSGI application registers;
    without that, this process's own over the shared tiers."""
    global _looked
    if _current is None and not _looked:
        with _loading:
            if _current is None and not _looked:
                get_internal_wsgi_application()
                _looked = True
    return _current if _current is not None else own()


def own() -> Serving:
    """This process's own proxy, built on first use from `settings.IMGPROXY` (environment
    overrides included) with the memory tier off: what it renders is for the servers, which
    read the shared tiers, and would only fill a process that serves nothing."""
    global _own
    with _loading:
        if _own is None:
            settings = imgproxy_settings()
            cache = dataclasses.replace(settings.cache, memory_bytes=0)
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="imgproxy-own-loop", daemon=True).start()
            proxy = ImageProxy(dataclasses.replace(settings, cache=cache))
            _own = Serving(proxy, lambda: loop, own=True)
        return _own


def close_own(timeout: float) -> None:
    """Close this process's own proxy (its clients and pools), if it was built."""
    global _own
    with _loading:
        serving, _own = _own, None
    if serving is not None:
        serving.run(lambda proxy: proxy.close(), timeout)


def _forget_own() -> None:
    global _own, _loading
    _own, _loading = None, threading.Lock()  # its loop thread is not in a forked child


os.register_at_fork(after_in_child=_forget_own)


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
