"""Starlette: the proxy mounted at /media, with an `authorize` hook that keeps the `members`
store for logged-in users (a session cookie).

    .venv/bin/uvicorn examples.starlette_app:app --port 8082
    http://127.0.0.1:8082/                 (a page, and /login?user=alice to log in)
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.routing import Mount, Route

from imgproxy import ImageProxy, ImageRequest, Settings, StoredFile, url_for

MEDIA = Path(__file__).resolve().parent / "media"
settings = Settings.from_mapping(
    {
        "stores": {
            "public": {"kind": "fs", "root": str(MEDIA), "approved": True},
            "members": {"kind": "fs", "root": str(MEDIA), "approved": True},
        }
    }
)


async def authorize(request: ImageRequest, file: StoredFile) -> bool:
    """Members' images only for a logged-in user; runs before any byte is read or a 304.
    `request.path` is relative to the mount; `request.native` is Starlette's Request."""
    if request.path.startswith("/members/"):
        return bool(request.native.session.get("user"))
    return True


async def home(request: Request) -> HTMLResponse:
    user = request.session.get("user")
    thumb = url_for("public", "chelsea.png", settings=settings, mount="/media", w=200)
    private = url_for("members", "astronaut.png", settings=settings, mount="/media", w=200)
    return HTMLResponse(
        f"<!doctype html><title>Starlette + imgproxy</title><p>user: {user or 'nobody'}</p>"
        f'<img src="{thumb}" alt="public"><img src="{private}" alt="members only">'
    )


async def login(request: Request) -> RedirectResponse:
    request.session["user"] = request.query_params.get("user", "alice")
    return RedirectResponse("/", status_code=303)


app = Starlette(
    routes=[
        Route("/", home),
        Route("/login", login),
        Mount("/media", app=ImageProxy(settings, authorize=authorize)),
    ],
    middleware=[Middleware(SessionMiddleware, secret_key="example-only")],  # noqa: S106
)
