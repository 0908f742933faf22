"""glibc's allocator, told by `imgproxy serve`'s own processes to give large buffers back.

glibc serves a malloc of 128 KiB or more with its own mmap, unmapped when freed; but each such
free raises that threshold (up to 32 MiB), so the next source's bytes and decode buffers come
from the heap and per-thread arenas, which keep them when freed: measured with 2 workers, a
worker held 47 MiB after 32 cold 24 MP renders, 41 MiB with the threshold fixed. Setting it
(mallopt) stops the raising. Its price is CPU: each large buffer is a fresh mapping whose
pages fault in on every render, 3-5 % more CPU per cold 24 MP render (in-process, 10 renders
of new sources: 55-56 ms against 53-54; it then kept 0.3 MiB after them, against 4-12 MiB).
`malloc_trim` once idle gave back only a third of it. A process setting only: the library
never calls this; the standalone server does, in each worker.
"""

from __future__ import annotations

import ctypes
import os

M_MMAP_THRESHOLD = -3  # malloc.h
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept


def return_large_buffers() -> bool:
    """Fixes glibc's mmap threshold in this process; False where the C library is not glibc."""
    try:
        os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):  # musl, macOS: not glibc
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
