"""A serving process's heap: memory freed by a render goes back to the system at once.

glibc serves a large allocation from a heap arena, not its own mapping, once a mapping of
that size was freed (its threshold rises to the largest freed, up to 32 MiB), and each
render thread has an arena of its own that keeps what it freed. Pillow's image blocks are
16 MiB: a worker kept the pixels of its largest renders, per thread, for ever after
(16 trims of a 2000x2000 PNG on a 64 MiB limits.inflight_bytes left it 94 MiB larger,
idle). A fixed threshold maps every block over it and unmaps it when freed (SPEC §11.1).
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter; a fixed value also fixes the trim one
# Allocations from this size on are mappings of their own: an image's rows, never a
# thumbnail's (300x300 RGBA is 352 KiB) or the interpreter's small objects.
MMAP_THRESHOLD = 1024 * 1024


def return_freed_pixels() -> None:
    """For the `imgproxy` program alone, which owns its process (a library never changes
    its host's allocator): on a C library without glibc's mallopt() nothing changes."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
