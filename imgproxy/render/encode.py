"""Frames -> encoded bytes in the output format. Nothing but pixels and an ICC profile
is written: no EXIF, XMP or comments, so no GPS position leaks (SPEC §2.1)."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import io
from collections.abc import Sequence

from PIL import Image

from imgproxy.formats import OutputFormat
from imgproxy.render.color import MAX_ICC_BYTES

# Whether this Pillow was built with libavif, asked without loading it: the AVIF plugin and
# its library cost a worker 2.5 MiB, paid only once an AVIF is written or read.
AVIF_AVAILABLE = importlib.util.find_spec("PIL._avif") is not None

# Each output format's writer, registered by importing it when that format is first written:
# Image.save() would otherwise load every plugin Pillow has (Image.init(), 1.8 MiB more).
WRITERS = {
    OutputFormat.JPEG: "JpegImagePlugin",
    OutputFormat.PNG: "PngImagePlugin",
    OutputFormat.GIF: "GifImagePlugin",
    OutputFormat.WEBP: "WebPImagePlugin",
    OutputFormat.AVIF: "AvifImagePlugin",
}


@functools.cache
def _writer(fmt: OutputFormat) -> None:
    importlib.import_module(f"PIL.{WRITERS[fmt]}")


def flatten(image: Image.Image, background: tuple[int, int, int, int]) -> Image.Image:
    """Alpha composited onto `bg`, for formats without transparency."""
    if image.mode != "RGBA":
        return image
    canvas = Image.new("RGB", image.size, background[:3])
    canvas.paste(image, mask=image.getchannel("A"))
    return canvas


def encode(
    frames: Sequence[Image.Image],
    fmt: OutputFormat,
    *,
    quality: int | None,
    icc: bytes | None,
    background: tuple[int, int, int, int],
    durations: Sequence[int] = (),
    loop: int = 0,
    avif_speed: int = 8,
    webp_effort: int = 4,
) -> bytes:
    for frame in frames:
        frame.info = {}  # Pillow writes some info keys (a JPEG comment, PNG text) back out
    options: dict[str, object] = {}
    if quality is not None and fmt.has_quality:
        options["quality"] = quality
    if icc and len(icc) <= MAX_ICC_BYTES and fmt is not OutputFormat.GIF:
        options["icc_profile"] = icc
    if fmt is OutputFormat.JPEG:
        frames = [flatten(frames[0], background)]
    if fmt is OutputFormat.AVIF:
        options["speed"] = avif_speed
    if fmt is OutputFormat.WEBP:
        options["method"] = webp_effort
    if len(frames) > 1:
        options.update(save_all=True, append_images=list(frames[1:]), loop=loop)
        options["duration"] = list(durations) or 100
        if fmt is OutputFormat.GIF:
            options["disposal"] = 2
    _writer(fmt)
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt.pillow_name, **options)
    return buffer.getvalue()
