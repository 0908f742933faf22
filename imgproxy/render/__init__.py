"""The only door to Pillow: source bytes + a RenderJob -> encoded rendition bytes.

decode (JPEG DCT scaling via draft) -> orient -> colour -> crop/resize -> pad -> encode.
Everything here is blocking and runs in the render executor's threads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from PIL import Image, ImageSequence

from imgproxy.errors import Undecodable
from imgproxy.job import RenderJob
from imgproxy.params import Gravity, Transform
from imgproxy.policy import check_pixels
from imgproxy.render.color import orient, orientation, swaps_axes, to_rgb
from imgproxy.render.crop import entropy_offset, place
from imgproxy.render.encode import AVIF_AVAILABLE, encode
from imgproxy.render.geometry import Geometry, plan
from imgproxy.render.probe import identify, open_image, probe

__all__ = [
    "AVIF_AVAILABLE",
    "RenderJob",
    "Rendered",
    "identify",
    "probe",
    "render",
]

# Pixel limits are enforced per store from the header before any decode (policy.py), so
# Pillow's own global bomb check would only get in the way of a store with higher limits.
Image.MAX_IMAGE_PIXELS = None

# Pillow's thumbnail() default: decode at least twice the target, then resample.
REDUCING_GAP = 2.0

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, MemoryError)


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    timings: dict[str, float]  # decode, render, encode seconds, for Server-Timing


def render(data: bytes, job: RenderJob) -> Rendered:
    clock = time.perf_counter
    try:
        with open_image(data, job.decoders) as image:
            check_pixels(image.size, job.max_pixels)  # again: the bytes are re-read from the store
            began = clock()
            if job.animate:
                body = _render_animation(image, job)
                return Rendered(body, {"render": clock() - began})
            frame, icc = _decode_still(image, job.transform)
            decoded = clock()
            out = _transform(frame, job.transform)
            transformed = clock()
            body = encode(
                [out], job.output, quality=job.quality, icc=icc, background=job.transform.background
            )
            return Rendered(
                body,
                {
                    "decode": decoded - began,
                    "render": transformed - decoded,
                    "encode": clock() - transformed,
                },
            )
    except _DECODE_ERRORS as exc:
        raise Undecodable(
            f"the image data is corrupt or truncated ({type(exc).__name__})"
        ) from None


def _decode_still(image: Image.Image, t: Transform) -> tuple[Image.Image, bytes | None]:
    turn = orientation(image)
    if image.format == "JPEG" and (t.width or t.height):
        _draft(image, t, turn)
    image.load()
    rgb, icc = to_rgb(orient(image, turn))
    return rgb, icc


def _draft(image: Image.Image, t: Transform, turn: int) -> None:
    """Ask libjpeg for a 1/2, 1/4 or 1/8 DCT-scaled decode that still covers the output."""
    width, height = image.size
    if swaps_axes(turn):
        width, height = height, width
    geometry = plan((width, height), (t.width, t.height), t.fit, enlarge=t.enlarge)
    scale = max(geometry.size[0] / geometry.crop[0], geometry.size[1] / geometry.crop[1])
    want = (max(1, int(width * scale * REDUCING_GAP)), max(1, int(height * scale * REDUCING_GAP)))
    if swaps_axes(turn):
        want = (want[1], want[0])
    image.draft(image.mode if image.mode in ("RGB", "L", "CMYK") else None, want)


def _transform(image: Image.Image, t: Transform) -> Image.Image:
    geometry = plan(image.size, (t.width, t.height), t.fit, enlarge=t.enlarge)
    return _apply(image, geometry, _crop_origin(image, geometry, t), t.background)


def _crop_origin(image: Image.Image, geometry: Geometry, t: Transform) -> tuple[int, int]:
    if geometry.crop == image.size:
        return (0, 0)
    if t.gravity is Gravity.ENTROPY:
        return entropy_offset(image, geometry.crop)
    return place(image.size, geometry.crop, t.gravity, t.focal)


def _apply(
    image: Image.Image,
    geometry: Geometry,
    origin: tuple[int, int],
    background: tuple[int, int, int, int],
) -> Image.Image:
    x, y = origin
    box = (x, y, x + geometry.crop[0], y + geometry.crop[1])
    if geometry.size != geometry.crop:
        image = image.resize(
            geometry.size, Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP
        )
    elif geometry.crop != image.size:
        image = image.crop(box)
    if geometry.canvas != geometry.size:
        mode = "RGBA" if image.mode == "RGBA" or background[3] < 255 else "RGB"
        canvas = Image.new(mode, geometry.canvas, background if mode == "RGBA" else background[:3])
        canvas.paste(image, geometry.offset, image if image.mode == "RGBA" else None)
        image = canvas
    return image


def _render_animation(image: Image.Image, job: RenderJob) -> bytes:
    """Every frame through the same geometry; durations and loop count kept."""
    frames, durations = [], []
    origin: tuple[int, int] | None = None
    geometry: Geometry | None = None
    t = job.transform
    for frame in ImageSequence.Iterator(image):
        check_pixels(frame.size, job.max_pixels)
        rgba = frame.convert("RGBA")
        if geometry is None:
            geometry = plan(rgba.size, (t.width, t.height), t.fit, enlarge=t.enlarge)
            origin = _crop_origin(rgba, geometry, t)
        assert origin is not None
        frames.append(_apply(rgba, geometry, origin, t.background))
        durations.append(int(frame.info.get("duration", 100)))
    loop = int(image.info.get("loop", 0))
    return encode(
        frames,
        job.output,
        quality=job.quality,
        icc=None,
        background=t.background,
        durations=durations,
        loop=loop,
    )
