"""A JPEG's segments -> its first frame as declared before the first scan (size, the
coefficient buffers of a progressive frame, Exif segments), and its scans counted: libjpeg
walks every block once per scan, however few bytes the scan has."""

from __future__ import annotations

import re
from dataclasses import dataclass

from imgproxy.headers.binary import u16be

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): not DHT/JPG/DAC.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_SOS = 0xDA
_TEM = 0x01  # a marker without a length segment (like SOI, EOI and RSTn)


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    frame = jpeg_frame(data)
    return frame.size if frame is not None else None


# Progressive and arithmetic-progressive frames: libjpeg buffers every coefficient.
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_EXIF = b"Exif\x00\x00"
# Pillow appends each Exif segment to the ones before it, a copy of all of them each time: 700
# segments of 64 KiB cost seconds. A camera writes one; more are refused before Pillow opens.
MAX_EXIF_SEGMENTS = 16
COEFFICIENT_BYTES = 64 * 2  # one 8x8 block of 16-bit DCT coefficients


@dataclass(frozen=True, slots=True)
class JpegFrame:
    """The first frame of a JPEG as its segments before the first scan declare it."""

    size: tuple[int, int]  # width, height
    sampling: tuple[tuple[int, int], ...]  # each component's (horizontal, vertical) factor
    buffered: bool  # progressive, or a first scan without every component
    exif_segments: int  # APP1 Exif segments before the first scan
    # Where the entropy-coded data starts (after the first scan's header); None when the
    # bytes walked end before it.
    data_at: int | None = None

    @property
    def coefficient_bytes(self) -> int:
        """What libjpeg allocates before decoding a pixel of a buffered (multi-scan) image:
        every block of every component, whatever the DCT scale asked; 0 when it streams."""
        if not self.buffered or not self.sampling:
            return 0
        width, height = self.size
        most_h = max(h for h, _ in self.sampling)
        most_v = max(v for _, v in self.sampling)
        blocks = 0
        for h, v in self.sampling:  # as jdinput.c sizes each component, padded to whole MCUs
            across = _ceil(_ceil(width * h, most_h * 8), h) * h
            down = _ceil(_ceil(height * v, most_v * 8), v) * v
            blocks += across * down
        return blocks * COEFFICIENT_BYTES


def jpeg_frame(data: bytes) -> JpegFrame | None:
    """The segments up to the first scan, walked without a decoder and no further than
    MAX_JPEG_SEGMENTS: None when no frame header comes first."""
    at, frame, exif = 2, None, 0
    for _ in range(MAX_JPEG_SEGMENTS):
        if at + 4 > len(data) or data[at] != 0xFF:
            break
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == _TEM or 0xD0 <= marker <= 0xD9:  # markers without a length
            at += 2
            continue
        if marker in _SOF and frame is None and at + 9 <= len(data):
            count = data[at + 9] if at + 9 < len(data) else 0
            factors = data[at + 10 : at + 10 + 3 * count]
            sampling = tuple((b >> 4 or 1, b & 15 or 1) for b in factors[1::3])
            size = (u16be(data, at + 7), u16be(data, at + 5))
            frame = (size, sampling, marker in _PROGRESSIVE)
        elif marker == 0xE1 and data[at + 4 : at + 10] == _EXIF:
            exif += 1
        elif marker == _SOS:
            if frame is None:
                return None
            size, sampling, progressive = frame
            in_scan = data[at + 4] if at + 4 < len(data) else len(sampling)
            end = at + 2 + u16be(data, at + 2)
            data_at = end if end <= len(data) else None
            return JpegFrame(size, sampling, progressive or in_scan < len(sampling), exif, data_at)
        at += 2 + u16be(data, at + 2)
    if frame is None:
        return None
    size, sampling, progressive = frame
    return JpegFrame(size, sampling, progressive, exif)


def _ceil(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


_SEQUENTIAL_HUFFMAN = frozenset({0xC0, 0xC1})  # SOF0 baseline, SOF1 extended sequential
_ENTROPY_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # the first marker after a scan's data
MAX_JPEG_SEGMENTS = 65_536  # far beyond any real file; more is refused like too many scans


def jpeg_scans(data: bytes, stop: int) -> int:
    """The scans (SOS segments) of the first JPEG image that libjpeg would decode, counted no
    further than `stop`: it walks every block of the image for each, however few bytes the
    scan has. A file with more than MAX_JPEG_SEGMENTS segments counts as `stop`.

    A sequential Huffman JPEG (SOF0/SOF1) whose first scan holds every component, as nearly
    every camera and web JPEG does, is one scan: libjpeg refuses a second one there (its
    "EOI expected" error). Its entropy-coded data is then never searched for markers, which
    cost 1.4 ms of each render of a 24 MP photo."""
    scans = segments = 0
    components = 0  # of a sequential Huffman frame; 0 until its SOF is seen
    at = 2
    while at + 4 <= len(data) and scans < stop:
        if data[at] != 0xFF or data[at + 1] in (0x00, 0xFF) or 0xD0 <= data[at + 1] <= 0xD7:
            found = _ENTROPY_END.search(data, at + 1)
            if found is None:
                break
            at = found.start()
            continue
        marker = data[at + 1]
        if marker == 0xD9:
            break
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            return stop
        if marker == _TEM:  # no length, as libjpeg reads it: read as one, it hid what followed
            at += 2
            continue
        if marker in _SEQUENTIAL_HUFFMAN and at + 9 < len(data):
            components = data[at + 9]  # SOF: length, precision, height, width, Nf
        if marker == _SOS:
            if components and at + 4 < len(data) and data[at + 4] == components and not scans:
                return 1  # SOS: length, Ns; all components in the first scan
            scans += 1
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return scans
