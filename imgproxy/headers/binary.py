"""A header's integers, read at an offset, and `Check`: what a long walk calls now and then
(it raises once the render's time is up)."""

from __future__ import annotations

from collections.abc import Callable

Check = Callable[[], None]  # called now and then by long walks: raises when out of time


def never() -> None:
    return None


def u16le(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "little")


def u24le(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 3], "little")


def u32be(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "big")


def u16be(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "big")


def u32le(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "little")
