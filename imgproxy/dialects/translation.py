"""What a dialect produces from a foreign URL, and the protocol every dialect follows."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from imgproxy.params import Transform


@dataclass(frozen=True, slots=True)
class Translation:
    """What a foreign URL means: a path in a store (decoded, judged later like any native
    path) and the native query parameters (SPEC §2.1, §15.1)."""

    store: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    # A focal point in the source's pixels (x, y, and the quarter turns counter-clockwise
    # that `params` moved before fitting), with `g=focal` in params: placed as `fx`, `fy`
    # once the source's size is known (geometry.focal_from_pixels).
    focal_at: tuple[int, int, int] | None = None
    # thumbor ignores a crop box wholly outside the source (the whole image is its answer);
    # a native URL's is a 400. True: the native URL without that crop (variant.py).
    crop_may_miss: bool = False
    # imgproxy's sizes, where they depend on the source's: the native transform for the
    # source's upright size, made from the one `params` give (imgproxy_sizing.py).
    sized: Callable[[Transform, tuple[int, int]], Transform] | None = None


class Dialect(Protocol):
    def translate(self, rest: str, query: str) -> Translation:
        """`rest`: the raw path after `/{dialect}/`, still percent-encoded; `query`: the raw
        query string. Raises BadSignature (403) or BadRequest (400), never anything else."""
        ...
