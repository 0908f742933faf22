"""The libvips contender: a tiny Starlette app doing imgproxy's job with pyvips, the library
imgproxy (Go) is built on. It runs only in its own venv (benchmarks/work/vips-venv, from
benchmarks/vips-requirements.txt; see benchmarks/contenders.py), never in imgproxy's.

GET /<path>?w=<width>&fm=jpeg|webp&q=<quality>: read the file under BENCH_ROOT, thumbnail it to
`w` wide with shrink-on-load (`thumbnail_buffer`: a JPEG is decoded at a DCT scale, then
reduced in integer steps and Lanczos, libvips' own pipeline), encode at quality `q` with no
metadata. As imgproxy does, renders run in threads, at most one per core at a time, and
nothing is cached (libvips' operation cache is off), so each request renders.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pyvips
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROOT = Path(os.environ.get("BENCH_ROOT", ".")).resolve()
MEDIA_TYPES = {"jpeg": "image/jpeg", "webp": "image/webp"}
SLOTS = anyio.CapacityLimiter(os.cpu_count() or 1)
TALL = 10_000_000  # thumbnail's box height: the width alone decides the size

pyvips.cache_set_max(0)


def thumbnail(data: bytes, width: int, fmt: str, quality: int) -> bytes:
    image = pyvips.Image.thumbnail_buffer(data, width, height=TALL, size="down")
    body: bytes = image.write_to_buffer(f".{fmt}", Q=quality, keep="none")
    return body


async def image(request: Request) -> Response:
    path = (ROOT / request.path_params["path"]).resolve()
    fmt = request.query_params.get("fm", "jpeg")
    if not path.is_relative_to(ROOT) or fmt not in MEDIA_TYPES:
        return Response(status_code=400)
    width, quality = int(request.query_params["w"]), int(request.query_params.get("q", "80"))
    try:
        data = await anyio.Path(path).read_bytes()
    except FileNotFoundError:
        return Response(status_code=404)
    body = await anyio.to_thread.run_sync(thumbnail, data, width, fmt, quality, limiter=SLOTS)
    return Response(body, media_type=MEDIA_TYPES[fmt])


app = Starlette(routes=[Route("/{path:path}", image)])
