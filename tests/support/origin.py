"""A real HTTP origin for the `http` store tests, and an "internal" server whose request log
must stay empty. Both listen on loopback only (127.0.0.2 and 127.0.0.1)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from email.utils import formatdate

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.support import images

# How real origins frame one unchanged image differently for HEAD and GET: per style, the
# headers each method sends ("etag", "weak-etag", "last-modified", "length"); a GET without
# "length" is chunked. nginx weakens an ETag it compresses, CDNs stream GETs chunked, and
# many origins leave the length or the ETag off a HEAD.
FRAMINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "chunked-get": {
        "HEAD": ("last-modified", "length"),
        "GET": ("last-modified",),
    },
    "head-without-length": {
        "HEAD": ("last-modified",),
        "GET": ("last-modified", "length"),
    },
    "weak-etag-on-head": {
        "HEAD": ("weak-etag", "last-modified", "length"),
        "GET": ("etag", "last-modified"),
    },
    "weak-etag-on-get": {
        "HEAD": ("etag", "length"),
        "GET": ("weak-etag",),
    },
    "etag-on-head-only": {
        "HEAD": ("etag", "last-modified", "length"),
        "GET": ("last-modified",),
    },
    "etag-on-get-only": {
        "HEAD": ("last-modified",),
        "GET": ("etag", "last-modified", "length"),
    },
    "no-validators": {
        "HEAD": ("length",),
        "GET": (),
    },
}


class Origin:
    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, float]] = {}
        self.log: list[tuple[str, str]] = []
        routes = [
            Route("/files/{name:path}", self.file, methods=["GET", "HEAD"]),
            Route("/nohead/{name:path}", self.no_head, methods=["GET", "HEAD"]),
            Route("/to/{host}/{port}/{rest:path}", self.to),
            Route("/hop/{n:int}/{rest:path}", self.hop),
            Route("/loop/{n:int}", self.loop),
            Route("/moved/{name}", self.moved),
            Route("/scheme/{rest:path}", self.scheme),
            Route("/status/{code:int}", self.status, methods=["GET", "HEAD"]),
            Route("/drip.jpg", self.drip, methods=["GET", "HEAD"]),
            Route("/huge.jpg", self.huge, methods=["GET", "HEAD"]),
            Route("/stall/{name:path}", self.stall, methods=["GET", "HEAD"]),
            Route("/understated/{name:path}", self.understated, methods=["GET", "HEAD"]),
            Route("/offset/{at:int}/{name:path}", self.offset, methods=["GET", "HEAD"]),
            Route("/unranged/{name:path}", self.unranged, methods=["GET", "HEAD"]),
        ]
        self.stall_seconds = 4.0
        self.stalled: set[str] = set()
        self.inner = Starlette(routes=routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.log.append((scope["method"], scope["path"]))
            if scope["path"].startswith("/framed/"):
                await self.framed(scope, send)
                return
        await self.inner(scope, receive, send)

    def put(self, name: str, data: bytes) -> None:
        stamp = max(time.time(), max((t for _, t in self.files.values()), default=0) + 1)
        self.files[name] = (data, stamp)

    async def file(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.files:
            return PlainTextResponse("no", status_code=404)
        data, stamp = self.files[name]
        etag = '"' + hashlib.sha1(data).hexdigest()[:16] + '"'
        headers = {"etag": etag, "last-modified": formatdate(stamp, usegmt=True)}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type="application/octet-stream", headers=headers)

    async def framed(self, scope: Scope, send: Send) -> None:
        """/framed/STYLE/NAME: a file with exactly the headers FRAMINGS gives (raw ASGI, so
        no framework adds a length or a validator of its own)."""
        _, _, style, name = scope["path"].split("/", 3)
        if name not in self.files or scope["method"] not in ("GET", "HEAD"):
            await PlainTextResponse("no", status_code=404)(scope, _no_body, send)
            return
        data, stamp = self.files[name]
        tag = '"' + hashlib.sha1(data).hexdigest()[:16] + '"'
        values = {
            "etag": ("etag", tag),
            "weak-etag": ("etag", "W/" + tag),
            "last-modified": ("last-modified", formatdate(stamp, usegmt=True)),
            "length": ("content-length", str(len(data))),
        }
        sent = FRAMINGS[style][scope["method"]]
        headers = [(k.encode(), v.encode()) for k, v in (values[h] for h in sent)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        for start in range(0, len(data), 1000):  # several chunks, as a stream would be
            await send(
                {
                    "type": "http.response.body",
                    "body": data[start : start + 1000],
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b""})

    async def no_head(self, request: Request) -> Response:
        if request.method == "HEAD":
            return Response(status_code=405)
        return await self.file(request)

    async def to(self, request: Request) -> Response:
        p = request.path_params
        return RedirectResponse(f"http://{p['host']}:{p['port']}/{p['rest']}", status_code=302)

    async def hop(self, request: Request) -> Response:
        n, rest = request.path_params["n"], request.path_params["rest"]
        target = f"/hop/{n - 1}/{rest}" if n > 0 else f"/files/{rest}"
        return RedirectResponse(target, status_code=301)

    async def loop(self, request: Request) -> Response:
        return RedirectResponse(f"/loop/{request.path_params['n'] + 1}", status_code=302)

    async def moved(self, request: Request) -> Response:
        return RedirectResponse("/files/real%20name.jpg", status_code=308)

    async def scheme(self, request: Request) -> Response:
        return RedirectResponse("file:///etc/passwd", status_code=302)

    async def status(self, request: Request) -> Response:
        return PlainTextResponse("status", status_code=request.path_params["code"])

    async def drip(self, request: Request) -> Response:
        headers = {"etag": '"drip"'}
        if request.method == "HEAD":
            return Response(headers=headers)

        async def body() -> AsyncIterator[bytes]:
            yield images.jpeg((64, 48))[:100]
            for _ in range(600):
                await asyncio.sleep(0.1)
                yield b"\x00"

        return StreamingResponse(body(), headers=headers)

    async def understated(self, request: Request) -> Response:
        """A HEAD that says the file has 1000 bytes; a GET that streams all of it, chunked
        (no length), under the same ETag, ignoring any Range."""
        data, _ = self.files[request.path_params["name"]]
        headers = {"etag": '"understated"'}
        if request.method == "HEAD":
            return Response(headers={**headers, "content-length": "1000"})

        async def body() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 65536):
                yield data[start : start + 65536]

        return StreamingResponse(body(), headers=headers)

    async def offset(self, request: Request) -> Response:
        """A whole file for a HEAD and a plain GET (one ETag); a GET with a Range gets a 206
        of 64 KiB from byte `at` instead of the range asked, its Content-Range saying so, as
        a broken cache in front of an origin may answer."""
        at, name = request.path_params["at"], request.path_params["name"]
        data, _ = self.files[name]
        headers = {"etag": '"' + hashlib.sha1(data).hexdigest()[:16] + '"'}
        if "range" not in request.headers:
            return Response(data, media_type="application/octet-stream", headers=headers)
        part = data[at : at + 65536]
        headers["content-range"] = f"bytes {at}-{at + len(part) - 1}/{len(data)}"
        return Response(part, status_code=206, headers=headers)

    async def unranged(self, request: Request) -> Response:
        """A whole file for a HEAD and a plain GET; 416 for any Range, as an origin whose
        range support is broken (or a front that refuses ranges it did not cache) answers."""
        data, _ = self.files[request.path_params["name"]]
        headers = {"etag": '"' + hashlib.sha1(data).hexdigest()[:16] + '"'}
        if "range" in request.headers:
            return Response(status_code=416, headers={"content-range": "bytes */0"})
        return Response(data, media_type="application/octet-stream", headers=headers)

    async def stall(self, request: Request) -> Response:
        """A stored file whose first GET's body stops halfway for `stall_seconds`, its
        headers (length included) sent at once: an origin that stalls mid-body, then
        finishes; later GETs of that file answer at once."""
        name = request.path_params["name"]
        if name not in self.files:
            return PlainTextResponse("no", status_code=404)
        data, _ = self.files[name]
        headers = {"etag": '"stall-' + hashlib.sha1(data).hexdigest()[:16] + '"'}
        headers["content-length"] = str(len(data))
        if request.method == "HEAD":
            return Response(headers=headers)

        stall = name not in self.stalled
        self.stalled.add(name)

        async def body() -> AsyncIterator[bytes]:
            yield data[: len(data) // 2]
            await asyncio.sleep(self.stall_seconds if stall else 0)
            yield data[len(data) // 2 :]

        return StreamingResponse(body(), headers=headers)

    async def huge(self, request: Request) -> Response:
        headers = {"etag": '"huge"'}
        if request.method == "HEAD":
            return Response(headers=headers)

        async def body() -> AsyncIterator[bytes]:
            yield images.jpeg((64, 48))[:100]
            for _ in range(100_000):
                yield b"\x00" * 65536

        return StreamingResponse(body(), headers=headers)


async def _no_body() -> dict[str, object]:
    return {"type": "http.request", "body": b"", "more_body": False}


class Internal:
    """Stands for a metadata service or an admin port: any request to it is a failure."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.log.append((scope["method"], scope["path"]))
            await PlainTextResponse("SECRET")(scope, receive, send)
