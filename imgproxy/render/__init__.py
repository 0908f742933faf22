"""The only door to Pillow: source bytes + a RenderJob -> encoded rendition bytes.

decode (JPEG DCT scaling via draft), orient, colour (render/decoding.py) -> crop, trim (the
region kept) -> fit (resize, rot, fit=pad) -> flip, blur, sharpen, pixelate, pad
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
from imgproxy.geometry import (
    PLACEHOLDER_SIDE,
    Geometry,
    crop_region,
    output_size,
    plan_region,
    turned,
    unturn,
)
from imgproxy.job import RenderJob
from imgproxy.params import Gravity, Transform
from imgproxy.policy import check_pixels, check_size
from imgproxy.render.budget import Budget
from imgproxy.render.crop import SMART_SIDE, entropy_offset, place, smart_point
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
from imgproxy.render.memory import working_bytes
from imgproxy.render.operations import after_fit, on_canvas, rotate, trim_region, turn_point
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

# After the DCT-scaled decode, Pillow may box-reduce by an integer factor while at least
# this much reduction is left for Lanczos (its thumbnail() default).
REDUCING_GAP = 2.0
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
        body, timings = _finish(still, job, t, budget, _transform, stamp)
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
    made by `transform` (`_transform`, or one shared by jobs of one transform)."""
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
    transformed = clock()
    body = encode(
        [out],
        job.output,
        quality=job.quality,
        icc=still.icc,
        background=job.transform.background,
        avif_speed=job.avif_speed,
        webp_effort=job.webp_effort,
    )
    return body, {"render": transformed - began, "encode": clock() - transformed}


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


def _transform(decoded: Decoded, t: Transform, job: RenderJob) -> Image.Image:
    kept, geometry, t = _layout(decoded, t, job)
    return _apply(kept.frame, geometry, _kept_box(kept, geometry, t), t)


def _layout(decoded: Decoded, t: Transform, job: RenderJob) -> tuple[Decoded, Geometry, Transform]:
    """The region the fit starts from (crop, then trim) as a Decoded of its own, its fit,
    and the transform with the focal point moved into that region's turned frame."""
    source = decoded.source
    x, y, w, h = crop_region(source, t)
    left, top, right, bottom = decoded.region
    sx, sy = (right - left) / source[0], (bottom - top) / source[1]
    if t.trim is not None:
        x, y, w, h = trim_region(decoded.frame, (x, y, w, h), (left, top, sx, sy), t.trim)
    box = (left + x * sx, top + y * sy, left + (x + w) * sx, top + (y + h) * sy)
    kept = Decoded(decoded.frame, decoded.icc, (w, h), box)
    geometry = plan_region((w, h), t)
    if t.trim is not None:  # the region's real shape is known only now (SPEC §11.1)
        size = output_size(geometry, t)
        check_size(size, job.output, *job.max_output)
    if t.focal is not None and _reframed(t):
        fx, fy = t.focal  # of the whole source: of the region, then turned
        inside = ((fx * source[0] - x) / w, (fy * source[1] - y) / h)
        point = tuple(min(max(v, 0.0), 1.0) for v in inside)
        t = dataclasses.replace(t, focal=turn_point((point[0], point[1]), t.rotate))
    return kept, geometry, t


def _reframed(t: Transform) -> bool:
    """Whether the fit starts from other than the whole upright source, as it is."""
    return bool(t.crop or t.crop_fractions or t.trim is not None or t.rotate)


def _kept_box(decoded: Decoded, geometry: Geometry, t: Transform) -> Box:
    """The kept region, planned in (turned) source pixels, as a box on the decoded frame."""
    source = turned(decoded.source, t.rotate)
    (sw, sh), (cw, ch) = source, geometry.crop
    left, top, right, bottom = decoded.region
    scale = ((right - left) / decoded.source[0], (bottom - top) / decoded.source[1])
    sx, sy = turned(scale, t.rotate)
    if geometry.crop == source:
        x, y = 0, 0
    elif t.gravity is Gravity.ENTROPY:  # found on the decoded pixels, then in source pixels
        seen, origin = decoded.frame, (left, top)
        if _reframed(t):  # the region alone, turned
            kept = decoded.frame.crop((round(left), round(top), round(right), round(bottom)))
            seen, origin = rotate(kept, t.rotate), (0.0, 0.0)
        ex, ey = entropy_offset(seen, (max(1, round(cw * sx)), max(1, round(ch * sy))))
        x = min(max(round((ex - origin[0]) / sx), 0), sw - cw)
        y = min(max(round((ey - origin[1]) / sy), 0), sh - ch)
    else:
        x, y = place(source, geometry.crop, t.gravity, t.focal or (0.5, 0.5))
    ux, uy, uw, uh = unturn((x, y, cw, ch), source, t.rotate)
    ax, ay = scale
    return (left + ux * ax, top + uy * ay, left + (ux + uw) * ax, top + (uy + uh) * ay)


def _apply(image: Image.Image, geometry: Geometry, box: Box, t: Transform) -> Image.Image:
    """Resize the kept box (in the frame's axes), turn it, fit it, then the operations
    that follow the fit."""
    size, crop = turned(geometry.size, t.rotate), turned(geometry.crop, t.rotate)
    if geometry.size != geometry.crop:
        image = image.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)
    elif crop != image.size:  # no shrink-on-load here: the box is whole pixels
        left, top = round(box[0]), round(box[1])
        image = image.crop((left, top, left + crop[0], top + crop[1]))
    image = rotate(image, t.rotate)
    if geometry.canvas != geometry.size:
        image = on_canvas(image, geometry.canvas, geometry.offset, t.background)
    return after_fit(image, t)


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
            kept, geometry, t = _layout(Decoded(rgba, None, rgba.size, whole), t, job)
            box = _kept_box(kept, geometry, t)
            _check_frames(image, output_size(geometry, t), job)
        assert box is not None
        frames.append(stamp(_apply(rgba, geometry, box, t)))
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
