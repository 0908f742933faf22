"""Source bytes -> what their headers declare, before any decoder runs: the largest size
declared anywhere (every ICO entry, TIFF page, AVIF/HEIF `ispe`), frames counted no further
than a stop, and a JPEG's scans (SPEC §4.1, §10).

Pure and Pillow-free on purpose: a bomb is refused before a library allocates, and a file
whose work is out of proportion to its bytes (a million frames, hundreds of scans) before
the work starts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Literal

Check = Callable[[], None]  # called now and then by long walks: raises when out of time


def _never() -> None:
    return None


def _u16le(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "little")


def _u24le(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 3], "little")


def _u32be(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "big")


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): not DHT/JPG/DAC.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def declared_size(fmt: str | None, data: bytes) -> tuple[int, int] | None:
    """Width and height as the header declares them, read without any decoder, so a
    decompression bomb is refused before a library allocates for it. None: not found."""
    if fmt == "PNG" and len(data) >= 24 and data[12:16] == b"IHDR":
        return _u32be(data, 16), _u32be(data, 20)
    if fmt == "GIF" and len(data) >= 10:
        return _u16le(data, 6), _u16le(data, 8)
    if fmt == "BMP" and len(data) >= 26:
        width = int.from_bytes(data[18:22], "little", signed=True)
        height = int.from_bytes(data[22:26], "little", signed=True)
        return abs(width), abs(height)
    if fmt == "WEBP":
        return _webp_size(data)
    if fmt == "JPEG":
        return _jpeg_size(data)
    if fmt in ("ICO", "CUR"):
        return _largest(_ico_sizes(data))
    if data[:4] in _TIFF_MAGIC:
        return _largest(islice(_tiff_sizes(data), TIFF_PAGES_CHECKED))
    if data[4:8] == b"ftyp":  # AVIF, HEIF: every `ispe` (image spatial extent) property
        return _largest(_bmff_sizes(data))
    return None


def _largest(sizes: Iterable[tuple[int, int]]) -> tuple[int, int] | None:
    return max(sizes, key=lambda size: size[0] * size[1], default=None)


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return _u24le(data, 24) + 1, _u24le(data, 27) + 1
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30:
        return _u16le(data, 26) & 0x3FFF, _u16le(data, 28) & 0x3FFF
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _SOF:
            return int.from_bytes(data[at + 7 : at + 9], "big"), int.from_bytes(
                data[at + 5 : at + 7], "big"
            )
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:  # markers without a length
            at += 2
            continue
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return None


def _ico_sizes(data: bytes) -> Iterator[tuple[int, int]]:
    """Every ICO/CUR entry: its directory size, and the PNG or BMP header it embeds (Pillow
    decodes the largest entry while opening the file)."""
    count = _u16le(data, 4)
    for at in range(6, min(6 + 16 * count, len(data) - 15), 16):
        yield data[at] or 256, data[at + 1] or 256
        offset = int.from_bytes(data[at + 12 : at + 16], "little")
        embedded = data[offset : offset + 26]
        if embedded[:8] == b"\x89PNG\r\n\x1a\n" and embedded[12:16] == b"IHDR":
            yield _u32be(embedded, 16), _u32be(embedded, 20)
        elif len(embedded) >= 12 and _u32le(embedded, 0) == 12:  # OS/2 core header
            yield _u16le(embedded, 4), _u16le(embedded, 6)
        elif len(embedded) >= 12:
            width = int.from_bytes(embedded[4:8], "little", signed=True)
            height = int.from_bytes(embedded[8:12], "little", signed=True)
            yield abs(width), abs(height)  # the height counts the AND mask too


def _u32le(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "little")


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
TIFF_PAGES_CHECKED = 1024  # pages further on are checked as they are reached (render)
_TIFF_ENTRY_BUDGET = 1 << 20  # directory entries read in all, whatever the pages


def _endian(data: bytes) -> Literal["little", "big"]:
    return "little" if data[:2] == b"II" else "big"


def _tiff_ifds(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(offset, entry count, entry size) of each image directory in turn, ending at a loop."""
    order = _endian(data)
    big = data[2:4] in (b"+\x00", b"\x00+")
    width = 8 if big else 4
    at = int.from_bytes(data[8:16] if big else data[4:8], order)
    seen: set[int] = set()
    while 8 <= at < len(data) and at not in seen:
        seen.add(at)
        count_size, entry_size = (8, 20) if big else (2, 12)
        count = int.from_bytes(data[at : at + count_size], order)
        yield at + count_size, count, entry_size
        following = at + count_size + count * entry_size
        if following + width > len(data):
            return
        at = int.from_bytes(data[following : following + width], order)


def _tiff_sizes(data: bytes) -> Iterator[tuple[int, int]]:
    """Each page's ImageWidth and ImageLength, within a budget of directory entries."""
    order = _endian(data)
    budget = _TIFF_ENTRY_BUDGET
    for first, count, entry_size in _tiff_ifds(data):
        size = [0, 0]
        for at in range(first, min(first + count * entry_size, len(data)), entry_size):
            budget -= 1
            if budget < 0:
                return
            tag = int.from_bytes(data[at : at + 2], order)
            if tag in (256, 257):
                kind = int.from_bytes(data[at + 2 : at + 4], order)
                value = at + 8 if entry_size == 12 else at + 12
                span = 2 if kind == 3 else 4 if entry_size == 12 or kind != 16 else 8
                size[tag - 256] = int.from_bytes(data[value : value + span], order)
        yield size[0], size[1]


_BMFF_CONTAINERS = {b"meta": 4, b"iprp": 0, b"ipco": 0}  # box -> header bytes to skip


def _bmff_sizes(
    data: bytes, start: int = 0, end: int | None = None, depth: int = 0
) -> Iterator[tuple[int, int]]:
    """Every `ispe` box under meta/iprp/ipco (the primary image, grid tiles, thumbnails)."""
    at, end = start, len(data) if end is None else end
    while at + 8 <= end and depth < 4:
        size, kind, header = _u32be(data, at), data[at + 4 : at + 8], 8
        if size == 1:
            size, header = int.from_bytes(data[at + 8 : at + 16], "big"), 16
        elif size == 0:
            size = end - at
        if size < header:
            return
        if kind == b"ispe" and at + 20 <= end:
            yield _u32be(data, at + 12), _u32be(data, at + 16)
        elif kind in _BMFF_CONTAINERS:
            inner = at + header + _BMFF_CONTAINERS[kind]
            yield from _bmff_sizes(data, inner, min(at + size, end), depth + 1)
        at += size


def count_frames(fmt: str | None, data: bytes, stop: int, check: Check = _never) -> int | None:
    """How many frames the container holds, counted no further than `stop` (so a flood of
    frames costs no more than `stop` of them); None: not a format counted here."""
    if fmt == "GIF":
        return _gif_frames(data, stop, check)
    if data[:4] in _TIFF_MAGIC:
        count = 0
        for _ in _tiff_ifds(data):
            count += 1
            if count >= stop:
                break
        return count
    return None


_GIF_BLOCK = re.compile(rb"[\x21\x2c\x3b]")  # extension, image, trailer


def _gif_frames(data: bytes, stop: int, check: Check) -> int:
    """Image descriptors, walked as Pillow does (it skips stray bytes between blocks)."""
    if len(data) < 13:
        return 0
    at = 13 + (3 * (2 << (data[10] & 7)) if data[10] & 0x80 else 0)
    frames = 0
    while frames < stop:
        found = _GIF_BLOCK.search(data, at)
        if found is None or data[found.start()] == 0x3B:
            break
        at = found.start()
        if data[at] == 0x2C:
            frames += 1
            flags = data[at + 9] if at + 9 < len(data) else 0
            at += 10 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0) + 1  # + LZW code size
        else:
            at += 2
        at = _skip_sub_blocks(data, at, check)
    return frames


def _skip_sub_blocks(data: bytes, at: int, check: Check) -> int:
    steps = 0
    while at < len(data) and data[at]:
        at += data[at] + 1
        steps += 1
        if steps & 0xFFF == 0:
            check()  # tiny sub-blocks: a walk as long as the file
    return at + 1


_SOS = 0xDA
_ENTROPY_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # the first marker after a scan's data
MAX_JPEG_SEGMENTS = 65_536  # far beyond any real file; more is refused like too many scans


def jpeg_scans(data: bytes, stop: int) -> int:
    """The scans (SOS segments) of the first JPEG image, counted no further than `stop`: libjpeg
    walks every block of the image for each, however few bytes the scan has. A file with
    more than MAX_JPEG_SEGMENTS segments counts as `stop`."""
    scans = segments = 0
    at = 2
    while at + 4 <= len(data) and scans < stop:
        if data[at] != 0xFF or data[at + 1] in (0x00, 0xFF) or 0xD0 <= data[at + 1] <= 0xD7:
            found = _ENTROPY_END.search(data, at + 1)
            if found is None:
                break
            at = found.start()
            continue
        marker = data[at + 1]
        if marker == 0xD9:
            break
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            return stop
        scans += marker == _SOS
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return scans
