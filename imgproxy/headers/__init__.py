"""Source bytes -> what their headers declare, before any decoder runs: the largest size
declared anywhere (every ICO entry, TIFF page, AVIF/HEIF `ispe`), frames counted no further
than a stop, and a JPEG's scans (SPEC §4.1, §10).

Pure and Pillow-free on purpose: a bomb is refused before a library allocates, and a file
whose work is out of proportion to its bytes (a million frames, hundreds of scans) before
the work starts. A HEIF's grid and overlay canvases count too: libheif allocates a canvas
before it finds that the canvas disagrees with the `ispe`. So do a HEIF or AVIF file's item
references (a decoder decodes an item each time one reaches it) and the frame size of each
AV1 sequence header (the decoder allocates that, whatever the `ispe` says).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

from imgproxy.headers.binary import Check, never, u16le, u24le, u32be
from imgproxy.headers.bmff import MAX_DECODES, bmff_sizes
from imgproxy.headers.decodes import MAX_DERIVED_DEPTH, ItemWork, item_work
from imgproxy.headers.jpeg import MAX_EXIF_SEGMENTS, JpegFrame, jpeg_frame, jpeg_scans, jpeg_size
from imgproxy.headers.raster import (
    TIFF_MAGIC,
    TIFF_PAGES_CHECKED,
    gif_canvas,
    gif_frames,
    ico_sizes,
    tiff_ifds,
    tiff_sizes,
)

__all__ = [
    "MAX_DECODES",
    "MAX_DERIVED_DEPTH",
    "MAX_EXIF_SEGMENTS",
    "ItemWork",
    "JpegFrame",
    "count_frames",
    "declared_size",
    "gif_canvas",
    "header_end",
    "item_work",
    "jpeg_frame",
    "jpeg_scans",
]


def declared_size(fmt: str | None, data: bytes) -> tuple[int, int] | None:
    """Width and height as the header declares them, read without any decoder, so a
    decompression bomb is refused before a library allocates for it. None: not found."""
    if fmt == "PNG" and len(data) >= 24 and data[12:16] == b"IHDR":
        return u32be(data, 16), u32be(data, 20)
    if fmt == "GIF" and len(data) >= 10:
        return u16le(data, 6), u16le(data, 8)
    if fmt == "BMP" and len(data) >= 26:
        width = int.from_bytes(data[18:22], "little", signed=True)
        height = int.from_bytes(data[22:26], "little", signed=True)
        return abs(width), abs(height)
    if fmt == "WEBP":
        return _webp_size(data)
    if fmt == "JPEG":
        return jpeg_size(data)
    if fmt in ("ICO", "CUR"):
        return _largest(ico_sizes(data))
    if data[:4] in TIFF_MAGIC:
        return _largest(islice(tiff_sizes(data), TIFF_PAGES_CHECKED))
    if data[4:8] == b"ftyp":  # AVIF, HEIF: every `ispe` (image spatial extent) property
        return _largest(bmff_sizes(data))
    return None


def _largest(sizes: Iterable[tuple[int, int]]) -> tuple[int, int] | None:
    return max(sizes, key=lambda size: size[0] * size[1], default=None)


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return u24le(data, 24) + 1, u24le(data, 27) + 1
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30:
        return u16le(data, 26) & 0x3FFF, u16le(data, 28) & 0x3FFF
    return None


def header_end(fmt: str | None, data: bytes) -> int | None:
    """Where the image data starts, when `data` holds everything before it: a JPEG's first
    scan, a PNG's first IDAT chunk. Everything a decoder reads on opening such a file (its
    size, orientation, mode, frames, a progressive JPEG's buffers) lies before that, so its
    facts can be learned from a file's head alone. None: another format, or not within."""
    if fmt == "JPEG":
        frame = jpeg_frame(data)
        return frame.data_at if frame is not None else None
    if fmt == "PNG":
        at = 8
        while at + 8 <= len(data):  # each chunk: length, type, data, CRC
            if data[at + 4 : at + 8] == b"IDAT":
                return at + 8
            at += 12 + u32be(data, at)
    return None


def count_frames(fmt: str | None, data: bytes, stop: int, check: Check = never) -> int | None:
    """How many frames the container holds, counted no further than `stop` (so a flood of
    frames costs no more than `stop` of them); None: not a format counted here."""
    if fmt == "GIF":
        return gif_frames(data, stop, check)
    if data[:4] in TIFF_MAGIC:
        count = 0
        for _ in tiff_ifds(data):
            count += 1
            if count >= stop:
                break
        return count
    return None
