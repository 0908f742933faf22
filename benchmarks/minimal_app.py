"""The baseline for cache hits: a bare Starlette app answering every GET with the same bytes."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = Path(os.environ["BENCH_BODY"]).read_bytes()
MEDIA_TYPE = os.environ.get("BENCH_MEDIA_TYPE", "image/webp")


async def image(_: Request) -> Response:
    return Response(BODY, media_type=MEDIA_TYPE)


app = Starlette(routes=[Route("/{path:path}", image)])
