"""Blocking work -> a bounded thread pool, so the event loop never decodes or encodes.

`render_concurrency` threads work; up to `render_queue` more jobs wait; beyond that the
request is refused at once with 503 + Retry-After rather than piling up latency.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from imgproxy.errors import Overloaded

T = TypeVar("T")


class RenderExecutor:
    def __init__(self, *, concurrency: int, queue: int) -> None:
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="imgproxy-render")
        self.concurrency = concurrency
        self.capacity = concurrency + queue
        self._lock = threading.Lock()
        self._pending = 0  # admitted and not finished, counted until the thread is done

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def running(self) -> int:
        return min(self._pending, self.concurrency)

    @property
    def queued(self) -> int:
        return max(0, self._pending - self.concurrency)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        with self._lock:
            if self._pending >= self.capacity:
                raise Overloaded("too many images are being rendered; retry shortly")
            self._pending += 1
        try:
            future = self._pool.submit(fn, *args)
        except BaseException:
            self._release()
            raise
        # Released when the thread finishes, not when the request gives up: a cancelled
        # request's render still occupies a thread.
        future.add_done_callback(lambda _: self._release())
        return await asyncio.wrap_future(future)

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
