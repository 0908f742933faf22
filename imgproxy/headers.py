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

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
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
            at += 12 + _u32be(data, at)
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
    # Where the entropy-coded data starts (after the first scan's header); None when the
    # bytes walked end before it.
    data_at: int | None = None

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
            end = at + 2 + _u16be(data, at + 2)
            data_at = end if end <= len(data) else None
            return JpegFrame(size, sampling, progressive or in_scan < len(sampling), exif, data_at)
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
MAX_DECODES = 1024  # coded images decoded for one file: 763 tiles of 256x256 make 50 MP
ENTRIES_READ = 16 * MAX_DECODES  # items, references, property associations: more is refused


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, end) of each ISOBMFF box in data[start:end]."""
    at = start
    while at + 8 <= end:
        size, kind, header = _u32be(data, at), data[at + 4 : at + 8], 8
        if size == 1:
            size, header = int.from_bytes(data[at + 8 : at + 16], "big"), 16
        elif size == 0:
            size = end - at
        if size < header or at + header > end:
            return
        yield kind, at + header, min(at + size, end)
        at += size


def _bmff_sizes(
    data: bytes, start: int = 0, end: int | None = None, depth: int = 0
) -> Iterator[tuple[int, int]]:
    """Every `ispe` box under meta/iprp/ipco (the primary image, grid tiles, thumbnails),
    every grid or overlay canvas (libheif allocates a canvas before it compares its size
    with the `ispe`, so a 64x48 item can declare a gigapixel canvas), and every AV1 frame
    as its sequence header allows it, of an item or of a track's first sample (libavif
    allocates the frame, whatever the `ispe` or the track header says)."""
    end = len(data) if end is None else end
    for kind, inner, stop in _boxes(data, start, end):
        if kind == b"ispe" and inner + 12 <= stop:
            yield _u32be(data, inner + 4), _u32be(data, inner + 8)
        elif kind in _BMFF_CONTAINERS and depth < 3:
            yield from _bmff_sizes(data, inner + _BMFF_CONTAINERS[kind], stop, depth + 1)
        if kind == b"meta" and depth == 0:
            items = _items(data, inner + 4, stop)
            yield from ((c.width, c.height) for c in items.canvases.values())
            yield from items.frames.values()
        elif kind == b"moov" and depth == 0:
            yield from (frame for _, frame in _tracks(data, inner, stop))


# Derived image item -> where its data gives the output width and height: past version
# and flags, then a grid's rows and columns, an overlay's four 16-bit fill values.
_CANVAS_AT = {b"grid": 4, b"iovl": 10}
_EXTENTS_READ = 4  # of one item's data: more are skipped, never walked


@dataclass(frozen=True, slots=True)
class _Canvas:
    width: int
    height: int
    tiles: tuple[int, int]  # a grid's columns and rows; (0, 0): an overlay


@dataclass(slots=True)
class _Items:
    """A `meta` box's items as a decoder will see them."""

    primary: int | None = None
    types: dict[int, bytes] = field(default_factory=dict)
    sizes: dict[int, tuple[int, int]] = field(default_factory=dict)  # `ispe`
    canvases: dict[int, _Canvas] = field(default_factory=dict)  # grid and overlay items
    frames: dict[int, tuple[int, int]] = field(default_factory=dict)  # AV1 items' frames
    derived: dict[int, list[int]] = field(default_factory=dict)  # `dimg`: item -> inputs
    hidden: set[int] = field(default_factory=set)  # never shown by itself (infe flags)
    attached: set[int] = field(default_factory=set)  # thumbnails, alpha and other aux images
    complete: bool = True  # False: more items, references or associations than ENTRIES_READ


def _items(data: bytes, start: int, end: int) -> _Items:
    """The items of a `meta` box's children: types, sizes, canvases, references, and the
    largest frame each AV1 item's sequence headers (its `av1C` and its data) allow."""
    boxes = {kind: (inner, stop) for kind, inner, stop in _boxes(data, start, end)}
    items = _Items()
    inner, stop = boxes.get(b"pitm", (0, 0))
    if inner + 6 <= stop:
        items.primary = int.from_bytes(
            data[inner + 4 : inner + (6 if data[inner] == 0 else 8)], "big"
        )
    entries = list(islice(_item_types(data, *boxes.get(b"iinf", (0, 0))), ENTRIES_READ + 1))
    locations = list(islice(_item_locations(data, *boxes.get(b"iloc", (0, 0))), ENTRIES_READ + 1))
    items.complete = len(entries) <= ENTRIES_READ and len(locations) <= ENTRIES_READ
    for item, declared_type, hidden in entries[:ENTRIES_READ]:
        items.types[item] = declared_type
        if hidden:
            items.hidden.add(item)
    if b"iref" in boxes:
        references, complete = _references(data, *boxes[b"iref"])
        items.complete = items.complete and complete
        items.derived = references.get(b"dimg", {})
        for kind in (b"thmb", b"auxl"):
            items.attached.update(references.get(kind, ()))
    properties, complete = _properties(data, *boxes.get(b"iprp", (0, 0)))
    items.complete = items.complete and complete
    for item, found in properties.items():
        for kind, inner, stop in found:
            if kind == b"ispe" and inner + 12 <= stop:
                items.sizes[item] = (_u32be(data, inner + 4), _u32be(data, inner + 8))
            elif kind == b"av1C":  # its configOBUs: the sequence header, as encoders write it
                _larger(items.frames, item, av1_frame_size(data, inner + 4, stop))
    stores = {0: (0, len(data)), 1: boxes.get(b"idat")}  # construction method -> bytes
    for item, method, spans in locations[:ENTRIES_READ]:
        item_type, store = items.types.get(item), stores.get(method)
        if store is None or not spans:
            continue
        origin, bound = store
        if item_type == b"av01":  # the decoder is given the data: its sequence header counts
            at, length = spans[0]
            stop = min(origin + at + length, bound) if length else bound
            _larger(items.frames, item, av1_frame_size(data, origin + at, stop))
        if item_type not in _CANVAS_AT:
            continue
        head = b"".join(  # the item's first bytes, across its extents (0: to the end)
            data[origin + at : min(origin + at + (length or 20), bound)] for at, length in spans
        )[:20]
        if len(head) < 4:
            continue
        size = 4 if head[1] & 1 else 2  # flags bit 0: 32-bit width and height
        at = _CANVAS_AT[item_type]
        tiles = (head[3] + 1, head[2] + 1) if item_type == b"grid" else (0, 0)
        items.canvases[item] = _Canvas(
            int.from_bytes(head[at : at + size], "big"),
            int.from_bytes(head[at + size : at + 2 * size], "big"),
            tiles,
        )
    return items


def _larger(sizes: dict[int, tuple[int, int]], item: int, size: tuple[int, int] | None) -> None:
    if size is not None:
        before = sizes.get(item, (0, 0))
        sizes[item] = (max(before[0], size[0]), max(before[1], size[1]))


def _references(
    data: bytes, start: int, end: int
) -> tuple[dict[bytes, dict[int, list[int]]], bool]:
    """Reference type -> item -> the items it references, of an `iref` box (version 0:
    16-bit IDs, else 32-bit), in order, repeats kept: a decoder reads each reference. And
    whether all were read: no more than ENTRIES_READ are."""
    width = 2 if start < end and data[start] == 0 else 4
    found: dict[bytes, dict[int, list[int]]] = {}
    budget = ENTRIES_READ
    for kind, inner, stop in _boxes(data, start + 4, end):
        if inner + width + 2 > stop:
            continue
        item = int.from_bytes(data[inner : inner + width], "big")
        count = _u16be(data, inner + width)
        first = inner + width + 2
        last = min(first + min(count, budget) * width, stop - width + 1)
        used = [int.from_bytes(data[at : at + width], "big") for at in range(first, last, width)]
        found.setdefault(kind, {}).setdefault(item, []).extend(used)
        budget -= len(used) + 1
        if budget <= 0:
            return found, False
    return found, True


def _properties(
    data: bytes, start: int, end: int
) -> tuple[dict[int, list[tuple[bytes, int, int]]], bool]:
    """Item -> its properties (type, payload start, end), as `ipma` associates the boxes of
    `ipco` (1-based) with items; and whether all were read (no more than ENTRIES_READ)."""
    children = {kind: (inner, stop) for kind, inner, stop in _boxes(data, start, end)}
    ipco = list(islice(_boxes(data, *children.get(b"ipco", (0, 0))), 0x7FFF))  # 15-bit indices
    inner, stop = children.get(b"ipma", (0, 0))
    if inner + 8 > stop:
        return {}, True
    version, wide = data[inner], data[inner + 3] & 1
    id_size, index_size = (2 if version < 1 else 4), (2 if wide else 1)
    found: dict[int, list[tuple[bytes, int, int]]] = {}
    at = inner + 8
    for entry in range(_u32be(data, inner + 4)):
        if at + id_size + 1 > stop:
            break
        if entry >= ENTRIES_READ:
            return found, False
        item = int.from_bytes(data[at : at + id_size], "big")
        count = data[at + id_size]
        at += id_size + 1
        for position in range(at, min(at + count * index_size, stop), index_size):
            index = int.from_bytes(data[position : position + index_size], "big")
            index &= 0x7FFF if wide else 0x7F  # past the `essential` bit
            if 0 < index <= len(ipco):
                found.setdefault(item, []).append(ipco[index - 1])
        at += count * index_size
    return found, True


# AV1 (spec §5.3, §5.5): an AVIF's `ispe` or track header is only what the file says; the
# decoder allocates what the sequence header says, so a 64x64 `ispe` can carry an 8192x8192
# frame. Read without a decoder, no further than a few OBUs.
_SEQUENCE_HEADER = 1  # obu_type
OBUS_READ = 16  # of one sample or `av1C`: a sequence header comes first, after a delimiter


def av1_frame_size(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """(max_frame_width, max_frame_height) of the first sequence header among the first
    OBUS_READ OBUs of data[start:end]; None: none there, or it is cut short."""
    for kind, inner, stop in _obus(data, start, end):
        if kind == _SEQUENCE_HEADER:
            try:
                return _sequence_size(_Bits(data[inner:stop]))
            except IndexError:  # the header ends before its frame size
                return None
    return None


def _obus(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(obu_type, payload start, payload end) of the first OBUS_READ OBUs (§5.3.1)."""
    at = start
    for _ in range(OBUS_READ):
        if at >= end:
            return
        header = data[at]
        kind, extension, has_size = header >> 3 & 15, header >> 2 & 1, header >> 1 & 1
        at += 1 + extension
        size = end - at
        if has_size:
            size, at = _leb128(data, at)
        yield kind, at, min(at + size, end)
        at += size


def _leb128(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        byte = data[at + i] if at + i < len(data) else 0
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, at + i + 1
    return value, at + 8


class _Bits:
    """Big-endian bits of a byte string; IndexError past its end."""

    __slots__ = ("_at", "_data")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def read(self, count: int) -> int:
        value = 0
        for _ in range(count):
            byte = self._data[self._at >> 3]
            value = value << 1 | (byte >> (7 - (self._at & 7)) & 1)
            self._at += 1
        return value

    def uvlc(self) -> int:
        zeros = 0
        while not self.read(1):
            zeros += 1
            if zeros >= 32:
                return (1 << 32) - 1
        return self.read(zeros) + (1 << zeros) - 1


def _sequence_size(bits: _Bits) -> tuple[int, int]:
    """sequence_header_obu() up to max_frame_height_minus_1 (§5.5.1)."""
    bits.read(3)  # seq_profile
    bits.read(1)  # still_picture
    if bits.read(1):  # reduced_still_picture_header
        bits.read(5)  # seq_level_idx[0]
    else:
        buffer_delay_bits, decoder_model = 0, 0
        if bits.read(1):  # timing_info_present_flag
            bits.read(64)  # num_units_in_display_tick, time_scale
            if bits.read(1):  # equal_picture_interval
                bits.uvlc()  # num_ticks_per_picture_minus_1
            decoder_model = bits.read(1)
            if decoder_model:  # decoder_model_info()
                buffer_delay_bits = bits.read(5) + 1
                bits.read(32 + 5 + 5)
        initial_display_delay = bits.read(1)
        for _ in range(bits.read(5) + 1):  # operating points
            bits.read(12)  # operating_point_idc
            if bits.read(5) > 7:  # seq_level_idx
                bits.read(1)  # seq_tier
            if decoder_model and bits.read(1):  # decoder_model_present_for_this_op
                bits.read(2 * buffer_delay_bits + 1)
            if initial_display_delay and bits.read(1):
                bits.read(4)  # initial_display_delay_minus_1
    width_bits, height_bits = bits.read(4) + 1, bits.read(4) + 1
    return bits.read(width_bits) + 1, bits.read(height_bits) + 1


_TRACK_PATH = (b"mdia", b"minf", b"stbl")
_SAMPLE_ENTRY = 8 + 78  # stsd's version, flags and count; a visual sample entry's fields


def _tracks(data: bytes, start: int, end: int) -> Iterator[tuple[tuple[int, int], tuple[int, int]]]:
    """(declared size, frame size) of each AV1 track of a `moov` box: the track header's
    width and height, and the largest frame the sequence headers of its `av1C` and of its
    first sample allow (a sequence's frames are no larger than their sequence header's)."""
    for kind, inner, stop in _boxes(data, start, end):
        if kind != b"trak":
            continue
        children = {kind: (at, to) for kind, at, to in _boxes(data, inner, stop)}
        head_at, head_end = children.get(b"tkhd", (0, 0))
        if head_end - head_at < 84:
            continue
        declared = (_u32be(data, head_end - 8) >> 16, _u32be(data, head_end - 4) >> 16)
        for name in _TRACK_PATH:
            children = {
                kind: (at, to) for kind, at, to in _boxes(data, *children.get(name, (0, 0)))
            }
        frame: dict[int, tuple[int, int]] = {}
        stsd_at, stsd_end = children.get(b"stsd", (0, 0))
        entries = list(islice(_boxes(data, stsd_at + 8, stsd_end), 1))
        if not entries or entries[0][0] != b"av01":
            continue
        _, entry_at, entry_end = entries[0]
        for kind, at, to in _boxes(data, entry_at + 78, entry_end):
            if kind == b"av1C":
                _larger(frame, 0, av1_frame_size(data, at + 4, to))
        sample = _first_sample(data, children)
        if sample is not None:
            _larger(frame, 0, av1_frame_size(data, *sample))
        if frame:
            yield declared, frame[0]


def _first_sample(data: bytes, table: dict[bytes, tuple[int, int]]) -> tuple[int, int] | None:
    """Where a track's first sample is: the first chunk's offset (`stco` or `co64`) and the
    first sample's size (`stsz`)."""
    sizes_at, sizes_end = table.get(b"stsz", (0, 0))
    if sizes_at + 12 > sizes_end:
        return None
    size = _u32be(data, sizes_at + 4) or _u32be(data, sizes_at + 12)
    if b"stco" in table and table[b"stco"][0] + 12 <= table[b"stco"][1]:
        offset = _u32be(data, table[b"stco"][0] + 8)
    elif b"co64" in table and table[b"co64"][0] + 16 <= table[b"co64"][1]:
        offset = int.from_bytes(data[table[b"co64"][0] + 8 : table[b"co64"][0] + 16], "big")
    else:
        return None
    return offset, min(offset + size, len(data))


MAX_DERIVED_DEPTH = 2  # a grid or overlay of coded images, or one derived image over those


@dataclass(frozen=True, slots=True)
class ItemWork:
    """What decoding a HEIF or AVIF file takes, read from its items before any decoder
    runs. A decoder decodes an item each time a reference reaches it, so a tree of derived
    images (overlays of overlays) multiplies the work of its coded images: 51 items of 64x64
    nested five deep cost 100,000 decodes. And it allocates what an AV1 sequence header
    says, not what the `ispe` or the track header declares."""

    depth: int  # derived images nested over a coded one: 1 for a grid of tiles
    decodes: int  # coded images decoded, each counted as often as references reach it
    pixels: int  # decoded for the largest image; a grid whose tiles just cover it: its canvas
    hidden: tuple[int, int] | None  # an AV1 frame larger than its item or track declares


def item_work(data: bytes) -> ItemWork | None:
    """The work of the images a decoder shows: the primary item, the other top-level items
    it lists as frames (not hidden, nobody's input, no thumbnail or auxiliary image) and
    the AV1 tracks; None: not ISOBMFF."""
    if data[4:8] != b"ftyp":
        return None
    depth = decodes = pixels = 0
    hidden: tuple[int, int] | None = None
    for kind, inner, stop in _boxes(data, 0, len(data)):
        if kind == b"meta":
            items = _items(data, inner + 4, stop)
            inputs = {item for used in items.derived.values() for item in used}
            unseen = inputs | items.hidden | items.attached
            shown = {item for item in items.types if item not in unseen}
            done: dict[int, tuple[int, int, int]] = {}
            for item in shown | ({items.primary} if items.primary is not None else set()):
                work = _work(items, item, done, set())
                depth, decodes = max(depth, work[0]), decodes + work[1]
                pixels = max(pixels, work[2])
            if not items.complete:  # too many to read: more than any decoder should do
                decodes = max(decodes, MAX_DECODES + 1)
            for item, frame in items.frames.items():
                declared = items.sizes.get(item, (0, 0))
                if frame[0] > declared[0] or frame[1] > declared[1]:
                    hidden = frame
        elif kind == b"moov":
            for declared, frame in _tracks(data, inner, stop):
                decodes, pixels = decodes + 1, max(pixels, frame[0] * frame[1])
                if frame[0] > declared[0] or frame[1] > declared[1]:
                    hidden = frame
    return ItemWork(depth, decodes, pixels, hidden)


def _work(
    items: _Items, item: int, done: dict[int, tuple[int, int, int]], path: set[int]
) -> tuple[int, int, int]:
    """(depth, decodes, pixels) of one item, each item's own walked once (a reference
    chain no longer than MAX_DERIVED_DEPTH + 1 is followed; a cycle is as deep as that)."""
    if item in done:
        return done[item]
    inputs = items.derived.get(item)
    if not inputs:  # a coded image: as large as the decoder will make it
        width, height = items.sizes.get(item, (0, 0))
        frame = items.frames.get(item, (0, 0))
        area = max(width, frame[0]) * max(height, frame[1])
        work = (0, 1, area) if area else (0, 0, 0)  # no pixels: Exif, XMP, not an image
    elif item in path or len(path) > MAX_DERIVED_DEPTH:
        work = (MAX_DERIVED_DEPTH + 1, 0, 0)
    else:
        path.add(item)
        parts = [_work(items, used, done, path) for used in inputs]
        path.discard(item)
        work = (
            1 + max(part[0] for part in parts),
            sum(part[1] for part in parts),
            _grid_pixels(items, item, inputs, parts) or sum(part[2] for part in parts),
        )
    done[item] = work
    return work


def _grid_pixels(
    items: _Items, item: int, inputs: list[int], parts: list[tuple[int, int, int]]
) -> int:
    """A grid of coded tiles that covers its canvas with less than a tile to spare on each
    side counts as its canvas: a 48 MP photo in 512x512 tiles is no 50 MP one. 0: not so."""
    canvas = items.canvases.get(item)
    if canvas is None or not canvas.tiles[0] or len(inputs) != canvas.tiles[0] * canvas.tiles[1]:
        return 0
    tiles = {items.sizes.get(used) for used in inputs}
    if len(tiles) != 1 or any(part[:2] != (0, 1) for part in parts):
        return 0
    (tile,) = tiles
    if tile is None or not all(tile):
        return 0
    across, down = canvas.tiles
    if not 0 <= across * tile[0] - canvas.width < tile[0]:
        return 0
    if not 0 <= down * tile[1] - canvas.height < tile[1]:
        return 0
    return canvas.width * canvas.height


def _item_types(data: bytes, start: int, end: int) -> Iterator[tuple[int, bytes, bool]]:
    """(item ID, item type, hidden) of each version 2/3 `infe` entry of an `iinf` box."""
    skip = 4 + (2 if start < end and data[start] == 0 else 4)  # version, flags, entry count
    for kind, inner, stop in islice(_boxes(data, start + skip, end), ENTRIES_READ + 1):
        version = data[inner] if kind == b"infe" and inner < stop else 0
        width = 2 if version == 2 else 4
        if version in (2, 3) and inner + 10 + width <= stop:
            item = int.from_bytes(data[inner + 4 : inner + 4 + width], "big")
            hidden = bool(data[inner + 3] & 1)  # flags bit 0: not to be shown by itself
            yield item, data[inner + 6 + width : inner + 10 + width], hidden


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
