"""Test images made by the tests themselves: no binary fixtures in the repository."""

from __future__ import annotations

import io

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
