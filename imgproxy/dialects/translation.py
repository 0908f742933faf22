"""What a dialect produces from a foreign URL, and the protocol every dialect follows."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from imgproxy.params import Transform

Sized = Callable[["Transform", tuple[int, int]], "Transform"]


@dataclass(frozen=True, slots=True)
class Translation:
    """What a foreign URL means: a path in a store (decoded, judged later like any native
    path) and the native query parameters (SPEC §2.1, §15.1)."""

    store: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    # What the URL means once the source's upright size is known, for the meanings that
    # depend on it (a dialect's focal point in pixels, a crop that may miss, imgproxy's and
    # thumbor's sizes): the native transform for that size, made from the one `params` give.
    # variant.py applies it when it builds a variant.
    sized: Sized | None = None


def chain(*steps: Sized) -> Sized | None:
    """The steps applied in turn; None for none."""
    if len(steps) <= 1:
        return steps[0] if steps else None

    def sized(t: Transform, size: tuple[int, int]) -> Transform:
        for step in steps:
            t = step(t, size)
        return t

    return sized


class Dialect(Protocol):
    def translate(self, rest: str, query: str) -> Translation:
        """`rest`: the raw path after `/{dialect}/`, still percent-encoded; `query`: the raw
        query string. Raises BadSignature (403) or BadRequest (400), never anything else."""
        ...
