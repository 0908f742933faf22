"""HEIF/HEIC decoding (iPhone photos) through pi-heif, the `heif` extra: its Pillow opener,
registered by the first HEIF file a process opens, so one that never sees HEIF never loads
libheif (about 3 MiB per process)."""

from __future__ import annotations

import functools
import threading
from importlib.util import find_spec

from imgproxy.errors import UnsupportedFormat

FORMAT = "HEIF"  # pi-heif's format name, for HEIC and every other HEVC-in-HEIF brand
INSTALLED = find_spec("pi_heif") is not None

_lock = threading.Lock()


def register() -> None:
    """Make Pillow's "HEIF" opener available; 415 without the extra, since a policy may
    name HEIF where pi-heif is not installed."""
    if not INSTALLED:
        raise UnsupportedFormat("HEIF needs the `heif` extra (pi-heif)")
    with _lock:  # render threads: one registers, the others wait for it
        _register_once()


@functools.cache
def _register_once() -> None:
    from pi_heif import register_heif_opener  # type: ignore[import-untyped]

    # Only the primary image is rendered: no thumbnail, depth or auxiliary images.
    register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
