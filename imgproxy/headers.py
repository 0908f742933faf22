"""Source bytes -> what their headers declare, before any decoder runs: the largest size
declared anywhere (every ICO entry, TIFF page, AVIF/HEIF `ispe`), frames counted no further
than a stop, and a JPEG's scans (SPEC §4.1, §10).

Pure and Pillow-free on purpose: a bomb is refused before a library allocates, and a file
whose work is out of proportion to its bytes (a million frames, hundreds of scans) before
the work starts. A HEIF's grid and overlay canvases count too: libheif allocates a canvas
before it finds that the canvas disagrees with the `ispe`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
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
_SOS = 0xDA
_TEM = 0x01  # a marker without a length segment (like SOI, EOI and RSTn)


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
    frame = jpeg_frame(data)
    return frame.size if frame is not None else None


# Progressive and arithmetic-progressive frames: libjpeg buffers every coefficient.
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_EXIF = b"Exif\x00\x00"
# Pillow appends each Exif segment to the ones before it, a copy of all of them each time: 700
# segments of 64 KiB cost seconds. A camera writes one; more are refused before Pillow opens.
MAX_EXIF_SEGMENTS = 16
COEFFICIENT_BYTES = 64 * 2  # one 8x8 block of 16-bit DCT coefficients


@dataclass(frozen=True, slots=True)
class JpegFrame:
    """The first frame of a JPEG as its segments before the first scan declare it."""

    size: tuple[int, int]  # width, height
    sampling: tuple[tuple[int, int], ...]  # each component's (horizontal, vertical) factor
    buffered: bool  # progressive, or a first scan without every component
    exif_segments: int  # APP1 Exif segments before the first scan

    @property
    def coefficient_bytes(self) -> int:
        """What libjpeg allocates before decoding a pixel of a buffered (multi-scan) image:
        every block of every component, whatever the DCT scale asked; 0 when it streams."""
        if not self.buffered or not self.sampling:
            return 0
        width, height = self.size
        most_h = max(h for h, _ in self.sampling)
        most_v = max(v for _, v in self.sampling)
        blocks = 0
        for h, v in self.sampling:  # as jdinput.c sizes each component, padded to whole MCUs
            across = _ceil(_ceil(width * h, most_h * 8), h) * h
            down = _ceil(_ceil(height * v, most_v * 8), v) * v
            blocks += across * down
        return blocks * COEFFICIENT_BYTES


def jpeg_frame(data: bytes) -> JpegFrame | None:
    """The segments up to the first scan, walked without a decoder and no further than
    MAX_JPEG_SEGMENTS: None when no frame header comes first."""
    at, frame, exif = 2, None, 0
    for _ in range(MAX_JPEG_SEGMENTS):
        if at + 4 > len(data) or data[at] != 0xFF:
            break
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == _TEM or 0xD0 <= marker <= 0xD9:  # markers without a length
            at += 2
            continue
        if marker in _SOF and frame is None and at + 9 <= len(data):
            count = data[at + 9] if at + 9 < len(data) else 0
            factors = data[at + 10 : at + 10 + 3 * count]
            sampling = tuple((b >> 4 or 1, b & 15 or 1) for b in factors[1::3])
            size = (_u16be(data, at + 7), _u16be(data, at + 5))
            frame = (size, sampling, marker in _PROGRESSIVE)
        elif marker == 0xE1 and data[at + 4 : at + 10] == _EXIF:
            exif += 1
        elif marker == _SOS:
            if frame is None:
                return None
            size, sampling, progressive = frame
            in_scan = data[at + 4] if at + 4 < len(data) else len(sampling)
            return JpegFrame(size, sampling, progressive or in_scan < len(sampling), exif)
        at += 2 + _u16be(data, at + 2)
    if frame is None:
        return None
    size, sampling, progressive = frame
    return JpegFrame(size, sampling, progressive, exif)


def _u16be(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "big")


def _ceil(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


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


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, end) of each ISOBMFF box in data[start:end]."""
    at = start
    while at + 8 <= end:
        size, kind, header = _u32be(data, at), data[at + 4 : at + 8], 8
        if size == 1:
            size, header = int.from_bytes(data[at + 8 : at + 16], "big"), 16
        elif size == 0:
            size = end - at
        if size < header:
            return
        yield kind, at + header, min(at + size, end)
        at += size


def _bmff_sizes(
    data: bytes, start: int = 0, end: int | None = None, depth: int = 0
) -> Iterator[tuple[int, int]]:
    """Every `ispe` box under meta/iprp/ipco (the primary image, grid tiles, thumbnails),
    and every grid or overlay canvas: libheif allocates a canvas before it compares its
    size with the `ispe`, so a 64x48 item can declare a gigapixel canvas."""
    end = len(data) if end is None else end
    for kind, inner, stop in _boxes(data, start, end):
        if kind == b"ispe" and inner + 12 <= stop:
            yield _u32be(data, inner + 4), _u32be(data, inner + 8)
        elif kind in _BMFF_CONTAINERS and depth < 3:
            yield from _bmff_sizes(data, inner + _BMFF_CONTAINERS[kind], stop, depth + 1)
        if kind == b"meta" and depth == 0:
            yield from _canvas_sizes(data, inner + 4, stop)


# Derived image item -> where its data gives the output width and height: past version
# and flags, then a grid's rows and columns, an overlay's four 16-bit fill values.
_CANVAS_AT = {b"grid": 4, b"iovl": 10}
_EXTENTS_READ = 4  # of one item's data: more are skipped, never walked


def _canvas_sizes(data: bytes, start: int, end: int) -> Iterator[tuple[int, int]]:
    """The output size of each grid and overlay item of a `meta` box's children."""
    boxes = {kind: (inner, stop) for kind, inner, stop in _boxes(data, start, end)}
    derived = dict(_item_types(data, *boxes.get(b"iinf", (0, 0))))
    stores = {0: (0, len(data)), 1: boxes.get(b"idat")}  # construction method -> bytes
    for item, method, spans in _item_locations(data, *boxes.get(b"iloc", (0, 0))):
        kind, store = derived.get(item), stores.get(method)
        if kind not in _CANVAS_AT or store is None:
            continue
        origin, bound = store
        head = b"".join(  # the item's first bytes, across its extents (0: to the end)
            data[origin + at : min(origin + at + (length or 20), bound)] for at, length in spans
        )[:20]
        if len(head) < 2:
            continue
        field = 4 if head[1] & 1 else 2  # flags bit 0: 32-bit width and height
        at = _CANVAS_AT[kind]
        yield (
            int.from_bytes(head[at : at + field], "big"),
            int.from_bytes(head[at + field : at + 2 * field], "big"),
        )


def _item_types(data: bytes, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(item ID, item type) of each version 2/3 `infe` entry of an `iinf` box."""
    skip = 4 + (2 if start < end and data[start] == 0 else 4)  # version, flags, entry count
    for kind, inner, stop in _boxes(data, start + skip, end):
        version = data[inner] if kind == b"infe" and inner < stop else 0
        width = 2 if version == 2 else 4
        if version in (2, 3) and inner + 10 + width <= stop:
            item = int.from_bytes(data[inner + 4 : inner + 4 + width], "big")
            yield item, data[inner + 6 + width : inner + 10 + width]


def _item_locations(
    data: bytes, start: int, end: int
) -> Iterator[tuple[int, int, list[tuple[int, int]]]]:
    """(item ID, construction method, [(offset, length), ...]) of each item of an `iloc`
    box, with its first few extents: each item costs a few steps, however many it declares."""
    if start + 8 > end:
        return
    version, sizes = data[start], int.from_bytes(data[start + 4 : start + 6], "big")
    offset_size, length_size, base_size = sizes >> 12, sizes >> 8 & 15, sizes >> 4 & 15
    index_size = sizes & 15 if version in (1, 2) else 0
    id_size, method_size = (4 if version == 2 else 2), (2 if version in (1, 2) else 0)
    count = int.from_bytes(data[start + 6 : start + 6 + id_size], "big")
    at = start + 6 + id_size
    extent_size = index_size + offset_size + length_size
    for _ in range(count):
        if at + id_size + method_size + 2 + base_size + 2 > end:
            return
        item = int.from_bytes(data[at : at + id_size], "big")
        at += id_size
        method = data[at + 1] & 15 if method_size else 0
        at += method_size + 2  # and the data reference index
        base = int.from_bytes(data[at : at + base_size], "big")
        extents = int.from_bytes(data[at + base_size : at + base_size + 2], "big")
        at += base_size + 2
        spans = []
        for extent in range(min(extents, _EXTENTS_READ)):
            value = at + extent * extent_size + index_size
            offset = int.from_bytes(data[value : value + offset_size], "big")
            length = data[value + offset_size : value + offset_size + length_size]
            spans.append((base + offset, int.from_bytes(length, "big")))
        yield item, method, spans
        at += extents * extent_size


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
    return sum(1 for _ in _gif_descriptors(data, stop, check))


def gif_canvas(data: bytes, stop: int, check: Check = _never) -> tuple[int, int]:
    """The canvas a GIF grows to over its first `stop` frames: Pillow widens it to each
    frame's extent as it seeks, and allocates that extent (the frame's disposal) while
    seeking, before a caller can see the new size."""
    width, height = (_u16le(data, 6), _u16le(data, 8)) if len(data) >= 10 else (0, 0)
    for at in _gif_descriptors(data, stop, check):
        if at + 9 <= len(data):
            width = max(width, _u16le(data, at + 1) + _u16le(data, at + 5))
            height = max(height, _u16le(data, at + 3) + _u16le(data, at + 7))
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


_SEQUENTIAL_HUFFMAN = frozenset({0xC0, 0xC1})  # SOF0 baseline, SOF1 extended sequential
_ENTROPY_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # the first marker after a scan's data
MAX_JPEG_SEGMENTS = 65_536  # far beyond any real file; more is refused like too many scans


def jpeg_scans(data: bytes, stop: int) -> int:
    """The scans (SOS segments) of the first JPEG image that libjpeg would decode, counted no
    further than `stop`: it walks every block of the image for each, however few bytes the
    scan has. A file with more than MAX_JPEG_SEGMENTS segments counts as `stop`.

    A sequential Huffman JPEG (SOF0/SOF1) whose first scan holds every component, as nearly
    every camera and web JPEG does, is one scan: libjpeg refuses a second one there (its
    "EOI expected" error). Its entropy-coded data is then never searched for markers, which
    cost 1.4 ms of each render of a 24 MP photo."""
    scans = segments = 0
    components = 0  # of a sequential Huffman frame; 0 until its SOF is seen
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
        if marker == _TEM:  # no length, as libjpeg reads it: read as one, it hid what followed
            at += 2
            continue
        if marker in _SEQUENTIAL_HUFFMAN and at + 9 < len(data):
            components = data[at + 9]  # SOF: length, precision, height, width, Nf
        if marker == _SOS:
            if components and at + 4 < len(data) and data[at + 4] == components and not scans:
                return 1  # SOS: length, Ns; all components in the first scan
            scans += 1
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return scans
