"""A serving process's heap, given back to the system once the worker is idle.

glibc keeps what a render freed. Its mmap threshold rises to the largest block freed (up to
32 MiB), Pillow's image blocks are 16 MiB, and each render thread has an arena of its own:
a worker kept the pixels of its largest renders for ever after (16 trims of 2000x2000 PNGs
on a 64 MiB limits.inflight_bytes left it 94 MiB larger, idle; of 7000x7000 ones,
1.18 GB). A fixed threshold, every large block a mapping of its own, gives them back at once
but costs every render the page faults of fresh mappings (7-10 % more CPU per cold render,
measured in an earlier stop).

So the heap is trimmed instead (`malloc_trim`), and only once nothing renders and the
worker's resident memory grew TRIM_GROWTH past where the last trim left it: a render pays
nothing (the same cold-render CPU, 15.02 against 15.03 ms a request in 6 alternating
rounds). The process keeps one arena, whose heap a trim gives back whole. For the `imgproxy`
program alone, which owns its process (a library never touches its host's allocator);
without glibc, nothing happens.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
from collections.abc import Callable

from imgproxy.render.executor import RenderExecutor

LOOK_EVERY = 0.25  # seconds between looks at the worker: reading its resident size
TRIM_GROWTH = 32 * 2**20  # resident bytes grown since the last trim that are worth one
STATM = "/proc/self/statm"


def _resident() -> int:
    with open(STATM, "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


M_ARENA_MAX = -8  # glibc's mallopt() parameter


class HeapTrimmer:
    def __init__(self, executor: RenderExecutor) -> None:
        self._executor = executor
        libc = ctypes.CDLL(None)
        trim = getattr(libc, "malloc_trim", None)
        self._trim: Callable[[int], int] | None = trim if os.path.exists(STATM) else None
        mallopt = getattr(libc, "mallopt", None)
        if self._trim is not None and mallopt is not None:
            # One arena: malloc_trim gives back a thread arena's free chunks but never the
            # top of its heap, where a render's freed blocks end up (30 MiB kept in each).
            mallopt(M_ARENA_MAX, 1)

    async def run_forever(self) -> None:
        if self._trim is None:
            return
        trim, executor = self._trim, self._executor
        floor = _resident()
        while True:
            await asyncio.sleep(LOOK_EVERY)
            if executor.running or executor.queued:
                continue
            resident = _resident()
            if resident - floor > TRIM_GROWTH:
                await asyncio.to_thread(trim, 0)  # walks every arena: not on the loop
                floor = _resident()  # what is left is in use (caches): not trimmed again
            else:
                floor = min(floor, resident)
