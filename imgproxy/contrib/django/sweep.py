"""`delete_old=True`: a file is deleted only when no committed row names it, and never while
a save that will name it is under way. "No row names it" and the delete are one decision:

- a save that makes a row name an existing file (a shared default, a copied row) holds a
  shared lock on the name from before its check that the file still exists until its row is
  committed (so it is refused, FileNotFoundError, rather than committed naming a file
  deleted a moment before);
- the delete takes the exclusive lock on the name, then checks the rows (it sees every save
  that held the lock before, committed) and deletes while holding it.

The locks are PostgreSQL advisory locks, so they hold across processes and machines; on
other databases the check and the delete run back to back without one (SQLite serialises
its writers, but a save outside a transaction can still slip between the two).

Deletes are deferred by SWEEP_SECONDS and done on one daemon thread: a file a concurrent
replacement left unnamed (two saves that both read the same old name, the later one wins)
is rechecked and deleted too, and a name whose lock is held is tried again later. A process
that exits with deletes queued does them first, as it does its warms.
"""

from __future__ import annotations

import atexit
import hashlib
import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.core.files.storage import Storage
from django.db import close_old_connections, connections, router, transaction

from imgproxy.forks import after_fork

log = logging.getLogger(__name__)

SWEEP_SECONDS = 1.0  # a delete waits this long, and as long again each time its lock is held
SWEEP_TRIES = 60  # then the file is left (logged)
SWEEP_LIMIT = 1024  # deletes waiting; past it one is skipped and logged, a save never waits
EXIT_SECONDS = 10.0  # how long an exiting process may spend on the deletes it queued
_HELD = "_imgproxy_shared_names"  # a connection's session locks, outside a transaction


def _key(name: str) -> int:
    digest = hashlib.blake2b(f"imgproxy.lifecycle:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def claim(name: str, using: str) -> None:
    """Before a save names `name`: the shared lock, until the row is committed. In a
    transaction it ends with it; outside one (autocommit: the row is committed by its one
    statement) it is a session lock, which `release` ends after the save, or, when the save
    failed, the connection's next claim or its closing."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        if connection.in_atomic_block:
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [_key(name)])
            return
        held: list[int] = connection.__dict__.setdefault(_HELD, [])
        for key in held:  # a failed save's: its statement has run, committed or not
            cursor.execute("SELECT pg_advisory_unlock_shared(%s)", [key])
        held.clear()
        cursor.execute("SELECT pg_advisory_lock_shared(%s)", [_key(name)])
        held.append(_key(name))


def release(name: str, using: str) -> None:
    """After the save that claimed `name` outside a transaction: its row is committed."""
    connection = connections[using]
    held: list[int] = connection.__dict__.get(_HELD, [])
    if _key(name) in held:
        held.remove(_key(name))
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock_shared(%s)", [_key(name)])


def _exclusive(name: str, using: str) -> bool:
    """In the caller's transaction: the exclusive lock on `name` if no save holds it now."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_key(name)])
        return bool(cursor.fetchone()[0])


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    model: Any = field(compare=False)
    column: str = field(compare=False)  # the model's file field
    storage: Storage = field(compare=False)
    name: str = field(compare=False)
    tries: int = field(default=0, compare=False)


class Sweeper:
    """One daemon thread over a bounded heap of names to delete when they fall due."""

    def __init__(self, limit: int = SWEEP_LIMIT, delay: float = SWEEP_SECONDS) -> None:
        self.limit = limit
        self.delay = delay
        self._reset()
        after_fork(self._reset)  # the thread is not in a forked child; the lock may be held

    def _reset(self) -> None:
        self._jobs: list[_Job] = []
        self._busy = 0  # taken off the heap, not done
        self._seq = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._exit_hook = getattr(self, "_exit_hook", False)  # kept in a forked child

    def submit(self, model: Any, column: str, storage: Storage, name: str) -> bool:
        """Delete `name` in `delay` seconds if no row of `model` names it in `column` then."""
        due = time.monotonic() + self.delay
        job = _Job(due, next(self._seq), model, column, storage, name)
        with self._changed:
            if len(self._jobs) >= self.limit:
                log.warning("imgproxy: %d deletes waiting, not deleting %s", self.limit, name)
                return False
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="imgproxy-sweep", daemon=True
                )
                self._thread.start()
                if not self._exit_hook:
                    atexit.register(self._at_exit)
                    self._exit_hook = True
            heapq.heappush(self._jobs, job)
            self._changed.notify_all()
        return True

    def drain(self, seconds: float) -> int:
        """Until every delete queued so far is done, for at most `seconds`; how many are not."""
        deadline = time.monotonic() + seconds
        with self._changed:
            while (self._jobs or self._busy) and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
            return len(self._jobs) + self._busy

    def join(self) -> None:
        """Until every delete queued so far is done (for commands and tests)."""
        while self.drain(3600.0):
            pass

    def _at_exit(self) -> None:
        left = self.drain(EXIT_SECONDS)
        if left:
            log.warning("imgproxy: exiting with %d old files not deleted", left)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._jobs or self._jobs[0].due > time.monotonic():
                    self._changed.wait(self._jobs[0].due - time.monotonic() if self._jobs else None)
                job = heapq.heappop(self._jobs)
                self._busy += 1
            again = False
            try:
                again = not self._sweep(job)
            except Exception:
                log.exception("imgproxy: deleting the old file %s failed", job.name)
            finally:
                close_old_connections()  # this thread's, as a request's end does
            with self._changed:
                self._busy -= 1
                if again and job.tries + 1 < SWEEP_TRIES:
                    job.tries += 1
                    job.due = time.monotonic() + self.delay
                    heapq.heappush(self._jobs, job)
                elif again:
                    log.warning("imgproxy: %s stayed claimed by saves; not deleted", job.name)
                self._changed.notify_all()

    @staticmethod
    def _sweep(job: _Job) -> bool:
        """Deletes the file unless a row names it; False when a save holds its name."""
        using = router.db_for_write(job.model)
        with transaction.atomic(using=using):
            if not _exclusive(job.name, using):
                return False
            rows = job.model._default_manager.using(using).filter(**{job.column: job.name})
            if rows.exists():
                log.info("imgproxy: %s is still used by a row; not deleted", job.name)
                return True
            job.storage.delete(job.name)
        return True


sweeper = Sweeper()
