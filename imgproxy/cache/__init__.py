"""Cache tiers for renditions: keys, values, the CacheTier protocol and the optional powers a
tier may have (small Protocols: Locating for X-Accel-Redirect, Locking across processes,
Broadcasting purges to every instance).

Keys contain the source's version (the rendition id is its ETag), so a tier never needs to
know about invalidation: a changed source asks for new keys (SPEC §6). Keys also name their
source, so `purge` removes one source's renditions without scanning the others.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from imgproxy.formats import OutputFormat
from imgproxy.messages import ImageResponse

Headers = tuple[tuple[str, str], ...]
# A rendition is shared by a handful of URLs (fm=auto and the format it chose, with and
# without `v`, a preset and its spelling): past this many, its kept responses start again.
READY_PER_RENDITION = 4
# What one kept response holds (its header tuple and pairs, the Variant's tuple it keeps
# alive, the response object: measured about 950 B with 400 characters of header text), and
# the header text past which a response is built for each hit instead of kept: a long file
# name (Content-Disposition twice over) would hold more than the memory tier counts.
READY_BYTES = 1280
READY_HEADER_CHARS = 640

FACTS_EXTENSION = "json"
# A source's id as surrogate_key() makes it (base64url of a digest): the only names a tier
# may turn into a folder or a key prefix, whoever asks for a purge.
SOURCE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class CacheKey:
    source: str  # the source's stable id (its Surrogate-Key)
    rendition: str  # the rendition's ETag, without quotes: version + params + format
    extension: str  # of the output format, so a file on disk carries its type

    @property
    def name(self) -> str:
        return f"{self.rendition}.{self.extension}"

    @property
    def media_type(self) -> str:
        """What a tier that stores only bytes answers with: the extension says it."""
        if self.extension == FACTS_EXTENSION:
            return "application/json"
        return OutputFormat(self.extension).media_type


@dataclass(frozen=True, slots=True)
class Rendition:
    body: bytes
    media_type: str
    modified: float | None = None  # the source's, kept as a disk file's mtime
    # The ready 200s of the URLs that were answered with this body (response.ready_response):
    # kept on the value the memory tier holds, so they leave with its entry and never keep
    # a body the tier let go (SPEC §11.1).
    responses: dict[int, tuple[Headers, ImageResponse]] = field(
        default_factory=dict, compare=False, repr=False
    )


@dataclass(frozen=True, slots=True)
class Located:
    """A rendition on disk, to be sent by the web server in front (X-Accel-Redirect)."""

    path: str  # relative to the disk tier's root


class CacheTier(Protocol):
    name: str
    shared: bool  # kept once for the whole fleet (Redis, an object store), not per host

    async def get(self, key: CacheKey) -> Rendition | None: ...

    async def put(self, key: CacheKey, value: Rendition) -> None: ...

    async def purge(self, source: str) -> int:
        """Remove every rendition of one source; returns how many were removed."""
        ...


@runtime_checkable
class Immediate(Protocol):
    """A tier answered without waiting (memory): a hit there needs no await at all."""

    def peek(self, key: CacheKey) -> Rendition | None: ...


@runtime_checkable
class Locating(Protocol):
    """A tier whose hits can be sent by the web server in front, by path (the disk)."""

    async def locate(self, key: CacheKey) -> str | None: ...


@runtime_checkable
class Locking(Protocol):
    """A tier shared by processes that can elect one of them to render a key (Redis)."""

    async def get(self, key: CacheKey) -> Rendition | None: ...

    async def claim(self, key: CacheKey) -> bool:
        """True if this process should render `key`."""
        ...

    async def wait(self, key: CacheKey) -> Rendition | None:
        """The rendition another process is making, once it lands (None: it never did)."""
        ...

    async def release(self, key: CacheKey) -> None: ...


@runtime_checkable
class Broadcasting(Protocol):
    """A shared tier that carries purges to every instance (Redis pub/sub), so what each one
    keeps for itself (its memory, its host's disk) is dropped too."""

    async def announce(self, source: str) -> None: ...

    async def listen(self, on_purge: Callable[[str], Awaitable[None]]) -> None:
        """Call `on_purge` for each source purged anywhere; runs until cancelled."""
        ...


@runtime_checkable
class Probing(Protocol):
    """A tier that is not in this process (a disk, Redis, an object store): `/readyz` asks
    it for a key that is not there, and a tier that does not answer raises."""

    async def probe(self) -> None: ...


@runtime_checkable
class Closing(Protocol):
    """A tier holding connections to close at shutdown."""

    async def close(self) -> None: ...
