"""The plain values the core takes and returns; edges (ASGI, WSGI) only translate them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ImageRequest:
    method: str
    path: str  # after the mount point, still percent-encoded: "/{store}/{path}"
    query: str  # raw query string
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    context: Any = None  # the edge's own request object, handed to the authorize hook

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass(frozen=True, slots=True)
class ImageResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
