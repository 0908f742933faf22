"""A hostile-input corpus, generated: truncated and corrupt images, non-images named like
images, polyglots, headers declaring absurd sizes, frame bombs, formats needing approval."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

from PIL import Image

from tests import images


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG signature and IHDR declaring `width` x `height`, with a tiny IDAT."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def jpeg_bomb() -> bytes:
    """A real JPEG whose SOF0 is patched to declare 65535 x 65535 (the format's maximum)."""
    data = bytearray(images.jpeg((64, 48)))
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", 65535, 65535)
    return bytes(data)


def gif_bomb() -> bytes:
    data = bytearray(images.gif(1, (8, 8)))
    data[6:10] = struct.pack("<HH", 65535, 65535)
    return bytes(data)


def webp_bomb() -> bytes:
    """An extended (VP8X) WebP declaring a 16384 x 16384 canvas around a small real frame."""
    small = images.encode(images.photo((16, 16)), "WEBP", quality=50)
    frame = small[12:]  # the "VP8 " chunk of a simple lossy file
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (16383).to_bytes(3, "little") * 2
    body = b"WEBP" + vp8x + frame
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_lossless_bomb() -> bytes:
    bits = (16383) | (16383 << 14)
    payload = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 16
    chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload
    body = b"WEBP" + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def bmp_bomb() -> bytes:
    data = bytearray(images.encode(images.photo((8, 8)), "BMP"))
    data[18:26] = struct.pack("<ii", 100_000, 100_000)
    return bytes(data)


def many_frames_gif(frames: int = 3000) -> bytes:
    colours = [(255, 0, 0), (0, 0, 255)]
    first = Image.new("RGB", (2, 2), colours[0])
    rest = [Image.new("RGB", (2, 2), colours[(i + 1) % 2]) for i in range(frames - 1)]
    buffer = io.BytesIO()
    first.save(buffer, "GIF", save_all=True, append_images=rest, duration=20, optimize=False)
    return buffer.getvalue()


def noisy_jpeg(size: tuple[int, int]) -> bytes:
    return images.encode(Image.effect_noise(size, 100).convert("RGB"), "JPEG", quality=95)


def write_corpus(pending: Path, approved: Path, small: Path) -> None:
    jpeg, png = images.jpeg((800, 600)), images.png((400, 300))
    files = {
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "cut-header.jpg": jpeg[:100],
        "truncated.png": png[: len(png) // 2],
        "cut-header.png": png[:20],
        "random.png": random.Random(7).randbytes(5000),
        "empty.jpg": b"",
        "page.png": b"<!doctype html><html><script>alert(document.cookie)</script></html>",
        "vector.png": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "doc.png": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n",
        "polyglot.gif": b"GIF89a/*\x00\x00\x00\x00\x00*/=alert(1);//" + b"\x00" * 64,
        "polyglot.jpg": jpeg + b"<html><script>alert(1)</script></html>",
        "bomb.png": png_bomb(),
        "bomb.jpg": jpeg_bomb(),
        "bomb.gif": gif_bomb(),
        "bomb.webp": webp_bomb(),
        "bomb-lossless.webp": webp_lossless_bomb(),
        "frames.gif": many_frames_gif(),
        "photo.tif": images.encode(images.photo((64, 48)), "TIFF"),
        "photo.bmp": images.encode(images.photo((64, 48)), "BMP"),
        "icon.ico": images.encode(images.photo((32, 32)), "ICO"),
        "photo.avif": images.encode(images.photo((64, 48)), "AVIF"),
    }
    for name, data in files.items():
        (pending / name).write_bytes(data)
        (approved / name).write_bytes(data)
    (approved / "bomb.bmp").write_bytes(bmp_bomb())
    (pending / "blessed.tif").write_bytes(files["photo.tif"])
    (pending / "blessed.tif.meta.json").write_text('{"approved": true}')
    (pending / "broken-sidecar.tif").write_bytes(files["photo.tif"])
    (pending / "broken-sidecar.tif.meta.json").write_text('{"approved": tru')
    (approved / "revoked.jpg").write_bytes(images.jpeg((64, 48)))
    (approved / "revoked.jpg.meta.json").write_text('{"approved": false}')
    (small / "big.jpg").write_bytes(noisy_jpeg((600, 600)))
    (small / "ok.jpg").write_bytes(images.jpeg((64, 48)))
