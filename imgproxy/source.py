"""What the server learned about one version of a source (format, size, frames), and the
capped read of its bytes.

SourceInfo is remembered per (store, path, version) so a later 304 or policy decision for
the same version costs a `stat` and no read (SPEC §5).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from imgproxy.errors import TooLarge
from imgproxy.formats import SNIFF_BYTES


@dataclass(frozen=True, slots=True)
class SourceInfo:
    format: str  # Pillow's name, e.g. "JPEG"
    media_type: str
    width: int  # as displayed, EXIF orientation applied
    height: int
    frames: int
    has_alpha: bool
    bytes: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


async def read_capped(
    chunks: AsyncIterator[bytes], *, limit: int, on_head: Callable[[bytes], None]
) -> bytes:
    """Collect a stream, calling `on_head` with its first bytes (to sniff and judge the
    format before anything else) and stopping with 413 as soon as it passes `limit`."""
    buffer = bytearray()
    head_seen = False
    try:
        async for chunk in chunks:
            buffer += chunk
            if not head_seen and len(buffer) >= SNIFF_BYTES:
                head_seen = True
                on_head(bytes(buffer[:SNIFF_BYTES]))
            if len(buffer) > limit:
                raise TooLarge(f"the source is larger than {limit} bytes")
    finally:
        await _close(chunks)
    if not head_seen:
        on_head(bytes(buffer))
    return bytes(buffer)


async def _close(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
