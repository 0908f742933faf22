"""An AV1 sequence header (an AVIF item's `av1C`, or a sample's first OBUs) -> the frame
size its decoder allocates, whatever the container's `ispe` says."""

from __future__ import annotations

from collections.abc import Iterator

# AV1 (spec §5.3, §5.5): an AVIF's `ispe` or track header is only what the file says; the
# decoder allocates what the sequence header says, so a 64x64 `ispe` can carry an 8192x8192
# frame. Read without a decoder, no further than a few OBUs.
_SEQUENCE_HEADER = 1  # obu_type
OBUS_READ = 16  # of one sample or `av1C`: a sequence header comes first, after a delimiter


def av1_frame_size(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """(max_frame_width, max_frame_height) of the first sequence header among the first
    OBUS_READ OBUs of data[start:end]; None: none there, or it is cut short."""
    for kind, inner, stop in _obus(data, start, end):
        if kind == _SEQUENCE_HEADER:
            try:
                return _sequence_size(_Bits(data[inner:stop]))
            except IndexError:  # the header ends before its frame size
                return None
    return None


def _obus(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(obu_type, payload start, payload end) of the first OBUS_READ OBUs (§5.3.1)."""
    at = start
    for _ in range(OBUS_READ):
        if at >= end:
            return
        header = data[at]
        kind, extension, has_size = header >> 3 & 15, header >> 2 & 1, header >> 1 & 1
        at += 1 + extension
        size = end - at
        if has_size:
            size, at = _leb128(data, at)
        yield kind, at, min(at + size, end)
        at += size


def _leb128(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        byte = data[at + i] if at + i < len(data) else 0
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, at + i + 1
    return value, at + 8


class _Bits:
    """Big-endian bits of a byte string; IndexError past its end."""

    __slots__ = ("_at", "_data")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def read(self, count: int) -> int:
        value = 0
        for _ in range(count):
            byte = self._data[self._at >> 3]
            value = value << 1 | (byte >> (7 - (self._at & 7)) & 1)
            self._at += 1
        return value

    def uvlc(self) -> int:
        zeros = 0
        while not self.read(1):
            zeros += 1
            if zeros >= 32:
                return (1 << 32) - 1
        return self.read(zeros) + (1 << zeros) - 1


def _sequence_size(bits: _Bits) -> tuple[int, int]:
    """sequence_header_obu() up to max_frame_height_minus_1 (§5.5.1)."""
    bits.read(3)  # seq_profile
    bits.read(1)  # still_picture
    if bits.read(1):  # reduced_still_picture_header
        bits.read(5)  # seq_level_idx[0]
    else:
        buffer_delay_bits, decoder_model = 0, 0
        if bits.read(1):  # timing_info_present_flag
            bits.read(64)  # num_units_in_display_tick, time_scale
            if bits.read(1):  # equal_picture_interval
                bits.uvlc()  # num_ticks_per_picture_minus_1
            decoder_model = bits.read(1)
            if decoder_model:  # decoder_model_info()
                buffer_delay_bits = bits.read(5) + 1
                bits.read(32 + 5 + 5)
        initial_display_delay = bits.read(1)
        for _ in range(bits.read(5) + 1):  # operating points
            bits.read(12)  # operating_point_idc
            if bits.read(5) > 7:  # seq_level_idx
                bits.read(1)  # seq_tier
            if decoder_model and bits.read(1):  # decoder_model_present_for_this_op
                bits.read(2 * buffer_delay_bits + 1)
            if initial_display_delay and bits.read(1):
                bits.read(4)  # initial_display_delay_minus_1
    width_bits, height_bits = bits.read(4) + 1, bits.read(4) + 1
    return bits.read(width_bits) + 1, bits.read(height_bits) + 1
