"""The §15.1 operations on pixels: trim's box, rotation, flip, blur / sharpen / pixelate, pad.

Each costs a few passes over the pixels it is given, whatever the value asked: blur and
sharpen are Pillow's box-blur approximations (linear in pixels at any sigma), and a large
blur is made on a shrunk copy, so its work stays within a fixed multiple of a resize
(SPEC §11.1).
"""

from __future__ import annotations

import math

from PIL import Image, ImageChops, ImageFilter

from imgproxy.params import Flip, Transform

Box = tuple[float, float, float, float]  # left, top, right, bottom
Rect = tuple[int, int, int, int]  # x, y, w, h

# Pillow turns counter-clockwise; `rot` is clockwise.
_ROTATE = {
    90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}
_FLIP = {
    Flip.H: Image.Transpose.FLIP_LEFT_RIGHT,
    Flip.V: Image.Transpose.FLIP_TOP_BOTTOM,
    Flip.HV: Image.Transpose.ROTATE_180,
}
# Sigmas above this are blurred on a copy shrunk by ceil(sigma / BLUR_DIRECT_SIGMA), at
# sigma / that factor, then enlarged back: the copy's blur is then never larger than this.
BLUR_DIRECT_SIGMA = 8.0
# How strongly the unsharp mask adds back the detail, and the least difference it sharpens
# (none: a soft picture has only small differences).
SHARPEN_PERCENT, SHARPEN_THRESHOLD = 150, 0


def rotate(image: Image.Image, degrees: int) -> Image.Image:
    return image.transpose(_ROTATE[degrees]) if degrees else image


def turn_point(point: tuple[float, float], degrees: int) -> tuple[float, float]:
    """A point given as fractions of an image, as fractions of it turned clockwise."""
    fx, fy = point
    if degrees == 90:
        return (1 - fy, fx)
    if degrees == 180:
        return (1 - fx, 1 - fy)
    if degrees == 270:
        return (fy, 1 - fx)
    return point


def trim_region(
    frame: Image.Image, region: Rect, scale: tuple[float, float, float, float], tolerance: int
) -> Rect:
    """A region of the source (x, y, w, h in source pixels) without its uniform border,
    read on `frame`, where the source lies at (left, top) with scale (sx, sy)."""
    x, y, w, h = region
    left, top, sx, sy = scale
    fx, fy = round(left + x * sx), round(top + y * sy)
    fw, fh = max(1, round(w * sx)), max(1, round(h * sy))
    whole = (fx, fy, fw, fh) == (0, 0, *frame.size)
    inner = _trim_box(frame if whole else frame.crop((fx, fy, fx + fw, fy + fh)), tolerance)
    if inner is None:
        return region  # all one colour: nothing is a border
    ix, iy, iw, ih = inner
    return (x + int(ix / sx), y + int(iy / sy), max(1, round(iw / sx)), max(1, round(ih / sy)))


def _trim_box(image: Image.Image, tolerance: int) -> Rect | None:
    """The part of `image` inside its border of the top-left pixel's colour (each channel
    within `tolerance`); None when the whole image is that colour (nothing would be left).
    Holds three copies of the image at most (the difference and its mask)."""
    corner = image.getpixel((0, 0))
    difference = ImageChops.difference(image, Image.new(image.mode, image.size, corner))
    table = [0] * (tolerance + 1) + [255] * (255 - tolerance)
    mask = difference.point(table * len(image.getbands()))
    del difference
    bbox = mask.getbbox(alpha_only=False)
    if bbox is None:
        return None
    left, top, right, bottom = bbox
    return (left, top, right - left, bottom - top)


def after_fit(image: Image.Image, t: Transform) -> Image.Image:
    """After the fit, in SPEC §15.1's order: flip, blur, sharpen, pixelate, pad."""
    if t.flip:
        image = image.transpose(_FLIP[t.flip])
    if t.blur:
        image = blur(image, t.blur)
    if t.sharpen:
        image = image.filter(ImageFilter.UnsharpMask(t.sharpen, SHARPEN_PERCENT, SHARPEN_THRESHOLD))
    if t.pixelate:
        image = pixelate(image, t.pixelate)
    if any(t.pad):
        top, right, bottom, left = t.pad
        size = (image.width + left + right, image.height + top + bottom)
        image = on_canvas(image, size, (left, top), t.background)
    return image


PREMULTIPLIED = {"RGBA": "RGBa", "LA": "La"}  # straight alpha -> Pillow's premultiplied mode


def blur_plan(sigma: float) -> tuple[int, float]:
    """How a blur is made: the factor its copy is shrunk by, and the sigma blurred there."""
    factor = max(1, math.ceil(sigma / BLUR_DIRECT_SIGMA))
    return factor, sigma / factor


def blur(image: Image.Image, sigma: float) -> Image.Image:
    """With alpha, blurred premultiplied (as Pillow's resize and reduce already work): a
    filter on straight RGBA averages in the colour of invisible pixels, a fringe of whatever
    the transparent area holds (a red square on transparent green came out green-edged)."""
    mode = image.mode
    if mode in PREMULTIPLIED:
        image = image.convert(PREMULTIPLIED[mode])
    factor, small_sigma = blur_plan(sigma)
    if factor == 1:
        blurred = image.filter(ImageFilter.GaussianBlur(sigma))
    else:
        small = image.reduce(factor).filter(ImageFilter.GaussianBlur(small_sigma))
        box = (0.0, 0.0, image.width / factor, image.height / factor)
        blurred = small.resize(image.size, Image.Resampling.BICUBIC, box=box)
    return blurred.convert(mode) if blurred.mode != mode else blurred


def pixelate(image: Image.Image, block: int) -> Image.Image:
    """Blocks of `block` pixels from the top-left corner, each its pixels' mean colour (a
    partial block at the right and bottom edges too)."""
    small = image.reduce(block)
    box = (0.0, 0.0, image.width / block, image.height / block)
    return small.resize(image.size, Image.Resampling.NEAREST, box=box)


def on_canvas(
    image: Image.Image,
    size: tuple[int, int],
    offset: tuple[int, int],
    background: tuple[int, int, int, int],
) -> Image.Image:
    """`image` placed at `offset` on a `size` canvas of the background colour."""
    mode = "RGBA" if image.mode == "RGBA" or background[3] < 255 else "RGB"
    canvas = Image.new(mode, size, background if mode == "RGBA" else background[:3])
    canvas.paste(image, offset, image if image.mode == "RGBA" else None)
    return canvas
