"""Flask: `init_app(app, proxy, prefix="/media")` serves images under the prefix (WSGI
middleware around `app.wsgi_app`) and adds the `imgproxy_url`, `imgproxy_srcset` and
`imgproxy_picture` template globals."""

from __future__ import annotations

from typing import Any

from imgproxy.asgi import ImageProxy
from imgproxy.contrib import jinja
from imgproxy.wsgi import ImageProxyMiddleware


def init_app(app: Any, proxy: ImageProxy, *, prefix: str = "/media") -> None:
    app.wsgi_app = ImageProxyMiddleware(app.wsgi_app, proxy, prefix=prefix)
    jinja.install(app.jinja_env.globals, proxy.settings, mount=prefix)
