"""A worker loads the Pillow plugins and libraries of what it is sent, not of everything it
could be sent: JPEG sources rendered to JPEG and WebP never load the AVIF plugin (libavif,
2.5 MiB a worker) or LittleCMS (1.4 MiB); the first AVIF output and the first CMYK source
load theirs, and render correctly. Checked in a fresh interpreter that imports nothing else
(tests.support loads LittleCMS for its own images)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imgproxy.render import AVIF_AVAILABLE
from tests.support import images

SCRIPT = """
import asyncio, io, json, sys
import httpx
from PIL import Image
from imgproxy import ImageProxy
from imgproxy.settings import Settings

LAZY = ("PIL.AvifImagePlugin", "PIL._avif", "PIL.ImageCms")

async def main(folder):
    store = {"kind": "fs", "root": folder, "approved": True}
    proxy = ImageProxy(Settings.from_mapping({"stores": {"media": store}}, env={}))
    seen = {}
    transport = httpx.ASGITransport(app=proxy)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as http:
        async def get(query, path="photo.jpg"):
            response = await http.get(f"/media/{path}?{query}")
            assert response.status_code == 200, (query, response.text)
            return Image.open(io.BytesIO(response.content))
        for query in ("w=100&fm=jpeg", "w=120&fm=webp", "w=90&h=90&fit=cover&fm=jpeg"):
            await get(query)
        seen["jpeg_webp"] = [name for name in LAZY if name in sys.modules]
        seen["avif"] = (await get("w=100&fm=avif")).format
        seen["after_avif"] = [name for name in LAZY if name in sys.modules]
        seen["cmyk"] = (await get("w=50&fm=jpeg", "cmyk.jpg")).getpixel((25, 10))
        seen["after_cmyk"] = "PIL.ImageCms" in sys.modules
    print(json.dumps(seen))

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.skipif(not AVIF_AVAILABLE, reason="this Pillow writes no AVIF")
def test_plugins_load_with_what_is_sent(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (media / "photo.jpg").write_bytes(images.jpeg((320, 240)))
    (media / "cmyk.jpg").write_bytes(images.cmyk_jpeg())
    root = Path(__file__).resolve().parents[2]
    found = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(media)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
        check=False,
    )
    assert found.returncode == 0, found.stderr
    seen = json.loads(found.stdout)
    assert seen["jpeg_webp"] == []
    assert seen["avif"] == "AVIF"
    assert "PIL.AvifImagePlugin" in seen["after_avif"]
    assert "PIL.ImageCms" not in seen["after_avif"]
    assert seen["after_cmyk"] is True
    red, green, blue = seen["cmyk"]  # pure red in CMYK, as RGB
    assert red > 200 and green < 60 and blue < 60
