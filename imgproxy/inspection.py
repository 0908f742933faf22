"""Bytes -> the verdict and facts the server would give them (SPEC §4, §4.1, §14): the same
checks, in the same order, for the server learning a source and for an app taking an upload.

The order is SPEC §10's: the format sniffed from the leading bytes against the approval
state, the byte limit, the size the header declares (read without a decoder), then Pillow's
header parse under the pixel, frame and time limits. `inspect` then decodes a small
rendition, so an upload that passes is one the server can serve: a truncated or corrupt
body is refused at upload, not at the first thumbnail.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgproxy import render
from imgproxy.facts import SourceInfo
from imgproxy.formats import SNIFF_BYTES, OutputFormat, sniff
from imgproxy.headers import declared_size
from imgproxy.job import RenderJob
from imgproxy.params import build_transform
from imgproxy.policy import FormatPolicy, check_bytes, check_frames, check_pixels
from imgproxy.render import memory
from imgproxy.settings import LimitsSettings, Settings

CHECK_WIDTH = "64"  # the rendition `inspect` decodes: every pixel read, little encoded


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What an app records about an accepted image (its model's width/height fields)."""

    width: int  # as displayed, EXIF orientation applied
    height: int
    format: str  # Pillow's name, e.g. "JPEG"
    frames: int
    bytes: int
    mime: str


def judge_head(
    policy: FormatPolicy, limits: LimitsSettings, approved: bool, size: int | None, head: bytes
) -> str | None:
    """Before any more is read: the format sniffed from the leading bytes against the
    approval state (403/415), then the byte size the store declared (413). The format."""
    detected = sniff(head) or render.identify(head)
    policy.check(detected, approved)
    check_bytes(size, limits)
    return detected


def check_declared(detected: str | None, data: bytes, limits: LimitsSettings) -> None:
    """The pixel limit against the size the header declares, and a HEIF/AVIF file's items
    against the limits, before a decoder allocates."""
    declared = declared_size(detected, data)
    if declared is not None:
        check_pixels(declared, limits.max_source_pixels)
    render.check_items(data, limits.max_source_pixels)


def judge(policy: FormatPolicy, limits: LimitsSettings, approved: bool, info: SourceInfo) -> None:
    """A version's facts against this store's rules (facts may come from another process)."""
    policy.check(info.format, approved)
    check_bytes(info.bytes, limits)
    check_pixels((info.width, info.height), limits.max_source_pixels)


def inspect(
    data: bytes, *, settings: Settings, approved: bool = False, store: str | None = None
) -> ImageInfo:
    """The server's own checks on uploaded bytes, with `store`'s policy and limits (else the
    global ones); raises the errors the server answers with (`NotApproved`,
    `UnsupportedFormat`, `TooLarge`, `Undecodable`: `.code` and `.status` as in SPEC §5).
    Blocking and CPU-bound: run it in a thread from async code."""
    policy, limits = _rules(settings, store)
    detected = judge_head(policy, limits, approved, len(data), data[:SNIFF_BYTES])
    check_declared(detected, data, limits)
    decoders = policy.decoders(approved)
    info = render.probe(
        data,
        decoders,
        limits.max_source_pixels,
        limits.max_frames,
        limits.max_render_seconds,
    )
    judge(policy, limits, approved, info)
    # Over max_frames the server refuses the original and every animated rendition.
    check_frames(info, limits, animated_output=info.frames > 1)
    job = RenderJob(
        build_transform({"w": CHECK_WIDTH}, limits.max_output_dimension),
        OutputFormat.PNG,
        None,
        decoders,
        False,
        limits.max_source_pixels,
        max_jpeg_scans=limits.max_jpeg_scans,
        budget=limits.max_render_seconds,
    )
    # The decoder's working memory, as the server reserves it: concurrent calls (an app's
    # upload threads) hold no more than `limits.inflight_bytes` together (SPEC §11.1).
    with memory.hold(limits.inflight_bytes, render.working_bytes(info, job)):
        render.render(data, job)
    return ImageInfo(info.width, info.height, info.format, info.frames, info.bytes, info.media_type)


def _rules(settings: Settings, store: str | None) -> tuple[FormatPolicy, LimitsSettings]:
    if store is None:
        return FormatPolicy.from_settings(settings.policy), settings.limits
    try:
        config = settings.stores[store]
    except KeyError:
        configured = ", ".join(settings.stores) or "none"
        raise ValueError(f"no store {store!r} in the settings (configured: {configured})") from None
    return FormatPolicy.from_settings(config.policy), config.limits
