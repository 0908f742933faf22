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
from tests.support import Serve, images, settings_for

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
