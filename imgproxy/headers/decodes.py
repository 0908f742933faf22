"""An AVIF/HEIF file's items -> the work a decoder will do for it (ItemWork): the coded
images it decodes and the pixels it allocates, a grid or overlay counted through its
references."""

from __future__ import annotations

from dataclasses import dataclass

from imgproxy.headers.bmff import MAX_DECODES, Items, box_spans, meta_items, track_frames

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
    for kind, inner, stop in box_spans(data, 0, len(data)):
        if kind == b"meta":
            items = meta_items(data, inner + 4, stop)
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
            for declared, frame in track_frames(data, inner, stop):
                decodes, pixels = decodes + 1, max(pixels, frame[0] * frame[1])
                if frame[0] > declared[0] or frame[1] > declared[1]:
                    hidden = frame
    return ItemWork(depth, decodes, pixels, hidden)


def _work(
    items: Items, item: int, done: dict[int, tuple[int, int, int]], path: set[int]
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
    items: Items, item: int, inputs: list[int], parts: list[tuple[int, int, int]]
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
