"""The Store protocol (cheap metadata first, bytes later) and the optional powers a store
may have: listing its files (`warm`) and releasing connections (`close`).

`stat` must be cheap and never read content: its `version` goes into every cache key and
ETag, so a changed source is never served stale and a 304 reads no bytes (SPEC §5, §6).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class StoredFile:
    """What a store knows about one file without reading it."""

    path: str
    version: str  # changes whenever the bytes may have changed
    approved: bool
    size: int | None = None
    modified: float | None = None  # POSIX timestamp
    filename: str = ""
    # Where the subject is, as fractions of the width and height (0..1), stored with the
    # image (a sidecar, columns, object metadata): what `g=focal` crops around (SPEC §13).
    focal: tuple[float, float] | None = None


@runtime_checkable
class Store(Protocol):
    async def stat(self, path: str) -> StoredFile:
        """Metadata for `path`; raises NotFound. Never reads the content."""
        ...

    def open(self, file: StoredFile) -> AsyncIterator[bytes]:
        """The content of a file `stat` returned, as chunks."""
        ...


def focal_point(x: object, y: object) -> tuple[float, float] | None:
    """Two fractions in 0..1 (numbers or numeric text) as a focal point; anything else None:
    a bad stored point must not fail the image, only be ignored."""
    if isinstance(x, bool) or isinstance(y, bool):  # JSON true/false are not positions
        return None
    try:
        point = (float(x), float(y))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # OverflowError: a 400-digit integer
        return None
    return point if all(0.0 <= v <= 1.0 for v in point) else None  # NaN fails this too


@runtime_checkable
class Listable(Protocol):
    """A store that can enumerate its files (what `imgproxy warm` needs)."""

    def paths(self) -> AsyncIterator[str]:
        """Every servable path, relative to the store."""
        ...


async def first_bytes(chunks: AsyncGenerator[bytes, None], size: int) -> bytes:
    """The first `size` bytes of a body, closing it there: the rest is never read (a head
    from an origin that answers a range whole)."""
    parts: list[bytes] = []
    got = 0
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            parts.append(chunk)
            got += len(chunk)
            if got >= size:
                break
    return b"".join(parts)[:size]


@runtime_checkable
class Peekable(Protocol):
    """A store that can read a file's first bytes alone, so its format is judged before the
    rest is read (SPEC §10) even when `open` reads a file whole."""

    async def head(self, file: StoredFile, size: int) -> bytes: ...


@runtime_checkable
class Streamable(Protocol):
    """A store whose `open` reads a file in one piece (one copy for a render) that can also
    read it in bounded pieces: what an original sent to a slow client is read with."""

    def stream(self, file: StoredFile) -> AsyncIterator[bytes]: ...


@runtime_checkable
class Closeable(Protocol):
    """A store holding connections, threads or pools to release at shutdown."""

    async def close(self) -> None: ...
