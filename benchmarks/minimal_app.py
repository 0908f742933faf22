"""The baseline for cache hits: a bare Starlette app answering every GET with the same bytes
and the same headers as imgproxy's hit response (BENCH_BODY: a file; BENCH_HEADERS: a JSON
object of the headers to send, content-type included; uvicorn adds date and server)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = Path(os.environ["BENCH_BODY"]).read_bytes()
HEADERS: dict[str, str] = json.loads(os.environ.get("BENCH_HEADERS", "{}"))


async def image(_: Request) -> Response:
    return Response(BODY, headers=HEADERS)


app = Starlette(routes=[Route("/{path:path}", image)])
