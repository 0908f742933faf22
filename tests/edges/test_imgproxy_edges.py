"""imgproxy (Go) URLs through every edge (SPEC §15.3): ImageProxy mounted under a path, the
ASGI middleware and the WSGI middleware answer one URL with one rendition; its signature
covers only what follows it, so the mount in front of /imgproxy/ never matters."""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

from imgproxy import ImageProxy
from imgproxy.asgi import ImageProxyMiddleware as AsgiMiddleware
from imgproxy.wsgi import ImageProxyMiddleware as WsgiMiddleware
from tests.e2e.test_imgproxy_urls import KEY, SALT, sign
from tests.edges.test_edges import call, wsgi_app
from tests.support import LiveServer, Serve, images, settings_for
from tests.support.origin import Origin

DIALECT = {"imgproxy": {"store": "media", "keys": [KEY], "salts": [SALT]}}
URL = sign("/rs:fill:30:20/g:nowe/plain/me%20now.jpg@png")  # /imgproxy/{signature}/...


def proxy(media: Path) -> ImageProxy:
    return ImageProxy(settings_for(media, dialects=DIALECT))


def test_one_url_one_rendition_through_every_edge(media: Path, serve: Serve) -> None:
    mounted = serve(Starlette(routes=[Mount("/deep/img", app=proxy(media))]))
    middleware = serve(AsgiMiddleware(Starlette(), proxy(media), prefix="/cdn"))
    answers = [
        httpx.get(mounted.url + "/deep/img" + URL),
        httpx.get(middleware.url + "/cdn" + URL),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert images.decode(answer.content).size == (30, 20)
    assert answers[0].headers["etag"] == answers[1].headers["etag"]
    assert httpx.get(mounted.url + "/deep/img" + URL.replace("30", "31")).status_code == 403

    app = WsgiMiddleware(wsgi_app, proxy(media), prefix="/cdn")
    # PATH_INFO arrives decoded: the raw URI (gunicorn's RAW_URI) keeps the signed spelling.
    decoded = "/cdn" + URL.replace("%20", " ")
    status, headers, body = call(app, decoded, RAW_URI="/cdn" + URL)
    assert status == "200 OK"
    assert headers["etag"] == answers[0].headers["etag"]
    assert body == answers[0].content
    assert call(app, decoded, RAW_URI="/cdn" + URL.replace("30", "31"))[0] == "403 Forbidden"


def test_a_full_url_under_an_http_store_resolves_there(media: Path, serve: Serve) -> None:
    """`plain/http://origin/files/x.jpg` is the `web` store's `x.jpg` (its base_url is the
    prefix): the same rendition as the native URL; any other host is 400, never fetched."""
    app = Origin()
    app.put("pic.jpg", images.jpeg((320, 240)))
    with LiveServer(app, host="127.0.0.2") as origin:
        web = {
            "kind": "http",
            "base_url": origin.url + "/files/",
            "approved": True,
            "allowed_networks": ["127.0.0.2/32"],
        }
        settings = settings_for(media, dialects=DIALECT, stores={"web": web})
        server = serve(ImageProxy(settings))
        foreign = httpx.get(server.url + sign(f"/w:80/plain/{origin.url}/files/pic.jpg@webp"))
        native = httpx.get(server.url + "/web/pic.jpg?w=80&fm=webp")
        assert foreign.status_code == 200, foreign.text
        assert images.decode(foreign.content).size == (80, 60)
        assert (foreign.headers["etag"], foreign.content) == (
            native.headers["etag"],
            native.content,
        )
        fetched = len(app.log)
        for elsewhere in ("http://127.0.0.2:1/files/pic.jpg", "http://127.0.0.1/files/pic.jpg"):
            assert httpx.get(server.url + sign(f"/w:80/plain/{elsewhere}")).status_code == 400
        assert len(app.log) == fetched
