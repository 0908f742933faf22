"""A bounded memo for pure, cheap-to-recompute results (parsed URLs, variants, source facts).

A plain dict, so a hit is one C-level lookup, emptied whenever it reaches its bound, as the
`re` module does with compiled patterns: on the hit path, LRU bookkeeping on every lookup
costs more than an occasional refill. A flood of unique keys degrades it to "no memo".
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(dict[K, V]):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: K, value: V) -> None:
        if len(self) >= self.limit:
            self.clear()
        super().__setitem__(key, value)
