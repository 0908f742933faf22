"""Leading bytes -> detected source format; output formats and their media types.

Sniffing is pure and Pillow-free on purpose: it runs before any decoder is chosen, to tell
"needs approval" (403) from "never allowed" (415) without trusting names or upstream types.
"""

from __future__ import annotations

from enum import StrEnum

SNIFF_BYTES = 32


class OutputFormat(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"
    AVIF = "avif"
    GIF = "gif"

    @property
    def media_type(self) -> str:
        return f"image/{self.value}"

    @property
    def pillow_name(self) -> str:
        return self.value.upper()

    @property
    def has_quality(self) -> bool:
        """png and gif are lossless: `q` means nothing for them (SPEC §10)."""
        return self in {OutputFormat.JPEG, OutputFormat.WEBP, OutputFormat.AVIF}

    @property
    def animates(self) -> bool:
        return self in {OutputFormat.GIF, OutputFormat.WEBP}

    @property
    def default_quality(self) -> int | None:
        """SPEC §2.1's per-format default for `q` (None: lossless)."""
        return DEFAULT_QUALITY.get(self.value)


DEFAULT_QUALITY = {"jpeg": 82, "webp": 80, "avif": 60}


# Pillow format name -> media type, for originals served byte for byte.
MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "AVIF": "image/avif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "ICO": "image/vnd.microsoft.icon",
}

# Source formats that are also output formats keep their format by default (SPEC §2.1).
AS_OUTPUT = {fmt.pillow_name: fmt for fmt in OutputFormat}


def sniff(head: bytes) -> str | None:
    """The Pillow format name the leading bytes declare, or None if no known image."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"):
        return "AVIF"
    if head[:2] == b"BM" and len(head) >= 18:
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:4] == b"\x00\x00\x01\x00":
        return "ICO"
    return None


def _u16le(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "little")


def _u24le(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 3], "little")


def _u32be(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "big")


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): not DHT/JPG/DAC.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def declared_size(fmt: str | None, data: bytes) -> tuple[int, int] | None:
    """Width and height as the header declares them, read without any decoder, so a
    decompression bomb is refused before a library allocates for it. None: not found."""
    if fmt == "PNG" and len(data) >= 24 and data[12:16] == b"IHDR":
        return _u32be(data, 16), _u32be(data, 20)
    if fmt == "GIF" and len(data) >= 10:
        return _u16le(data, 6), _u16le(data, 8)
    if fmt == "BMP" and len(data) >= 26:
        width = int.from_bytes(data[18:22], "little", signed=True)
        height = int.from_bytes(data[22:26], "little", signed=True)
        return abs(width), abs(height)
    if fmt == "WEBP":
        return _webp_size(data)
    if fmt == "JPEG":
        return _jpeg_size(data)
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return _u24le(data, 24) + 1, _u24le(data, 27) + 1
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30:
        return _u16le(data, 26) & 0x3FFF, _u16le(data, 28) & 0x3FFF
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _SOF:
            return int.from_bytes(data[at + 7 : at + 9], "big"), int.from_bytes(
                data[at + 5 : at + 7], "big"
            )
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:  # markers without a length
            at += 2
            continue
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return None
