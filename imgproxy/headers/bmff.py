"""An AVIF/HEIF (ISO BMFF) file's boxes -> its items as a decoder sees them (types,
locations, `ispe` sizes, grid and overlay canvases, references) and its tracks' frames,
every count bounded by ENTRIES_READ."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice

from imgproxy.headers.av1 import av1_frame_size
from imgproxy.headers.binary import u16be, u32be

_BMFF_CONTAINERS = {b"meta": 4, b"iprp": 0, b"ipco": 0}  # box -> header bytes to skip
MAX_DECODES = 1024  # coded images decoded for one file: 763 tiles of 256x256 make 50 MP
ENTRIES_READ = 16 * MAX_DECODES  # items, references, property associations: more is refused


def box_spans(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, end) of each ISOBMFF box in data[start:end]."""
    at = start
    while at + 8 <= end:
        size, kind, header = u32be(data, at), data[at + 4 : at + 8], 8
        if size == 1:
            size, header = int.from_bytes(data[at + 8 : at + 16], "big"), 16
        elif size == 0:
            size = end - at
        if size < header or at + header > end:
            return
        yield kind, at + header, min(at + size, end)
        at += size


def bmff_sizes(
    data: bytes, start: int = 0, end: int | None = None, depth: int = 0
) -> Iterator[tuple[int, int]]:
    """Every `ispe` box under meta/iprp/ipco (the primary image, grid tiles, thumbnails),
    every grid or overlay canvas (libheif allocates a canvas before it compares its size
    with the `ispe`, so a 64x48 item can declare a gigapixel canvas), and every AV1 frame
    as its sequence header allows it, of an item or of a track's first sample (libavif
    allocates the frame, whatever the `ispe` or the track header says)."""
    end = len(data) if end is None else end
    for kind, inner, stop in box_spans(data, start, end):
        if kind == b"ispe" and inner + 12 <= stop:
            yield u32be(data, inner + 4), u32be(data, inner + 8)
        elif kind in _BMFF_CONTAINERS and depth < 3:
            yield from bmff_sizes(data, inner + _BMFF_CONTAINERS[kind], stop, depth + 1)
        if kind == b"meta" and depth == 0:
            items = meta_items(data, inner + 4, stop)
            yield from ((c.width, c.height) for c in items.canvases.values())
            yield from items.frames.values()
        elif kind == b"moov" and depth == 0:
            yield from (frame for _, frame in track_frames(data, inner, stop))


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
class Items:
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


def meta_items(data: bytes, start: int, end: int) -> Items:
    """The items of a `meta` box's children: types, sizes, canvases, references, and the
    largest frame each AV1 item's sequence headers (its `av1C` and its data) allow."""
    boxes = {kind: (inner, stop) for kind, inner, stop in box_spans(data, start, end)}
    items = Items()
    at, to = boxes.get(b"pitm", (0, 0))
    if at + 6 <= to:
        items.primary = int.from_bytes(data[at + 4 : at + (6 if data[at] == 0 else 8)], "big")
    entries = list(islice(_item_types(data, *boxes.get(b"iinf", (0, 0))), ENTRIES_READ + 1))
    locations = list(islice(_item_locations(data, *boxes.get(b"iloc", (0, 0))), ENTRIES_READ + 1))
    items.complete = len(entries) <= ENTRIES_READ and len(locations) <= ENTRIES_READ
    items.types = {item: declared_type for item, declared_type, _ in entries[:ENTRIES_READ]}
    items.hidden = {item for item, _, hidden in entries[:ENTRIES_READ] if hidden}
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
                items.sizes[item] = (u32be(data, inner + 4), u32be(data, inner + 8))
            elif kind == b"av1C":  # its configOBUs: the sequence header, as encoders write it
                _larger(items.frames, item, av1_frame_size(data, inner + 4, stop))
    stores = {0: (0, len(data)), 1: boxes.get(b"idat")}  # construction method -> bytes
    for item, method, spans in locations[:ENTRIES_READ]:
        store = stores.get(method)
        if store is not None and spans:
            _read_item_data(items, data, item, store, spans)
    return items


def _read_item_data(
    items: Items, data: bytes, item: int, store: tuple[int, int], spans: list[tuple[int, int]]
) -> None:
    """What a decoder reads of an item's data: an AV1 item's sequence header (the largest
    frame it allows), a grid's or an overlay's canvas size."""
    item_type, (origin, bound) = items.types.get(item), store
    if item_type == b"av01":  # the decoder is given the data: its sequence header counts
        at, length = spans[0]
        stop = min(origin + at + length, bound) if length else bound
        _larger(items.frames, item, av1_frame_size(data, origin + at, stop))
    if item_type not in _CANVAS_AT:
        return
    head = b"".join(  # the item's first bytes, across its extents (0: to the end)
        data[origin + at : min(origin + at + (length or 20), bound)] for at, length in spans
    )[:20]
    if len(head) < 4:
        return
    size, at = (4 if head[1] & 1 else 2), _CANVAS_AT[item_type]  # flags bit 0: 32-bit sizes
    width = int.from_bytes(head[at : at + size], "big")
    height = int.from_bytes(head[at + size : at + 2 * size], "big")
    tiles = (head[3] + 1, head[2] + 1) if item_type == b"grid" else (0, 0)
    items.canvases[item] = _Canvas(width, height, tiles)


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
    for kind, inner, stop in box_spans(data, start + 4, end):
        if inner + width + 2 > stop:
            continue
        item = int.from_bytes(data[inner : inner + width], "big")
        count = u16be(data, inner + width)
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
    children = {kind: (inner, stop) for kind, inner, stop in box_spans(data, start, end)}
    ipco = list(islice(box_spans(data, *children.get(b"ipco", (0, 0))), 0x7FFF))  # 15-bit indices
    inner, stop = children.get(b"ipma", (0, 0))
    if inner + 8 > stop:
        return {}, True
    version, wide = data[inner], data[inner + 3] & 1
    id_size, index_size = (2 if version < 1 else 4), (2 if wide else 1)
    found: dict[int, list[tuple[bytes, int, int]]] = {}
    at = inner + 8
    for entry in range(u32be(data, inner + 4)):
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


_TRACK_PATH = (b"mdia", b"minf", b"stbl")
_SAMPLE_ENTRY = 8 + 78  # stsd's version, flags and count; a visual sample entry's fields


def track_frames(
    data: bytes, start: int, end: int
) -> Iterator[tuple[tuple[int, int], tuple[int, int]]]:
    """(declared size, frame size) of each AV1 track of a `moov` box: the track header's
    width and height, and the largest frame the sequence headers of its `av1C` and of its
    first sample allow (a sequence's frames are no larger than their sequence header's)."""
    for kind, inner, stop in box_spans(data, start, end):
        if kind != b"trak":
            continue
        children = {kind: (at, to) for kind, at, to in box_spans(data, inner, stop)}
        head_at, head_end = children.get(b"tkhd", (0, 0))
        if head_end - head_at < 84:
            continue
        declared = (u32be(data, head_end - 8) >> 16, u32be(data, head_end - 4) >> 16)
        for name in _TRACK_PATH:
            inside = children.get(name, (0, 0))
            children = {kind: (at, to) for kind, at, to in box_spans(data, *inside)}
        frame: dict[int, tuple[int, int]] = {}
        stsd_at, stsd_end = children.get(b"stsd", (0, 0))
        entries = list(islice(box_spans(data, stsd_at + 8, stsd_end), 1))
        if not entries or entries[0][0] != b"av01":
            continue
        _, entry_at, entry_end = entries[0]
        for kind, at, to in box_spans(data, entry_at + 78, entry_end):
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
    size = u32be(data, sizes_at + 4) or u32be(data, sizes_at + 12)
    if b"stco" in table and table[b"stco"][0] + 12 <= table[b"stco"][1]:
        offset = u32be(data, table[b"stco"][0] + 8)
    elif b"co64" in table and table[b"co64"][0] + 16 <= table[b"co64"][1]:
        offset = int.from_bytes(data[table[b"co64"][0] + 8 : table[b"co64"][0] + 16], "big")
    else:
        return None
    return offset, min(offset + size, len(data))


def _item_types(data: bytes, start: int, end: int) -> Iterator[tuple[int, bytes, bool]]:
    """(item ID, item type, hidden) of each version 2/3 `infe` entry of an `iinf` box."""
    skip = 4 + (2 if start < end and data[start] == 0 else 4)  # version, flags, entry count
    for kind, inner, stop in islice(box_spans(data, start + skip, end), ENTRIES_READ + 1):
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
