"""HEIF/HEIC decoding (iPhone photos) through pi-heif, the `heif` extra: its Pillow image
class, imported by the first HEIF file a process opens, so one that never sees HEIF never
loads libheif (about 3 MiB per process)."""

from __future__ import annotations

from importlib.util import find_spec
from typing import IO

from PIL import Image

from imgproxy.errors import UnsupportedFormat

FORMAT = "HEIF"  # pi-heif's format name, for HEIC and every other HEVC-in-HEIF brand
INSTALLED = find_spec("pi_heif") is not None


def open_heif(fp: IO[bytes]) -> Image.Image:
    """The file as a Pillow image, through pi-heif's image class itself: registering its
    opener would change what the host app's own `Image.open` accepts (SPEC §11.1). 415
    without the extra, since a policy may name HEIF where pi-heif is not installed."""
    if not INSTALLED:
        raise UnsupportedFormat("HEIF needs the `heif` extra (pi-heif)")
    from pi_heif import HeifImageFile  # type: ignore[import-untyped]

    image: Image.Image = HeifImageFile(fp)
    return image
