"""SPEC §11.1 "A library does not change its host": a host app that uses Pillow itself imports
imgproxy, builds an ImageProxy and serves renditions through it (bombs still refused with 413,
a HEIC decoded), and its own Pillow is as before: `Image.MAX_IMAGE_PIXELS`, the warning
filters, the registered plugins and `LOAD_TRUNCATED_IMAGES` unchanged, its own 60 MP photo
opens and loads. In a fresh interpreter: the test process's own Pillow is pytest's."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import httpx
from PIL import Image

from tests.support import hostile, images, need_binary
from tests.support.processes import served

HOST = """
import asyncio, io, json, sys, warnings
import httpx
from PIL import Image, ImageFile

Image.init()  # the host's own Pillow use has registered Pillow's plugins


def state():
    return {
        "max_image_pixels": Image.MAX_IMAGE_PIXELS,
        "warning_filters": [repr(f) for f in warnings.filters],
        "load_truncated_images": ImageFile.LOAD_TRUNCATED_IMAGES,
        "openers": sorted(Image.OPEN),
        "ids": list(Image.ID),
        "savers": sorted(Image.SAVE),
        "mimes": sorted(Image.MIME.items()),
        "extensions": sorted(Image.EXTENSION.items()),
    }


async def main(folder):
    seen = {"before": state()}
    from imgproxy import ImageProxy
    from imgproxy.settings import Settings

    seen["imported"] = state()
    store = {"kind": "fs", "root": folder, "approved": True}
    proxy = ImageProxy(Settings.from_mapping({"stores": {"media": store}}, env={}))
    seen["built"] = state()
    statuses = {}
    transport = httpx.ASGITransport(app=proxy)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as http:
        for path in ("photo.jpg?w=100", "photo.jpg?w=80&fm=webp", "photo.jpg?fm=json",
                     "bomb.png?w=50", "bomb.png?fm=json", "frame.gif?w=50", "photo.heic?w=50"):
            statuses[path] = (await http.get("/media/" + path)).status_code
    seen["statuses"] = statuses
    seen["served"] = state()
    with Image.open(folder + "/big.png") as big:  # the host's own 60 MP photo
        big.load()
        seen["big"] = big.size
    print(json.dumps(seen))


asyncio.run(main(sys.argv[1]))
"""


def gif_frame_past_canvas(left: int, top: int) -> bytes:
    """An 8x8 GIF whose one frame sits at (left, top): Pillow grows the canvas to the frame's
    extent as it reaches it, past what the header's screen size declares."""
    data = bytearray(images.gif(1, (8, 8)))
    at = 13 + (3 * (2 << (data[10] & 7)) if data[10] & 0x80 else 0)  # past the global palette
    while data[at] == 0x21:  # extensions: label, then sub-blocks
        at += 2
        while data[at]:
            at += data[at] + 1
        at += 1
    assert data[at] == 0x2C  # the image descriptor
    data[at + 1 : at + 5] = struct.pack("<HH", left, top)
    return bytes(data)


def test_a_host_app_keeps_its_pillow(tmp_path: Path) -> None:
    need_binary("heif-enc")
    (tmp_path / "photo.jpg").write_bytes(images.jpeg((320, 240)))
    (tmp_path / "photo.heic").write_bytes(images.heif(images.photo((64, 48))))
    (tmp_path / "bomb.png").write_bytes(hostile.png_bomb(8_000, 8_000))  # 64 MP: over 50 MP
    (tmp_path / "frame.gif").write_bytes(gif_frame_past_canvas(9_000, 9_000))
    Image.new("L", (10_000, 6_000), 128).save(tmp_path / "big.png", compress_level=1)
    root = Path(__file__).resolve().parents[2]
    found = subprocess.run(
        [sys.executable, "-c", HOST, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
        check=False,
    )
    assert found.returncode == 0, found.stderr[-3000:]
    seen = json.loads(found.stdout)
    assert seen["statuses"] == {
        "photo.jpg?w=100": 200,
        "photo.jpg?w=80&fm=webp": 200,
        "photo.jpg?fm=json": 200,
        "bomb.png?w=50": 413,
        "bomb.png?fm=json": 413,
        "frame.gif?w=50": 413,
        "photo.heic?w=50": 200,
    }
    for stage in ("imported", "built", "served"):
        assert seen[stage] == seen["before"], stage
    assert seen["big"] == [10_000, 6_000]


def test_a_gif_frame_past_its_canvas_is_measured() -> None:
    from imgproxy import headers

    assert headers.gif_canvas(gif_frame_past_canvas(9_000, 9_000), 10) == (9_008, 9_008)
    assert headers.gif_canvas(images.gif(3, (120, 80)), 10) == (120, 80)


def test_the_server_program_allows_what_it_is_configured_to(tmp_path: Path) -> None:
    """`imgproxy serve` owns its process: a limit above twice Pillow's default is honoured."""
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "wide.png").write_bytes(hostile.png_bomb(14_000, 14_000))  # 196 MP
    config = tmp_path / "imgproxy.toml"
    config.write_text(
        "[limits]\nmax_source_pixels = 250000000\n"
        '[stores.media]\nkind = "fs"\nroot = "media"\napproved = true\n'
    )
    with served(config) as server:
        answer = httpx.get(server.url + "/media/wide.png?fm=json")
    assert answer.status_code == 200, answer.text
    assert (answer.json()["width"], answer.json()["height"]) == (14_000, 14_000)
