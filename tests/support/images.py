"""Test images made by the tests themselves: no binary fixtures in the repository."""

from __future__ import annotations

import io
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageCms, ImageDraw

GPS_TAG = 0x8825
ORIENTATION_TAG = 0x0112


def photo(size: tuple[int, int] = (640, 480), mode: str = "RGB") -> Image.Image:
    """A picture with structure: a gradient, shapes and a distinct top-left marker."""
    width, height = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width // 4, height // 4), fill=(255, 0, 0))  # red: top-left
    if min(size) > 40:
        draw.ellipse((width // 2, height // 2, width - 10, height - 10), fill=(0, 0, 255))
    return image.convert(mode) if mode != "RGB" else image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg(size: tuple[int, int] = (640, 480), **options: object) -> bytes:
    return encode(photo(size), "JPEG", quality=90, **options)


def jpeg_with_exif(size: tuple[int, int], orientation: int, *, gps: bool = True) -> bytes:
    """A JPEG whose stored pixels are `size`, tagged with an orientation and a GPS position."""
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    if gps:
        exif[GPS_TAG] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    return encode(photo(size), "JPEG", quality=90, exif=exif.tobytes())


def cmyk_jpeg(
    size: tuple[int, int] = (200, 100), colour: tuple[int, int, int, int] = (0, 255, 255, 0)
) -> bytes:
    """Pure red in CMYK (no cyan, full magenta and yellow)."""
    return encode(Image.new("CMYK", size, colour), "JPEG", quality=95)


def png(size: tuple[int, int] = (320, 240), mode: str = "RGB") -> bytes:
    return encode(photo(size, mode), "PNG")


def rgba_png(size: tuple[int, int] = (200, 200)) -> bytes:
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((20, 20, size[0] - 20, size[1] - 20), fill=(0, 128, 0, 255))
    return encode(image, "PNG")


def png16(size: tuple[int, int] = (64, 64)) -> bytes:
    """16-bit greyscale: a flat mid-grey of 0x8000."""
    return encode(Image.new("I;16", size, 0x8000), "PNG")


def palette_png(size: tuple[int, int] = (64, 64)) -> bytes:
    image = Image.new("P", size, 0)
    image.putpalette([0, 0, 255] + [0, 0, 0] * 255)  # index 0 is blue
    return encode(image, "PNG")


def gif(frames: int = 3, size: tuple[int, int] = (120, 80)) -> bytes:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    images = [Image.new("RGB", size, colours[i % 3]) for i in range(frames)]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=70, loop=0)


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def rgb(image: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    r, g, b = image.convert("RGB").getpixel(xy)  # type: ignore[misc]
    return (int(r), int(g), int(b))


def frames(image: Image.Image) -> int:
    return int(getattr(image, "n_frames", 1))


# HEIF: encoded by libheif's heif-enc (x265), since Pillow and pi-heif here only decode.
# Callers check for the binary first (tests.support.need_binary("heif-enc")).


def heif(
    image: Image.Image,
    *,
    quality: int = 90,
    icc: bytes | None = None,
    exif: bytes = b"",
    thumbnail: int = 0,
) -> bytes:
    """The image as a HEIC file, with `icc` embedded (a `colr` box of type `prof`) and
    `exif` (an `Exif` item) if given, and a thumbnail of `thumbnail` pixels a side."""
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.png", Path(folder) / "out.heic"
        image.save(source, icc_profile=icc, exif=exif)
        command = ["heif-enc", "-q", str(quality), "-o", str(target), str(source)]
        command += ["-t", str(thumbnail)] if thumbnail else []
        subprocess.run(command, check=True, capture_output=True)
        return target.read_bytes()


# Apple's Display P3 primaries, adapted to D50 (its profile's rXYZ, gXYZ, bXYZ tags); the
# tone curve is sRGB's, so the sRGB profile with these colourants is Display P3.
P3_COLOURANTS = {
    b"rXYZ": (0.515121, 0.241182, -0.001053),
    b"gXYZ": (0.291977, 0.692245, 0.041885),
    b"bXYZ": (0.157104, 0.066574, 0.784073),
}


def display_p3_icc() -> bytes:
    """A Display P3 profile (an iPhone photo's): LittleCMS's sRGB with P3's colourants."""
    icc = bytearray(srgb_icc())
    for at in range(132, 132 + 12 * _u32(icc, 128), 12):
        xyz = P3_COLOURANTS.get(bytes(icc[at : at + 4]))
        if xyz is not None:
            value = _u32(icc, at + 4) + 8  # past the tag's 'XYZ ' type and reserved bytes
            icc[value : value + 12] = b"".join(
                round(v * 65536).to_bytes(4, "big", signed=True) for v in xyz
            )
    return bytes(icc)


def with_irot(data: bytes, quarter_turns: int) -> bytes:
    """A heif-enc file with an `irot` property (turn anticlockwise by quarter_turns x 90°)
    on its primary item, as cameras write: a new box in `ipco`, an essential association in
    `ipma`, the enclosing boxes grown, and file offsets in `iloc` moved past the growth."""
    out = bytearray(data)
    meta = child_box(out, 0, len(out), b"meta")
    inner = (meta[0] + 12, meta[1])  # past meta's version and flags
    iprp = child_box(out, *inner, b"iprp")
    ipco = child_box(out, iprp[0] + 8, iprp[1], b"ipco")
    ipma = child_box(out, iprp[0] + 8, iprp[1], b"ipma")
    pitm = child_box(out, *inner, b"pitm")
    primary = int.from_bytes(out[pitm[0] + 12 : pitm[0] + 14], "big")  # version 0: 16 bits
    index = len(list(child_boxes(out, ipco[0] + 8, ipco[1]))) + 1  # ipco is 1-based
    assert ipma[0] > ipco[0] and out[ipma[0] + 8] == 0 and not out[ipma[0] + 11] & 1
    # ipma version 0, 7-bit indices: item_ID (16), count (8), then one byte per association.
    at = ipma[0] + 16
    for _ in range(_u32(out, ipma[0] + 12)):
        item, count = int.from_bytes(out[at : at + 2], "big"), out[at + 2]
        if item == primary:
            out[at + 2] = count + 1
            out[at + 3 + count : at + 3 + count] = bytes([0x80 | index])
            grow_boxes(out, [meta[0], iprp[0], ipma[0]], 1)
            break
        at += 3 + count
    irot = struct.pack(">I4sB", 9, b"irot", quarter_turns % 4)
    out[ipco[1] : ipco[1]] = irot
    grow_boxes(out, [meta[0], iprp[0], ipco[0]], len(irot))
    move_file_offsets(out, meta[1], len(out) - len(data))
    return bytes(out)


def _u32(data: bytes | bytearray, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "big")


def child_boxes(data: bytearray, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    at = start
    while at + 8 <= end:
        size = _u32(data, at)
        yield bytes(data[at + 4 : at + 8]), at, at + size
        at += size


def child_box(data: bytearray, start: int, end: int, kind: bytes) -> tuple[int, int]:
    return next((at, stop) for found, at, stop in child_boxes(data, start, end) if found == kind)


def grow_boxes(data: bytearray, boxes: list[int], by: int) -> None:
    for at in boxes:
        data[at : at + 4] = (_u32(data, at) + by).to_bytes(4, "big")


@dataclass(frozen=True)
class Extent:
    """Where one extent of an item's data is given in an `iloc` box: (at, size) of each
    field, its item's base offset included."""

    method: int  # construction method: 0 file offsets, 1 within `idat`
    base: tuple[int, int]
    offset: tuple[int, int]
    length: tuple[int, int]


def iloc_extents(data: bytearray, iloc: int) -> Iterator[Extent]:
    """Every extent of every item of the `iloc` box at `iloc` (versions 0 to 2)."""
    version, sizes = data[iloc + 8], int.from_bytes(data[iloc + 12 : iloc + 14], "big")
    offset_size, length_size = sizes >> 12, (sizes >> 8) & 15
    base_size, index_size = (sizes >> 4) & 15, (sizes & 15 if version else 0)
    id_size = 4 if version == 2 else 2
    count = int.from_bytes(data[iloc + 14 : iloc + 14 + id_size], "big")
    at = iloc + 14 + id_size
    for _ in range(count):
        at += id_size  # the item ID
        method = int.from_bytes(data[at : at + 2], "big") & 15 if version else 0
        at += (2 if version else 0) + 2  # construction method, data reference index
        base = (at, base_size)
        extents = int.from_bytes(data[at + base_size : at + base_size + 2], "big")
        at += base_size + 2
        for _ in range(extents):
            offset = (at + index_size, offset_size)
            yield Extent(method, base, offset, (offset[0] + offset_size, length_size))
            at += index_size + offset_size + length_size


def read_field(data: bytearray, field: tuple[int, int]) -> int:
    return int.from_bytes(data[field[0] : field[0] + field[1]], "big")


def write_field(data: bytearray, field: tuple[int, int], value: int) -> None:
    data[field[0] : field[0] + field[1]] = value.to_bytes(field[1], "big")


def move_file_offsets(data: bytearray, after: int, by: int) -> None:
    """Add `by` to each file offset (construction method 0) at or past `after` in `iloc`,
    once bytes were inserted at `after` (offsets are base + extent offset)."""
    meta = child_box(data, 0, len(data), b"meta")
    iloc = child_box(data, meta[0] + 12, meta[1], b"iloc")[0]
    moved: set[int] = set()
    for extent in iloc_extents(data, iloc):
        base = read_field(data, extent.base)
        if extent.method != 0:
            continue
        if extent.base[1] and base >= after:
            if extent.base[0] not in moved:
                write_field(data, extent.base, base + by)
                moved.add(extent.base[0])
        elif base + read_field(data, extent.offset) >= after:
            write_field(data, extent.offset, read_field(data, extent.offset) + by)
