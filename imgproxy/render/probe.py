"""Source bytes -> SourceInfo from the image header alone (no pixel is decoded)."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

from PIL import Image, UnidentifiedImageError

from imgproxy.errors import TooLarge, Undecodable
from imgproxy.facts import SourceInfo
from imgproxy.formats import MEDIA_TYPES, NEVER_OPENED, sniff
from imgproxy.headers import (
    MAX_DECODES,
    MAX_DERIVED_DEPTH,
    MAX_EXIF_SEGMENTS,
    count_frames,
    declared_size,
    gif_canvas,
    item_work,
    jpeg_frame,
)
from imgproxy.job import DEFAULT_RENDER_SECONDS
from imgproxy.policy import check_pixels
from imgproxy.render import heif
from imgproxy.render.budget import Budget, BudgetedReader
from imgproxy.render.color import has_alpha, orientation, swaps_axes
from imgproxy.settings import Settings

# The proxy's pixel limits are its own checks (headers.py, before Pillow opens; the opened
# size; every GIF frame's extent; every animation frame): a library changes no process-wide
# state of its host (SPEC §11.1), so Pillow's MAX_IMAGE_PIXELS and the warning filters stay
# the host's. Pillow's guard, when the host's settings make it fire, is a 413 like ours.

# Counted no further than this when the caller gives no max_frames: a frame flood then costs
# at most this many frames' walk.
FRAME_COUNT_CAP = 10_000

_BOMB = (Image.DecompressionBombError, Image.DecompressionBombWarning)

# A format's name -> the Pillow plugins that read it. Only these are loaded for a policy
# that names its formats: Image.init() loads all ~40 (1.8 MiB more per worker), and runs
# only for "*" or for bytes our sniffer does not know (identify).
PLUGINS = {
    "JPEG": ("JpegImagePlugin", "MpoImagePlugin"),
    "PNG": ("PngImagePlugin",),
    "GIF": ("GifImagePlugin",),
    "WEBP": ("WebPImagePlugin",),
    "AVIF": ("AvifImagePlugin",),
    "BMP": ("BmpImagePlugin",),
    "TIFF": ("TiffImagePlugin",),
    "ICO": ("IcoImagePlugin",),
}


def own_process_ceiling(settings: Settings) -> None:
    """For the `imgproxy` program alone, which owns its process (a library never calls this:
    SPEC §11.1): Pillow's own guard, which also fires inside plugins, is lifted to the largest
    configured limit so that it never refuses what the configuration allows."""
    limits = [settings.limits, *(store.limits for store in settings.stores.values())]
    most = max(limit.max_source_pixels for limit in limits)
    if Image.MAX_IMAGE_PIXELS is not None and most > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = most


def open_image(
    data: bytes, decoders: tuple[str, ...] | None, max_pixels: int, budget: Budget
) -> Image.Image:
    """Pillow, asked only for the formats this file's approval state allows (SPEC §4), once
    every size the header declares (every ICO entry, TIFF page, AVIF/HEIF item and canvas,
    AV1 frame) is within limits, and a HEIF/AVIF item graph's work too.

    The caller has sniffed an allowed format already, so a file Pillow cannot identify is
    one whose header is broken: 422, not 415 (SPEC §10)."""
    fmt = sniff(data[:32]) or _pillow_name(data)
    frame = jpeg_frame(data) if fmt == "JPEG" else None
    declared = frame.size if frame is not None else declared_size(fmt, data)
    if declared is not None:
        check_pixels(declared, max_pixels)
    check_items(data, max_pixels)  # HEIF, AVIF: what decoding every item takes
    if frame is not None and frame.exif_segments > MAX_EXIF_SEGMENTS:
        raise TooLarge(f"the JPEG has more than {MAX_EXIF_SEGMENTS} Exif segments")
    if fmt == "GIF":  # Pillow allocates a frame's extent as it seeks (even to frame 0)
        check_pixels(gif_canvas(data, FRAME_COUNT_CAP, budget.check), max_pixels)
    if fmt == heif.FORMAT and (decoders is None or fmt in decoders):
        return _opened(lambda: heif.open_heif(BudgetedReader(data, budget)), max_pixels)
    _load_plugins(decoders, fmt)
    known = tuple(Image.OPEN)
    if decoders is None:  # "*": every format Pillow reads, but never one that runs a program
        decoders = tuple(name for name in known if name not in NEVER_OPENED)
    if fmt in decoders and fmt in known:
        # Only the format its bytes claim, which Sources.read checks again: another plugin
        # that parses them (Pillow's AVIF plugin and pi-heif both take a `mif1` file; TGA
        # has no magic) would give facts no later read agrees with, and which plugins a
        # worker has loaded so far must not change the answer.
        decoders = (fmt,)
    else:
        decoders = tuple(name for name in decoders if name in known)
    return _opened(lambda: Image.open(BudgetedReader(data, budget), formats=decoders), max_pixels)


def check_items(data: bytes, max_pixels: int) -> None:
    """A HEIF or AVIF file's item graph and AV1 sequence headers, before a decoder opens it:
    libheif and libavif cannot be stopped once they decode, and they decode each reference
    to an item each time (an overlay tree of one 64x64 tile cost 100,000 decodes) and
    allocate the frame the AV1 stream declares, not the `ispe`. Refused here, before the
    work, since a budget can only answer 422 while the decoder goes on."""
    work = item_work(data)
    if work is None:
        return
    if work.depth > MAX_DERIVED_DEPTH:
        raise Undecodable(f"the image's grids and overlays nest more than {MAX_DERIVED_DEPTH} deep")
    if work.decodes > MAX_DECODES:
        raise TooLarge(f"the image takes more than {MAX_DECODES} decodes of its parts")
    if work.pixels > max_pixels:
        raise TooLarge(
            f"the image's parts decode to {work.pixels} pixels; the limit is {max_pixels} pixels"
        )
    if work.hidden is not None:
        width, height = work.hidden
        raise Undecodable(f"an AV1 frame of {width}x{height} is larger than the file declares")


def _opened(opener: Callable[[], Image.Image], max_pixels: int) -> Image.Image:
    try:
        image = opener()
    except UnidentifiedImageError:
        raise Undecodable("the image header is truncated or corrupt") from None
    except _BOMB:
        raise TooLarge(f"an image in the file is larger than {max_pixels} pixels") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, RuntimeError) as exc:
        # The leading bytes matched a format but its header does not parse.
        raise Undecodable(f"the image header is corrupt ({type(exc).__name__})") from None
    try:
        check_pixels(image.size, max_pixels)
    except TooLarge:
        image.close()
        raise
    return image


def probe(
    data: bytes,
    decoders: tuple[str, ...] | None,
    max_pixels: int,
    max_frames: int = FRAME_COUNT_CAP - 1,
    seconds: float = DEFAULT_RENDER_SECONDS,
    size: int | None = None,
) -> SourceInfo:
    """Header facts, with the pixel limit applied as soon as the header gives the size:
    before frames are counted, so nothing of a bomb is ever decoded (SPEC §4.1). Frames are
    counted no further than max_frames + 1: `frames` is then "more than max_frames".

    `data` may be a file's head up to its `headers.header_end` (a JPEG, a PNG) when `size`
    gives the whole file's bytes."""
    budget = Budget(seconds)
    with open_image(data, decoders, max_pixels, budget) as image:
        frames = _frames(image, data, max_frames + 1, budget)
        check_pixels(image.size, max_pixels)  # a later GIF frame may have grown the canvas
        width, height = image.size
        if swaps_axes(orientation(image)):
            width, height = height, width
        fmt = image.format or "UNKNOWN"
        if fmt == "MPO":
            # A JPEG with a multi-picture index (most phone and camera photos): judged,
            # served and rendered as the JPEG it is; its extra pictures (a preview, a
            # stereo pair) are no animation.
            fmt, frames = "JPEG", 1
        mime = MEDIA_TYPES.get(fmt) or Image.MIME.get(fmt) or "application/octet-stream"
        jpeg = jpeg_frame(data) if fmt == "JPEG" else None
        return SourceInfo(
            format=fmt,
            media_type=mime,
            width=width,
            height=height,
            frames=frames,
            has_alpha=has_alpha(image),
            bytes=len(data) if size is None else size,
            coefficient_bytes=jpeg.coefficient_bytes if jpeg is not None else 0,
        )


def _frames(image: Image.Image, data: bytes, stop: int, budget: Budget) -> int:
    """From the container where Pillow's n_frames would walk (and parse) the whole file: GIF
    blocks, TIFF directories; elsewhere Pillow's count comes from a header (APNG acTL, the
    WebP demuxer, the MPO index)."""
    counted = count_frames(image.format, data, stop, budget.check)
    if counted is not None:
        return max(counted, 1)
    try:
        return min(int(getattr(image, "n_frames", 1)), stop)
    except _BOMB:
        raise TooLarge("a frame of the image is too large") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, RuntimeError) as exc:
        raise Undecodable(f"the frames cannot be counted ({type(exc).__name__})") from None


def unreadable(names: tuple[str, ...]) -> tuple[str, ...]:
    """The format names no Pillow plugin (nor pi-heif) reads: a typo such as `WEBPP` in a
    policy would be accepted and then match no file. Pillow's whole registry is loaded only
    for a name outside PLUGINS, which serving with that policy loads anyway."""
    unknown = tuple(name for name in names if name not in PLUGINS and name != heif.FORMAT)
    if unknown:
        Image.init()
    return tuple(name for name in unknown if name not in Image.OPEN)


@functools.cache
def _load_plugins(decoders: tuple[str, ...] | None, sniffed: str | None) -> None:
    """The plugins of the format the sniffer found, when this file may be opened as that
    (open_image then opens it as nothing else): a worker loads only the plugins of what it is
    sent (AVIF's is 2.5 MiB). Otherwise those of every format this file may be opened with.
    Once per combination."""
    if sniffed in PLUGINS and (decoders is None or sniffed in decoders):
        decoders = (sniffed,)
    if decoders is None or any(name not in PLUGINS for name in decoders if name != heif.FORMAT):
        Image.init()
        return
    for name in decoders:
        for module in PLUGINS.get(name, ()):
            importlib.import_module(f"PIL.{module}")


def _pillow_name(head: bytes) -> str | None:
    return identify(head[:32])


def identify(head: bytes) -> str | None:
    """Ask each registered Pillow plugin's own magic-byte test, without opening anything:
    used only when `"*"` allows formats our sniffer does not know."""
    Image.init()
    for name, (_, accept) in tuple(Image.OPEN.items()):
        try:
            if accept is not None and accept(head):
                return name
        except Exception:  # noqa: S112 - a plugin's accept() on hostile bytes must not fail us
            continue
    return None
