"""Approval state + detected format + limits -> allowed, or the 403/413/415 that says why;
and a rendition's output size against the limits and its encoder (400).

Decided from sniffed bytes and header facts only: nothing here decodes (SPEC §4, §4.1, §11.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from imgproxy.errors import BadRequest, NotApproved, TooLarge, UnsupportedFormat
from imgproxy.facts import SourceInfo
from imgproxy.formats import NEVER_OPENED, OutputFormat
from imgproxy.geometry import output_size, plan_transform
from imgproxy.params import Transform
from imgproxy.settings import LimitsSettings, PolicySettings

ANY = "*"


@dataclass(frozen=True, slots=True)
class FormatPolicy:
    always: frozenset[str]
    approved_only: frozenset[str]
    approved_any: bool  # "*": every format Pillow reads, once approved

    @classmethod
    def from_settings(cls, policy: PolicySettings) -> FormatPolicy:
        always = frozenset(policy.image_formats)
        return cls(
            always=always,
            approved_only=frozenset(policy.approved_image_formats) - always - {ANY},
            approved_any=ANY in policy.approved_image_formats,
        )

    def decoders(self, approved: bool) -> tuple[str, ...] | None:
        """The Pillow formats a file in this state may be opened with (None: all)."""
        if approved and self.approved_any:
            return None
        return tuple(sorted(self.always | self.approved_only if approved else self.always))

    def check(self, detected: str | None, approved: bool) -> None:
        """403 for a format that needs approval, 415 for one never allowed or unknown."""
        if detected in NEVER_OPENED:  # even under "*" (formats.NEVER_OPENED says why)
            raise UnsupportedFormat(f"{detected} files are never opened")
        if detected in self.always:
            return
        if detected is not None and (detected in self.approved_only or self.approved_any):
            if not approved:
                raise NotApproved(f"{detected} files are served only once approved")
            return
        raise UnsupportedFormat(
            f"{detected} is not an allowed image format" if detected else "not a recognised image"
        )


def check_bytes(size: int | None, limits: LimitsSettings) -> None:
    if size is not None and size > limits.max_source_bytes:
        raise TooLarge(f"the source has {size} bytes; the limit is {limits.max_source_bytes}")


def check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    """Applied to what a header declares, before anything is decoded."""
    width, height = size
    if width * height > max_pixels:
        raise TooLarge(f"the source is {width}x{height} pixels; the limit is {max_pixels} pixels")


def check_frames(info: SourceInfo, limits: LimitsSettings, *, animated_output: bool) -> None:
    """Animated output decodes every frame, so the frames' pixels count together against
    max_source_pixels (as imgproxy does), besides the frame count itself."""
    if not animated_output:
        return
    if info.frames > limits.max_frames:
        raise TooLarge(f"the source has {info.frames} frames; the limit is {limits.max_frames}")
    if info.frames * info.pixels > limits.max_source_pixels:
        raise TooLarge(
            f"{info.frames} frames of {info.width}x{info.height} pixels exceed the limit of "
            f"{limits.max_source_pixels} pixels for animated output"
        )


def check_output(
    info: SourceInfo, t: Transform, output: OutputFormat, limits: LimitsSettings, *, animate: bool
) -> None:
    """400 for an output the client sized past the limits, or past what its encoder writes:
    planned from the header's size, so it is refused before a byte is read, not after its
    pixels were made (a 10x1 PNG with `h=4096&enlarge=1` would be 40960x4096)."""
    if output.is_placeholder:  # a hash of a small decode, whatever the source's size
        return
    width, height = output_size(plan_transform(info.size, t), t)
    check_size((width, height), output, limits.max_output_dimension, limits.max_output_pixels)
    # Every frame of an animation is kept until it is encoded: enlarging must not take the
    # frames past the pixels their source may have (check_frames).
    if animate and info.frames * width * height > limits.max_source_pixels:
        raise BadRequest(
            f"{info.frames} frames of {width}x{height} pixels exceed limits.max_source_pixels"
            f" ({limits.max_source_pixels}) for animated output"
        )


def check_size(size: tuple[int, int], output: OutputFormat, side: int, pixels: int) -> None:
    """One output frame against the limits and its encoder: by the variant before any read,
    and by the render again once `trim` has told the region's real shape."""
    width, height = size
    if max(width, height) > side:
        raise BadRequest(
            f"the output would be {width}x{height} pixels; limits.max_output_dimension is {side}"
        )
    if width * height > pixels:
        raise BadRequest(
            f"the output would be {width}x{height} pixels; limits.max_output_pixels is {pixels}"
        )
    encodable = output.max_side
    if encodable is not None and max(width, height) > encodable:
        raise BadRequest(
            f"the output would be {width}x{height} pixels; {output} is at most {encodable}"
            " pixels a side"
        )
