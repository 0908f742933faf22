"""Approval state + detected format + limits -> allowed, or the 403/413/415 that says why.

Decided from sniffed bytes and header facts only: nothing here decodes (SPEC §4, §4.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from imgproxy.errors import NotApproved, TooLarge, UnsupportedFormat
from imgproxy.facts import SourceInfo
from imgproxy.formats import NEVER_OPENED
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
