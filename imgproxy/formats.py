"""Leading bytes -> detected source format; output formats and their media types.

Pure and Pillow-free on purpose: sniffing runs before any decoder is chosen, to tell "needs
approval" (403) from "never allowed" (415) without trusting names or upstream types.
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
    # Placeholder hashes of the whole source (SPEC §13): text, made and cached like images.
    THUMBHASH = "thumbhash"
    BLURHASH = "blurhash"

    @property
    def media_type(self) -> str:
        return PLAIN_TEXT if self.is_placeholder else f"image/{self.value}"

    @property
    def is_placeholder(self) -> bool:
        return self.value in PLACEHOLDERS

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

    @property
    def max_side(self) -> int | None:
        """The longest side its encoder writes (None: beyond any limit we allow)."""
        return MAX_SIDES.get(self.value)


DEFAULT_QUALITY = {"jpeg": 82, "webp": 80, "avif": 60}
# What libjpeg, libwebp, GIF's 16-bit fields and libavif (through Pillow) accept; one pixel
# more fails only inside the encoder, after the whole output was made.
MAX_SIDES = {"jpeg": 65_500, "webp": 16_383, "gif": 65_535, "avif": 65_536}
PLAIN_TEXT = "text/plain; charset=utf-8"
PLACEHOLDERS = frozenset({"thumbhash", "blurhash"})  # OutputFormat values that are text


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
    "HEIF": "image/heif",  # pi-heif's format name, for HEIC too (the `heif` extra)
}

# Formats never opened, even under "*": EPS runs Ghostscript, an interpreter, on the bytes.
NEVER_OPENED = frozenset({"EPS"})

# Source formats that are also output formats keep their format by default (SPEC §2.1).
AS_OUTPUT = {fmt.pillow_name: fmt for fmt in OutputFormat if not fmt.is_placeholder}


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
    if head[4:8] == b"ftyp":
        return _bmff_format(head)
    if head[:2] == b"BM" and len(head) >= 18:
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:4] == b"\x00\x00\x01\x00":
        return "ICO"
    return None


_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_SHARED_BRANDS = frozenset({b"mif1", b"msf1"})  # structural: HEIF and AVIF files alike
# pi-heif's own list: a major brand it does not accept would reach no decoder (422).
_HEIF_BRANDS = _SHARED_BRANDS | frozenset(
    (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs")
)


def _bmff_format(head: bytes) -> str | None:
    """AVIF or HEIF from an ISOBMFF `ftyp` box: the major brand decides, unless it is a
    shared structural one; then a compatible `avif`/`avis` brand makes the file AVIF."""
    major, end = head[8:12], min(int.from_bytes(head[:4], "big"), len(head))
    compatible = {head[at : at + 4] for at in range(16, end - 3, 4)}
    if major in _AVIF_BRANDS or (major in _SHARED_BRANDS and compatible & _AVIF_BRANDS):
        return "AVIF"
    return "HEIF" if major in _HEIF_BRANDS else None
