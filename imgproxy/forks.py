"""Objects that own threads or event loops -> a fresh one in a forked child.

Threads do not survive fork, so an app built before it (gunicorn --preload builds it in the
master) would wait forever on a pool or loop thread that only the master has.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable


def after_fork(method: Callable[[], None]) -> None:
    """Call `method` in every child forked from now on, without keeping its object alive."""
    ref = weakref.WeakMethod(method)

    def call() -> None:
        bound = ref()
        if bound is not None:
            bound()

    os.register_at_fork(after_in_child=call)
