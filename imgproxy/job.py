"""RenderJob: everything a render needs besides the source bytes, decided before any decode
(the output format negotiated, quality, decoders allowed, animation, pixel limit).

A plain value outside the render package, so choosing a variant never loads Pillow.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgproxy.formats import OutputFormat
from imgproxy.params import Transform


@dataclass(frozen=True, slots=True)
class RenderJob:
    transform: Transform
    output: OutputFormat
    quality: int | None
    decoders: tuple[str, ...] | None  # the Pillow formats this file may be opened with
    animate: bool  # keep every frame (the variant checked max_frames)
    max_pixels: int
