"""The edges: ImageProxy mounted under a path (signatures relative to the mount), the ASGI
middleware (segment boundary, lifespan passed through), and the WSGI middleware."""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from imgproxy import ImageProxy, ImageRequest, StoredFile, url_for
from imgproxy.asgi import ImageProxyMiddleware as AsgiMiddleware
from imgproxy.params import OTHER_KEYS, TRANSFORM_KEYS
from imgproxy.wsgi import ImageProxyMiddleware as WsgiMiddleware
from tests.support import KEY, Serve, images, settings_for
from tests.support.guides import ROOT


def signed_proxy(media: Path) -> ImageProxy:
    return ImageProxy(settings_for(media, security={"keys": [KEY]}))


def test_mounted_under_a_path_signatures_are_relative_to_the_mount(
    media: Path, serve: Serve
) -> None:
    proxy = signed_proxy(media)
    app = Starlette(routes=[Mount("/deep/img", app=proxy)])
    url = url_for("media", "me now.jpg", settings=proxy.settings, mount="/deep/img", w=20)
    with httpx.Client(base_url=serve(app).url) as http:
        response = http.get(url)
        assert response.status_code == 200, response.text
        assert images.decode(response.content).size == (20, 16)
        assert http.get(url.replace("w=20", "w=21")).status_code == 403


def test_asgi_middleware_boundary_and_lifespan(media: Path, serve: Serve) -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    async def page(request: Request) -> PlainTextResponse:
        return PlainTextResponse("app:" + request.url.path)

    inner = Starlette(routes=[Route("/{rest:path}", page)], lifespan=lifespan)
    app = AsgiMiddleware(inner, ImageProxy(settings_for(media)), prefix="/media/")
    server = serve(app)
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/media/media/photo.jpg?w=10").headers["content-type"] == "image/jpeg"
        assert http.get("/mediax/media/photo.jpg").text == "app:/mediax/media/photo.jpg"
        assert http.get("/media").text == "app:/media"
        assert http.get("/other").text == "app:/other"
    assert events == ["startup"]  # lifespan reached the wrapped app


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"app:" + environ["PATH_INFO"].encode()]


def call(app: Any, path: str, query: str = "", **extra: str) -> tuple[str, dict[str, str], bytes]:
    environ = {
        "REQUEST_METHOD": extra.pop("method", "GET"),
        "SCRIPT_NAME": extra.pop("script", ""),
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "x",
        "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        **extra,
    }
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def test_wsgi_middleware(media: Path) -> None:
    proxy = signed_proxy(media)
    app = WsgiMiddleware(wsgi_app, proxy, prefix="/media")
    assert call(app, "/mediax/a.jpg")[2] == b"app:/mediax/a.jpg"
    status, headers, body = call(app, "/media/media/photo.jpg")
    assert status == "200 OK"
    assert headers["content-type"] == "image/jpeg"
    assert body == (media / "photo.jpg").read_bytes()
    head_status, head_headers, head_body = call(app, "/media/media/photo.jpg", method="HEAD")
    assert (head_status, head_headers, head_body) == (status, headers, b"")
    not_modified = call(app, "/media/media/photo.jpg", HTTP_IF_NONE_MATCH=headers["etag"])
    assert not_modified[0] == "304 Not Modified"
    # PATH_INFO arrives decoded (latin-1 bytes); signatures use the canonical encoding...
    url = url_for("media", "me now.jpg", settings=proxy.settings, w=20)
    path, _, query = url.partition("?")
    decoded = ("/media" + path).replace("%20", " ")
    assert call(app, decoded, query)[0] == "200 OK"
    # ...or the raw URI when the server keeps it (gunicorn RAW_URI, uWSGI REQUEST_URI).
    raw = f"/site/media{path}?{query}"
    assert call(app, decoded, query, script="/site", RAW_URI=raw)[0] == "200 OK"
    tampered = call(app, decoded, query.replace("w=20", "w=21"), script="/site", RAW_URI=raw)
    assert tampered[0] == "403 Forbidden"
    missing = call(app, "/media/media/nope.jpg")
    assert missing[0] == "404 Not Found"
    assert missing[1]["content-type"] == "application/json"


def test_a_large_original_streams_through_wsgi_and_gives_its_budget_back(tmp_path: Path) -> None:
    """An original of several store pieces, whole and in part, through the WSGI edge: every
    byte arrives, and once the server closes each body the whole budget is free again."""
    import asyncio
    import os

    from PIL import Image

    media = tmp_path / "media"
    media.mkdir()
    Image.frombytes("RGB", (700, 700), os.urandom(700 * 700 * 3)).save(
        media / "big.png", compress_level=0
    )
    data = (media / "big.png").read_bytes()
    budget = 4 * len(data)
    proxy = ImageProxy(settings_for(media, limits={"inflight_bytes": budget}))
    app = WsgiMiddleware(wsgi_app, proxy, prefix="/media")

    def body(**extra: str) -> tuple[str, bytes]:
        seen: dict[str, Any] = {}
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/media/media/big.png", **extra}
        answer = app(environ, lambda status, headers: seen.update(status=status))
        try:
            return seen["status"], b"".join(answer)
        finally:
            getattr(answer, "close", lambda: None)()

    assert body() == ("200 OK", data)
    assert body(HTTP_RANGE="bytes=100-700000") == ("206 Partial Content", data[100:700001])
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/media/media/big.png"}
    for piece in app(environ, lambda status, headers: None):
        assert 0 < len(piece) < len(data)
        break  # a server that drops the body after one piece, never calling close()

    async def whole_budget() -> None:
        async with proxy.services.executor.reserve(budget):
            pass

    asyncio.run_coroutine_threadsafe(whole_budget(), app.loop).result(timeout=5)


def test_authorize_receives_the_same_typed_request_under_every_edge(
    media: Path, serve: Serve
) -> None:
    """SPEC §8: one ImageRequest (method, path, query, headers, client, native) whichever
    edge the request came through; only the native object differs."""
    seen: list[ImageRequest] = []

    async def authorize(request: ImageRequest, file: StoredFile) -> bool:
        seen.append(request)
        return request.headers.get("x-user") == "owner"

    proxy = ImageProxy(settings_for(media), authorize=authorize)
    with httpx.Client(base_url=serve(Starlette(routes=[Mount("/img", app=proxy)])).url) as http:
        assert http.get("/img/media/photo.jpg?w=10", headers={"x-user": "owner"}).status_code == 200
        assert http.get("/img/media/photo.jpg?w=10").status_code == 403
    app = WsgiMiddleware(wsgi_app, proxy, prefix="/img")
    wsgi = call(app, "/img/media/photo.jpg", "w=10", HTTP_X_USER="owner", REMOTE_ADDR="10.0.0.9")
    assert wsgi[0] == "200 OK"
    via_asgi, _, via_wsgi = seen
    for request in (via_asgi, via_wsgi):
        assert isinstance(request, ImageRequest)
        assert (request.method, request.path, request.query) == ("GET", "/media/photo.jpg", "w=10")
        assert request.headers["x-user"] == "owner"
        assert request.client is not None
    assert via_asgi.client is not None and via_asgi.client[0] == "127.0.0.1"
    assert via_wsgi.client == ("10.0.0.9", 0)
    assert isinstance(via_asgi.native, Request)
    assert via_asgi.native.url.path == "/img/media/photo.jpg"
    assert via_wsgi.native["PATH_INFO"] == "/img/media/photo.jpg"


def test_the_shipped_edges_know_every_native_parameter() -> None:
    """The edge configs cache only queries of known names (anything else passes uncached):
    a parameter missing there would make each of its renditions a trip to imgproxy."""
    names = TRANSFORM_KEYS | OTHER_KEYS
    for config in ("config/nginx.conf", "config/varnish.vcl"):
        text = (ROOT / config).read_text()
        lists = re.findall(r"\((bg\|[a-z|]+)\)", text)
        assert len(lists) >= 3, config
        for found in lists:
            assert set(found.split("|")) == names, (config, sorted(names ^ set(found.split("|"))))
    # What nginx keys its files on: a name missing there shares the file of the URL without it.
    (key,) = re.findall(r'proxy_cache_key "([^"]*)"', (ROOT / "config/nginx.conf").read_text())
    assert set(re.findall(r"\$arg_(\w+)", key)) == names
