"""A decoded frame + a transform -> the job's pixels: the region the fit starts from (crop,
then trim), its fit, the box kept on the decoded frame (placed by gravity, focal point or
entropy), then the resize, turn, canvas and the operations after the fit.
"""

from __future__ import annotations

import dataclasses

from PIL import Image

from imgproxy.geometry import Geometry, crop_region, output_size, plan_region, turned, unturn
from imgproxy.job import RenderJob
from imgproxy.params import Gravity, Transform
from imgproxy.policy import check_size
from imgproxy.render.crop import entropy_offset, place
from imgproxy.render.decoding import Box, Decoded
from imgproxy.render.operations import after_fit, on_canvas, rotate, trim_region, turn_point

# After the DCT-scaled decode, Pillow may box-reduce by an integer factor while at least
# this much reduction is left for Lanczos (its thumbnail() default).
REDUCING_GAP = 2.0


def transformed(decoded: Decoded, t: Transform, job: RenderJob) -> Image.Image:
    kept, geometry, t = plan_kept(decoded, t, job)
    return apply_fit(kept.frame, geometry, kept_box(kept, geometry, t), t)


def plan_kept(
    decoded: Decoded, t: Transform, job: RenderJob
) -> tuple[Decoded, Geometry, Transform]:
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
    if t.focal is not None and reframed(t):
        fx, fy = t.focal  # of the whole source: of the region, then turned
        inside = ((fx * source[0] - x) / w, (fy * source[1] - y) / h)
        point = tuple(min(max(v, 0.0), 1.0) for v in inside)
        t = dataclasses.replace(t, focal=turn_point((point[0], point[1]), t.rotate))
    return kept, geometry, t


def reframed(t: Transform) -> bool:
    """Whether the fit starts from other than the whole upright source, as it is."""
    return bool(t.crop or t.crop_fractions or t.trim is not None or t.rotate)


def kept_box(decoded: Decoded, geometry: Geometry, t: Transform) -> Box:
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
        if reframed(t):  # the region alone, turned
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


def apply_fit(image: Image.Image, geometry: Geometry, box: Box, t: Transform) -> Image.Image:
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
