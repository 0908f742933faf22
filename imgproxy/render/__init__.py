"""The only door to Pillow: source bytes + a RenderJob -> encoded rendition bytes.

decode (JPEG DCT scaling via draft), orient, colour (render/decoding.py) -> crop, trim (the
region kept) -> fit (resize, rot, fit=pad; render/layout.py) -> flip, blur, sharpen, pixelate, pad
(render/operations.py) -> wm (render/watermark.py) -> encode.
Everything here is blocking and runs in the render executor's threads.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, ImageSequence

from imgproxy.errors import BadRequest, TooLarge, Undecodable
from imgproxy.formats import OutputFormat
from imgproxy.geometry import PLACEHOLDER_SIDE, Geometry, output_size
from imgproxy.job import RenderJob
from imgproxy.params import Gravity, Transform
from imgproxy.policy import check_pixels
from imgproxy.render.budget import Budget
from imgproxy.render.crop import SMART_SIDE, smart_point
from imgproxy.render.decoding import (
    DCT_SCALED,
    Box,
    Decoded,
    check_scans,
    decode_still,
    draft_still,
    load_still,
)
from imgproxy.render.encode import AVIF_AVAILABLE, encode
from imgproxy.render.layout import apply_fit, kept_box, plan_kept, transformed
from imgproxy.render.memory import working_bytes
from imgproxy.render.probe import check_items, identify, open_image, probe, unreadable
from imgproxy.render.watermark import Stamp, stamper

__all__ = [
    "AVIF_AVAILABLE",
    "Decoded",
    "RenderJob",
    "Rendered",
    "check_items",
    "decode",
    "finish",
    "identify",
    "probe",
    "render",
    "unreadable",
    "working_bytes",
]

# g=smart analyses a copy SMART_SIDE on its longer side: decoded at the DCT scale this asks.
SMART_ANALYSIS = Transform(width=SMART_SIDE, height=SMART_SIDE)

# RuntimeError: what Pillow's AVIF plugin and pi-heif raise for corrupt data.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    MemoryError,
    RuntimeError,
)
_BOMB = (Image.DecompressionBombError, Image.DecompressionBombWarning)


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    timings: dict[str, float]  # decode, render, encode seconds, for Server-Timing
    smart: tuple[float, float] | None = None  # the g=smart point found, for the next sizes


def render(data: bytes, job: RenderJob, mark: bytes | None = None) -> Rendered:
    """Within the job's limits on work: JPEG scans counted before decoding (413), and its
    time budget checked between stages, frames and decoder reads (422, render/budget.py).
    `mark`: the bytes of job.mark's watermark, drawn on every output frame."""
    clock = time.perf_counter
    budget = Budget(job.budget)
    stamp = stamper(job.mark, mark, budget)
    with _judged(job), open_image(data, job.decoders, job.max_pixels, budget) as image:
        check_scans(image, data, job.max_jpeg_scans)
        began = clock()
        if job.animate:
            body = _render_animation(image, job, budget, stamp)
            return Rendered(body, {"render": clock() - began})
        if job.output.is_placeholder:
            return Rendered(_placeholder(image, job.output), {"render": clock() - began})
        still = decode_still(image, job.transform)
        budget.check()
        decoded = clock() - began
        t, found = job.transform, None
        if t.gravity is Gravity.SMART and t.focal is None:  # not known for this version
            analysed = _analysis_frame(data, job, image, still, budget)
            t = dataclasses.replace(t, focal=(found := _smart_point(analysed)))
        body, timings = _finish(still, job, t, budget, transformed, stamp)
        return Rendered(body, {"decode": decoded, **timings}, found)


def decode(data: bytes, job: RenderJob) -> Decoded:
    """The decode stage alone: the still frame `job` starts from, which every job of the
    same version and DCT scale starts from too (render/shared.py); `render` does both."""
    budget = Budget(job.budget)
    with _judged(job), open_image(data, job.decoders, job.max_pixels, budget) as image:
        check_scans(image, data, job.max_jpeg_scans)
        still = decode_still(image, job.transform)
        budget.check()
        return still


def finish(
    still: Decoded,
    job: RenderJob,
    transform: Callable[[Decoded, Transform, RenderJob], Image.Image],
) -> Rendered:
    """The finish stage alone: a still job's rendition from its decoded frame, the pixels
    made by `transform` (layout.transformed, or one shared by jobs of one transform)."""
    with _judged(job):
        budget = Budget(job.budget)
        body, timings = _finish(still, job, job.transform, budget, transform, lambda out: out)
        return Rendered(body, timings)


def _finish(
    still: Decoded,
    job: RenderJob,
    t: Transform,
    budget: Budget,
    transform: Callable[[Decoded, Transform, RenderJob], Image.Image],
    stamp: Stamp,
) -> tuple[bytes, dict[str, float]]:
    clock = time.perf_counter
    began = clock()
    out = stamp(transform(still, t, job))
    budget.check()
    fitted = clock()
    body = encode(
        [out],
        job.output,
        quality=job.quality,
        icc=still.icc,
        background=job.transform.background,
        avif_speed=job.avif_speed,
        webp_effort=job.webp_effort,
    )
    return body, {"render": fitted - began, "encode": clock() - fitted}


@contextmanager
def _judged(job: RenderJob) -> Iterator[None]:
    """Pillow's failures as the client's errors: a bomb 413, anything else corrupt 422."""
    try:
        yield
    except _BOMB:
        raise TooLarge(f"an image in the file is larger than {job.max_pixels} pixels") from None
    except _DECODE_ERRORS as exc:
        raise Undecodable(
            f"the image data is corrupt or truncated ({type(exc).__name__})"
        ) from None


def _placeholder(image: Image.Image, output: OutputFormat) -> bytes:
    """The whole upright image's hash, from a decode at most PLACEHOLDER_SIDE on a side
    (a JPEG at its smallest DCT scale): the hashes keep only the lowest frequencies."""
    side = PLACEHOLDER_SIDE
    decoded = decode_still(image, Transform(width=side, height=side))
    left, top, right, bottom = (round(edge) for edge in decoded.region)
    still = decoded.frame.crop((left, top, right, bottom))  # without a DCT scale's edge blocks
    from imgproxy.render import placeholders  # numpy: the `placeholders` extra (params.py)

    hashed = placeholders.thumbhash if output is OutputFormat.THUMBHASH else placeholders.blurhash
    return hashed(still).encode("ascii")


def _analysis_frame(
    data: bytes, job: RenderJob, image: Image.Image, still: Decoded, budget: Budget
) -> Decoded:
    """The frame g=smart analyses: a JPEG's at the DCT scale its analysis size calls for,
    whatever the output size. The point decides the pixels of every size of the version,
    under ETags that do not name it, so each process must find the same one, whichever size
    it was first asked for (a 1/2- and a 1/8-scale decode put it up to 0.006 apart). The
    render's own decode serves when its scale is that one (a thumbnail's usually is)."""
    if image.format not in DCT_SCALED:
        return still  # decoded whole, whatever the output size
    with open_image(data, job.decoders, job.max_pixels, budget) as again:
        turn, source, stored = draft_still(again, SMART_ANALYSIS)
        if again.size == image.size:  # the same DCT scale: the same pixels
            return still
        return load_still(again, turn, source, stored)


def _smart_point(decoded: Decoded) -> tuple[float, float]:
    """The salient point of the upright frame, as fractions of the source (the frame may be
    a DCT-scaled decode with edge blocks beyond the source)."""
    left, top, right, bottom = decoded.region
    kept = decoded.frame.crop((round(left), round(top), round(right), round(bottom)))
    return smart_point(kept)


def _render_animation(image: Image.Image, job: RenderJob, budget: Budget, stamp: Stamp) -> bytes:
    """Every frame through the same geometry; durations and loop count kept. The frames'
    pixels count together against max_pixels, whatever size each frame turns out to be."""
    frames, durations = [], []
    box: Box | None = None
    geometry: Geometry | None = None
    t = job.transform
    pixels = 0
    for frame in ImageSequence.Iterator(image):
        budget.check()
        pixels += frame.width * frame.height
        check_pixels((pixels, 1), job.max_pixels)
        rgba = frame.convert("RGBA")
        if geometry is None:  # the first frame's region (and trim) holds for every frame
            whole = (0.0, 0.0, float(rgba.width), float(rgba.height))
            kept, geometry, t = plan_kept(Decoded(rgba, None, rgba.size, whole), t, job)
            box = kept_box(kept, geometry, t)
            _check_frames(image, output_size(geometry, t), job)
        assert box is not None
        frames.append(stamp(apply_fit(rgba, geometry, box, t)))
        durations.append(int(frame.info.get("duration", 100)))
    budget.check()
    loop = int(image.info.get("loop", 0))
    return encode(
        frames,
        job.output,
        quality=job.quality,
        icc=None,
        background=t.background,
        durations=durations,
        loop=loop,
        avif_speed=job.avif_speed,
        webp_effort=job.webp_effort,
    )


def _check_frames(image: Image.Image, size: tuple[int, int], job: RenderJob) -> None:
    """Once trim has told the frames' size: together within max_pixels, as the variant
    judged the untrimmed ones (policy.check_output)."""
    frames = getattr(image, "n_frames", 1)
    if job.transform.trim is not None and frames * size[0] * size[1] > job.max_pixels:
        raise BadRequest(
            f"{frames} frames of {size[0]}x{size[1]} pixels exceed limits.max_source_pixels"
            f" ({job.max_pixels}) for animated output"
        )
