"""FastAPI: the proxy mounted at /media, an API that hands out responsive image URLs, and an
upload endpoint that checks each file with the server's own rules before keeping it.

.venv/bin/uvicorn examples.fastapi_app:app --port 8083
http://127.0.0.1:8083/api/gallery
curl -F file=@photo.jpg http://127.0.0.1:8083/api/upload
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

from fastapi import FastAPI, HTTPException, UploadFile
from starlette.concurrency import run_in_threadpool

from imgproxy import ImageProxy, ImageProxyError, Settings, inspect, srcset, url_for

MEDIA = Path(__file__).resolve().parent / "media"
UPLOADS = Path(os.environ.get("EXAMPLE_UPLOADS") or tempfile.mkdtemp(prefix="imgproxy-uploads-"))
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
settings = Settings.from_mapping(
    {
        "security": {"keys": ["example-signing-key"]},
        "stores": {
            "media": {"kind": "fs", "root": str(MEDIA), "approved": True},
            # Uploads are unapproved: only JPEG, PNG, WebP and GIF are ever parsed.
            "uploads": {"kind": "fs", "root": str(UPLOADS), "max_source_bytes": 10_000_000},
        },
    }
)

app = FastAPI(title="imgproxy example")


@app.get("/api/gallery")
def gallery() -> list[dict[str, str]]:
    names = sorted(p.name for p in MEDIA.iterdir() if p.suffix in (".png", ".jpg"))
    return [
        {
            "name": name,
            "src": url_for("media", name, settings=settings, mount="/media", w=320, fm="auto"),
            "srcset": srcset(
                "media", name, [320, 640], settings=settings, mount="/media", fm="auto"
            ),
        }
        for name in names
    ]


@app.post("/api/upload", status_code=201)
async def upload(file: UploadFile) -> dict[str, object]:
    """The server's checks (sniffed format against approval, byte and pixel limits, frames,
    a small decode) before the file is kept: what is accepted here is what /media serves."""
    limit = settings.stores["uploads"].limits.max_source_bytes
    data = await file.read(limit + 1)  # one byte more than allowed is enough to refuse it
    try:
        info = await run_in_threadpool(inspect, data, settings=settings, store="uploads")
    except ImageProxyError as error:
        raise HTTPException(error.status, {"error": error.code, "detail": error.detail}) from None
    name = f"{uuid.uuid4().hex}.{EXTENSIONS[info.format]}"
    (UPLOADS / name).write_bytes(data)
    thumb = url_for("uploads", name, settings=settings, mount="/media", w=240, h=240, fit="cover")
    return {"name": name, "width": info.width, "height": info.height, "thumb": thumb}


app.mount("/media", ImageProxy(settings))
