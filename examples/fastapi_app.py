"""FastAPI: the proxy mounted at /media, and an API that hands out responsive image URLs.

.venv/bin/uvicorn examples.fastapi_app:app --port 8083
http://127.0.0.1:8083/api/gallery
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from imgproxy import ImageProxy, Settings, srcset, url_for

MEDIA = Path(__file__).resolve().parent / "media"
settings = Settings.from_mapping(
    {
        "security": {"keys": ["example-signing-key"]},
        "stores": {"media": {"kind": "fs", "root": str(MEDIA), "approved": True}},
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


app.mount("/media", ImageProxy(settings))
