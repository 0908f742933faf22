"""Any decoded mode -> 8-bit RGB or RGBA with correct colours; EXIF orientation.

CMYK with an embedded profile, and HEIF with any (an iPhone's Display P3: SPEC §13 wants
its renditions in sRGB), go through LittleCMS to sRGB (a bare convert() shifts colours);
other profiles are kept and written back by the encoder, if no larger than MAX_ICC_BYTES:
a source must not make its thumbnails megabytes of profile.
"""

from __future__ import annotations

import functools
import io
import logging
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    from PIL import ImageCms

log = logging.getLogger(__name__)
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

ORIENTATION_TAG = 0x0112

# Real profiles are a few KiB (matrix) to a few hundred (printer LUTs). A bigger one is
# dropped, and the pixels taken as sRGB: never copied into the output, never parsed.
MAX_ICC_BYTES = 1 << 20


# Formats whose decoder has applied the container's own rotation and mirroring (HEIF's
# irot/imir, by libheif): the EXIF tag only records what that was, and must not turn the
# pixels a second time.
ORIENTED_BY_DECODER = frozenset({"HEIF"})
# Formats whose orientation is read from the chunks before the pixels only: a PNG's eXIf
# after IDAT (the PNG specification's 3rd edition places it before) is ignored, so the
# header's facts are the render's, and learning them decodes nothing (SPEC §11.1).
EXIF_FROM_HEADER = frozenset({"PNG"})
# Formats whose embedded profile is applied here rather than passed on (SPEC §13).
CONVERTED_TO_SRGB = frozenset({"HEIF"})


def orientation(image: Image.Image) -> int:
    if image.format in ORIENTED_BY_DECODER:
        return 1
    if image.format in EXIF_FROM_HEADER and "exif" not in image.info:
        return 1  # Pillow's getexif() would decode every pixel looking past the header
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block must not fail the image: treat as upright
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def swaps_axes(value: int) -> bool:
    return value in (5, 6, 7, 8)


def orient(image: Image.Image, value: int) -> Image.Image:
    method = _TRANSPOSE.get(value)
    return image.transpose(method) if method is not None else image


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )


def to_rgb(image: Image.Image) -> tuple[Image.Image, bytes | None]:
    """The image in RGB/RGBA and the ICC profile to embed with it (None: plain sRGB).
    `image` is the one opened, its format known (ORIENTED_BY_DECODER is never turned)."""
    icc = image.info.get("icc_profile") or None
    if icc is not None and len(icc) > MAX_ICC_BYTES:
        icc = None
    if image.mode == "CMYK":
        return _to_srgb(image, icc, "RGB"), None
    if icc and image.format in CONVERTED_TO_SRGB and image.mode in ("RGB", "RGBA"):
        return _to_srgb(image, icc, image.mode), None
    if image.mode in _SIXTEEN_BIT:
        image = image.point(lambda value: value * (1 / 256)).convert("L")
    if image.mode in ("RGB", "RGBA"):
        return image, icc
    if image.mode == "F":
        image = image.convert("L")
    target = "RGBA" if has_alpha(image) else "RGB"
    # A grey profile cannot describe RGB pixels: drop it rather than mislabel them.
    keep = icc if image.mode not in ("L", "LA", "1") else None
    return image.convert(target), keep


@functools.cache
def _srgb() -> ImageCms.ImageCmsProfile:
    """LittleCMS, loaded for the first CMYK or HEIF source (1.4 MiB a worker otherwise)."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_srgb(image: Image.Image, icc: bytes | None, mode: str) -> Image.Image:
    """Through the profile to sRGB in `mode`; a profile LittleCMS cannot use is ignored."""
    from PIL import ImageCms

    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(image, source, _srgb(), outputMode=mode)
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError):
            log.info("unusable %s profile; converting without it", image.mode)
    return image.convert(mode)
