"""Source bytes -> SourceInfo from the image header alone (no pixel is decoded)."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from imgproxy.errors import Undecodable
from imgproxy.facts import SourceInfo
from imgproxy.formats import MEDIA_TYPES
from imgproxy.policy import check_pixels
from imgproxy.render.color import has_alpha, orientation, swaps_axes


def open_image(data: bytes, decoders: tuple[str, ...] | None) -> Image.Image:
    """Pillow, asked only for the formats this file's approval state allows (SPEC §4).

    The caller has sniffed an allowed format already, so a file Pillow cannot identify is
    one whose header is broken: 422, not 415 (SPEC §10)."""
    try:
        return Image.open(io.BytesIO(data), formats=decoders)
    except UnidentifiedImageError:
        raise Undecodable("the image header is truncated or corrupt") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        # The leading bytes matched a format but its header does not parse.
        raise Undecodable(f"the image header is corrupt ({type(exc).__name__})") from None


def probe(data: bytes, decoders: tuple[str, ...] | None, max_pixels: int) -> SourceInfo:
    """Header facts, with the pixel limit applied as soon as the header gives the size:
    before frames are counted, so nothing of a bomb is ever decoded (SPEC §4.1)."""
    with open_image(data, decoders) as image:
        check_pixels(image.size, max_pixels)
        try:
            frames = getattr(image, "n_frames", 1)
        except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
            raise Undecodable(f"the frames cannot be counted ({type(exc).__name__})") from None
        check_pixels(image.size, max_pixels)  # a later GIF frame may have grown the canvas
        width, height = image.size
        if swaps_axes(orientation(image)):
            width, height = height, width
        fmt = image.format or "UNKNOWN"
        mime = MEDIA_TYPES.get(fmt) or Image.MIME.get(fmt) or "application/octet-stream"
        return SourceInfo(
            format=fmt,
            media_type=mime,
            width=width,
            height=height,
            frames=int(frames),
            has_alpha=has_alpha(image),
            bytes=len(data),
        )


def identify(head: bytes) -> str | None:
    """Ask each registered Pillow plugin's own magic-byte test, without opening anything:
    used only when `"*"` allows formats our sniffer does not know."""
    Image.init()
    for name, (_, accept) in Image.OPEN.items():
        try:
            if accept is not None and accept(head):
                return name
        except Exception:  # noqa: S112 - a plugin's accept() on hostile bytes must not fail us
            continue
    return None
