"""A shared tier's calls in flight, at most a configured number and never a wait (SPEC
§11.1): a tier whose server stalls (accepts connections, never answers) holds that many
connections and requests until its breaker opens, not one per request that arrived meanwhile.
Past the limit the caller does without: a read is a miss, a write is skipped."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class InFlight:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    @contextlib.contextmanager
    def slot(self) -> Iterator[bool]:
        """True: the block holds one of `limit` slots until it ends; False, at once, when
        every slot is held (one event loop: no lock is needed to count)."""
        if self.count >= self.limit:
            yield False
            return
        self.count += 1
        try:
            yield True
        finally:
            self.count -= 1
