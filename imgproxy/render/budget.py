"""A render's time budget, enforced cooperatively inside the render thread: between stages,
between frames, during frame counting, and on every read a decoder makes from the source.

A single C call (one resize, one chunk fed to a decoder) is never interrupted; what bounds
those is the limits checked before them (pixels, frames, JPEG scans), so each is short.
"""

from __future__ import annotations

import io
import time

from imgproxy.errors import Undecodable


class Budget:
    __slots__ = ("deadline", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def check(self) -> None:
        """422: the image is not corrupt by its headers, but its work is out of proportion."""
        if time.monotonic() > self.deadline:
            raise Undecodable(f"the image took more than {self.seconds:g} s to render")


class BudgetedReader(io.BytesIO):
    """The source bytes as Pillow reads them, checking the budget on each read: a decoder fed
    a flood of tiny chunks or blocks stops at the deadline instead of at the end of the file."""

    def __init__(self, data: bytes, budget: Budget) -> None:
        super().__init__(data)
        self._budget = budget

    def read(self, size: int | None = -1, /) -> bytes:
        self._budget.check()
        return super().read(size)
