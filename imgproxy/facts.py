"""What the server learns about one version of a source: its detected format, displayed
size, frames and bytes, and `?fm=json` written from them. Approval-independent, so it can be
kept in the shared cache tiers and a restarted (or another) instance answers a hit or a 304
without reading the source.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class SourceInfo:
    format: str  # Pillow's name, e.g. "JPEG"
    media_type: str
    width: int  # as displayed, EXIF orientation applied
    height: int
    frames: int
    has_alpha: bool
    bytes: int
    # What a decoder buffers before the first pixel (a progressive JPEG's coefficients):
    # reserved with the source bytes before a render (render/memory.py).
    coefficient_bytes: int

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def to_json(self) -> builtins.bytes:
        # Field by field: dataclasses.asdict deep-copies each value (5x the time, per source).
        fields = {name: getattr(self, name) for name in self.__slots__}
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: builtins.bytes) -> SourceInfo | None:
        """None for anything that is not exactly what `to_json` wrote (an older layout, a
        damaged entry): the caller then learns the facts again from the bytes."""
        try:
            fields = json.loads(data)
            info = cls(**fields)
        except (ValueError, TypeError, RecursionError):
            return None
        types = (str, str, int, int, int, bool, int, int)
        values = (
            info.format,
            info.media_type,
            info.width,
            info.height,
            info.frames,
            info.has_alpha,
            info.bytes,
            info.coefficient_bytes,
        )
        if not all(type(v) is t for v, t in zip(values, types, strict=True)):
            return None
        if min(info.width, info.height, info.frames, info.bytes) < 1 or info.coefficient_bytes < 0:
            return None
        return info


def metadata_json(
    info: SourceInfo, modified: float | None, approved: bool, original_etag: str
) -> bytes:
    """SPEC §5.1, from the header facts already known and the stored file's own: no decode."""
    when = None if modified is None else datetime.fromtimestamp(modified, UTC).isoformat()
    return json.dumps(
        {
            "width": info.width,
            "height": info.height,
            "format": info.format.lower(),
            "frames": info.frames,
            "bytes": info.bytes,
            "approved": approved,
            "modified": when,
            "etag": original_etag,
        }
    ).encode()
