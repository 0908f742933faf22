"""ICO/CUR entries, TIFF pages and GIF frames -> the sizes they declare and how many there
are, each walk bounded (pages, directory entries, frames) and checked for time."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

from imgproxy.headers.binary import Check, never, u16le, u32be, u32le


def ico_sizes(data: bytes) -> Iterator[tuple[int, int]]:
    """Every ICO/CUR entry: its directory size, and the PNG or BMP header it embeds (Pillow
    decodes the largest entry while opening the file)."""
    count = u16le(data, 4)
    for at in range(6, min(6 + 16 * count, len(data) - 15), 16):
        yield data[at] or 256, data[at + 1] or 256
        offset = int.from_bytes(data[at + 12 : at + 16], "little")
        embedded = data[offset : offset + 26]
        if embedded[:8] == b"\x89PNG\r\n\x1a\n" and embedded[12:16] == b"IHDR":
            yield u32be(embedded, 16), u32be(embedded, 20)
        elif len(embedded) >= 12 and u32le(embedded, 0) == 12:  # OS/2 core header
            yield u16le(embedded, 4), u16le(embedded, 6)
        elif len(embedded) >= 12:
            width = int.from_bytes(embedded[4:8], "little", signed=True)
            height = int.from_bytes(embedded[8:12], "little", signed=True)
            yield abs(width), abs(height)  # the height counts the AND mask too


TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
TIFF_PAGES_CHECKED = 1024  # pages further on are checked as they are reached (render)
_TIFF_ENTRY_BUDGET = 1 << 20  # directory entries read in all, whatever the pages


def _endian(data: bytes) -> Literal["little", "big"]:
    return "little" if data[:2] == b"II" else "big"


def tiff_ifds(data: bytes) -> Iterator[tuple[int, int, int]]:
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


def tiff_sizes(data: bytes) -> Iterator[tuple[int, int]]:
    """Each page's ImageWidth and ImageLength, within a budget of directory entries."""
    order = _endian(data)
    budget = _TIFF_ENTRY_BUDGET
    for first, count, entry_size in tiff_ifds(data):
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


_GIF_BLOCK = re.compile(rb"[\x21\x2c\x3b]")  # extension, image, trailer


def gif_frames(data: bytes, stop: int, check: Check) -> int:
    return sum(1 for _ in _gif_descriptors(data, stop, check))


def gif_canvas(data: bytes, stop: int, check: Check = never) -> tuple[int, int]:
    """The canvas a GIF grows to over its first `stop` frames: Pillow widens it to each
    frame's extent as it seeks, and allocates that extent (the frame's disposal) while
    seeking, before a caller can see the new size."""
    width, height = (u16le(data, 6), u16le(data, 8)) if len(data) >= 10 else (0, 0)
    for at in _gif_descriptors(data, stop, check):
        if at + 9 <= len(data):
            width = max(width, u16le(data, at + 1) + u16le(data, at + 5))
            height = max(height, u16le(data, at + 3) + u16le(data, at + 7))
    return width, height


def _gif_descriptors(data: bytes, stop: int, check: Check) -> Iterator[int]:
    """Where each image descriptor starts, walked as Pillow does (it skips stray bytes
    between blocks), no further than `stop` of them."""
    if len(data) < 13:
        return
    at = 13 + (3 * (2 << (data[10] & 7)) if data[10] & 0x80 else 0)
    frames = 0
    while frames < stop:
        found = _GIF_BLOCK.search(data, at)
        if found is None or data[found.start()] == 0x3B:
            break
        at = found.start()
        if data[at] == 0x2C:
            frames += 1
            yield at
            flags = data[at + 9] if at + 9 < len(data) else 0
            at += 10 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0) + 1  # + LZW code size
        else:
            at += 2
        at = _skip_sub_blocks(data, at, check)


def _skip_sub_blocks(data: bytes, at: int, check: Check) -> int:
    steps = 0
    while at < len(data) and data[at]:
        at += data[at] + 1
        steps += 1
        if steps & 0xFFF == 0:
            check()  # tiny sub-blocks: a walk as long as the file
    return at + 1
