"""RenderJob: everything a render needs besides the source bytes, decided before any decode
(the output format negotiated, quality, decoders allowed, animation, the limits on its work).

A plain value outside the render package, so choosing a variant never loads Pillow.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgproxy.formats import OutputFormat
from imgproxy.params import Transform
from imgproxy.settings import LimitsSettings

DEFAULT_JPEG_SCANS = 100  # libjpeg's own progressive script writes 10; mozjpeg about as many
DEFAULT_RENDER_SECONDS = 10.0
DEFAULT_AVIF_SPEED = 8
DEFAULT_WEBP_EFFORT = 4
_LIMITS = LimitsSettings()
DEFAULT_MAX_OUTPUT = (_LIMITS.max_output_dimension, _LIMITS.max_output_pixels)


@dataclass(frozen=True, slots=True)
class MarkJob:
    """A `wm=` mark as its render needs it (SPEC §15.1): where and how to draw it, and how
    its bytes may be opened, by the decoders and pixel limit of its own store, as a source's."""

    position: str  # a gravity: center n s e w ne nw se sw
    opacity: float  # 0..1
    scale: float  # the mark's width as a fraction of the output's; 0: its own width
    margin: int  # output pixels from the edges
    decoders: tuple[str, ...] | None
    max_pixels: int
    size: tuple[int, int]  # from its header facts: for the working-memory estimate
    bytes: int
    key: tuple[str, ...] = ()  # its store, path, version and settings: names its scaled copies


@dataclass(frozen=True, slots=True)
class RenderJob:
    """A Variant is built once per URL and version, so the job carries the time budget in
    seconds, not a deadline: each render's deadline starts when its thread starts."""

    transform: Transform
    output: OutputFormat
    quality: int | None
    decoders: tuple[str, ...] | None  # the Pillow formats this file may be opened with
    animate: bool  # keep every frame (the variant checked max_frames)
    max_pixels: int
    max_jpeg_scans: int = DEFAULT_JPEG_SCANS  # 413 beyond: each scan walks the whole image
    budget: float = DEFAULT_RENDER_SECONDS  # 422 beyond (limits.max_render_seconds)
    avif_speed: int = DEFAULT_AVIF_SPEED  # render.avif_speed
    webp_effort: int = DEFAULT_WEBP_EFFORT  # render.webp_effort
    # limits.max_output_dimension and max_output_pixels: checked again once `trim` is known
    max_output: tuple[int, int] = DEFAULT_MAX_OUTPUT
    mark: MarkJob | None = None  # wm=: composited on every output frame, last
