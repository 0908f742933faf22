"""The plain values the core takes and returns; edges (ASGI, WSGI) only translate them.

An ImageRequest is also what the `authorize` hook receives, the same typed value under every
edge (SPEC §8): method, path, query, headers, client, and the edge's native request object.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class ImageRequest(NamedTuple):
    """Immutable, and a NamedTuple rather than a frozen dataclass: one is built per request,
    and a frozen dataclass's __init__ costs three times as much on the hit path."""

    method: str
    path: str  # after the mount point, still percent-encoded: "/{store}/{path}"
    query: str  # raw query string
    # Lower-case names. Every header when an authorize hook is set; otherwise only those
    # the core reads (Accept, the validators, Range) and User-Agent for the access line, so
    # the hit path decodes no others.
    headers: Mapping[str, str] = NO_HEADERS
    client: tuple[str, int] | None = None  # the peer's address, as the server reports it
    native: Any = None  # Starlette's Request under ASGI, the environ under WSGI

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass(frozen=True, slots=True)
class ImageResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    # The rest of the body after `body`, for an original streamed from its store: the edge
    # sends each piece before asking for the next, and closes it however the sending ends.
    rest: AsyncGenerator[bytes, None] | None = None
