"""A bounded memo for pure, cheap-to-recompute results (parsed URLs, variants, source facts).

A plain dict, so a hit is one C-level lookup, emptied whenever it reaches its bound, as the
`re` module does with compiled patterns: on the hit path, LRU bookkeeping on every lookup
costs more than an occasional refill. A flood of unique keys degrades it to "no memo".

A count alone does not bound a memo whose keys a client writes: a URL may be 64 KiB (the
request head's bound), and 20 000 of them held 2.4 GB. Such a memo also weighs each key
(`weigh`, in characters, of the key and the value it keeps) and empties once `max_weight`
would be passed (SPEC §11.1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(dict[K, V]):
    def __init__(
        self, limit: int, *, weigh: Callable[[K, V], int] | None = None, max_weight: int = 0
    ) -> None:
        super().__init__()
        self.limit = limit
        self.weigh = weigh
        self.max_weight = max_weight
        self.weight = 0

    def __setitem__(self, key: K, value: V) -> None:
        weight = 0 if self.weigh is None else self.weigh(key, value)
        if weight > self.max_weight:
            return  # heavier than the whole budget: not remembered at all
        if len(self) >= self.limit or self.weight + weight > self.max_weight:
            self.clear()
        self.weight += weight
        super().__setitem__(key, value)

    def clear(self) -> None:
        super().clear()
        self.weight = 0
