"""An image Pillow has opened -> its upright RGB(A) frame, a JPEG decoded at the DCT scale
its output needs (shrink on load): the decode stage every render of a still starts from."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from imgproxy.errors import TooLarge
from imgproxy.geometry import decode_size, plan_transform, unturned
from imgproxy.headers import jpeg_scans
from imgproxy.params import Transform
from imgproxy.render.color import orient, orientation, swaps_axes, to_rgb

# Pillow's names for a JPEG it can decode at 1/2, 1/4 or 1/8 scale: MPO is a JPEG with a
# multi-picture index, which most phone and camera photos (Ultra HDR gain maps too) carry.
DCT_SCALED = frozenset({"JPEG", "MPO"})

Box = tuple[float, float, float, float]  # left, top, right, bottom


@dataclass(frozen=True, slots=True)
class Decoded:
    """An upright RGB/RGBA frame, possibly decoded at 1/2, 1/4 or 1/8 scale."""

    frame: Image.Image
    icc: bytes | None
    source: tuple[int, int]  # the upright full-size dimensions: geometry is planned on these
    region: Box  # where the whole source lies in `frame` (the DCT scale, edge blocks aside)


def decode_still(image: Image.Image, t: Transform) -> Decoded:
    """Decode (a JPEG at a DCT scale when it will be shrunk), orient, convert to RGB(A)."""
    return load_still(image, *draft_still(image, t))


def draft_still(image: Image.Image, t: Transform) -> tuple[int, tuple[int, int], Box]:
    """The orientation, the upright full size, and where the source will lie in the stored
    decode: a JPEG's DCT scale is chosen here, before any pixel is decoded."""
    turn = orientation(image)
    source = _upright(image.size, turn)
    stored = (0.0, 0.0, float(image.width), float(image.height))
    if image.format in DCT_SCALED and (t.width or t.height) and t.trim is None:
        # (trim compares pixels: it sees the source's own, not a scaled decode's)
        stored = _draft(image, t, turn, source)
    return turn, source, stored


def load_still(image: Image.Image, turn: int, source: tuple[int, int], stored: Box) -> Decoded:
    image.load()
    rgb, icc = to_rgb(orient(image, turn))
    return Decoded(rgb, icc, source, _orient_region(stored, image.size, turn))


def _draft(image: Image.Image, t: Transform, turn: int, source: tuple[int, int]) -> Box:
    """Shrink on load, as libvips and thumbor do: the smallest DCT scale (1/2, 1/4, 1/8) at
    which the kept region (of the crop, turned by rot) still has at least the output's pixels
    on each axis; Lanczos does the rest. Returns where the source lies in the stored
    (unrotated) decoded image."""
    want = decode_size(source, unturned(plan_transform(source, t), t.rotate))
    if swaps_axes(turn):
        want = (want[1], want[0])
    full = (0.0, 0.0, float(image.width), float(image.height))
    if want[0] >= image.width and want[1] >= image.height:
        return full
    drafted = image.draft(image.mode if image.mode in ("RGB", "L", "CMYK") else None, want)
    return drafted[1] if drafted is not None else full


def _upright(size: tuple[int, int], turn: int) -> tuple[int, int]:
    return (size[1], size[0]) if swaps_axes(turn) else size


# A DCT-scaled decode rounds each side up, so its last stored column and row are part
# padding. These EXIF orientations turn one of them into the upright frame's left (top)
# edge, so the source starts that fraction of a pixel in.
_PADDED_LEFT = frozenset({2, 3, 6, 7})
_PADDED_TOP = frozenset({3, 4, 7, 8})


def _orient_region(stored: Box, decoded: tuple[int, int], turn: int) -> Box:
    width, height = stored[2], stored[3]
    frame_w, frame_h = decoded
    if swaps_axes(turn):
        width, height, frame_w, frame_h = height, width, frame_h, frame_w
    left = frame_w - width if turn in _PADDED_LEFT else 0.0
    top = frame_h - height if turn in _PADDED_TOP else 0.0
    return (left, top, left + width, top + height)


def check_scans(image: Image.Image, data: bytes, limit: int) -> None:
    """libjpeg walks every block of the image once per scan, however few bytes a scan has:
    a flood of scans is work out of all proportion to the file, refused before decoding."""
    if image.format in ("JPEG", "MPO") and jpeg_scans(data, limit + 1) > limit:
        raise TooLarge(f"the JPEG has more than {limit} scans (or segments)")
