"""A model's file field -> its renditions follow the file: presets warmed after a save that
changed it (off the request thread), every rendition of the old file purged on replacement
and on delete (of an instance, a queryset or a cascade), the old file deleted when asked
once no row names it (sweep.py: never a file a committed row names).

    lifecycle.connect(Photo, "image", presets=["thumb", "card"], store="uploads")

All of it waits for the transaction to commit (a rolled-back save warms and purges nothing)
and runs on the loop of the proxy that serves this process, or, where none does (Django
saves, a separate `imgproxy serve` serves; commands, task workers), of this process's own
over the shared tiers (serving.py). A failure is logged with the file's name and never
raised into the save or the delete. A process that exits with warms queued (a command, a
task) does them first, for at most EXIT_SECONDS.

Warms run on a thread of the saving process, not on Django 6's `django.tasks`: its default
backend runs a task on the request thread, and a worker process cannot fill a serving
process's memory tier, which is where the next request looks first.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save

from imgproxy.contrib.django import serving, sweep
from imgproxy.contrib.django.conf import imgproxy_settings
from imgproxy.forks import after_fork

log = logging.getLogger(__name__)

QUEUE_LIMIT = 256  # warms waiting; past it a warm is skipped and logged, a save never waits
EXIT_SECONDS = 30.0  # how long an exiting process may spend on the warms it queued
CLOSE_SECONDS = 5.0  # then on closing its own proxy's clients

# Runs before the interpreter stops thread pools (concurrent.futures registers its own hook
# the same way, and these run last-registered first): a plain atexit hook would run after,
# when no render could start. Falls back to atexit where the hook does not exist.
_at_shutdown: Callable[[Callable[[], None]], object] = getattr(
    threading, "_register_atexit", atexit.register
)


def connect(
    model: Any,
    field: str,
    *,
    presets: Sequence[str],
    store: str = "media",
    delete_old: bool = False,
) -> None:
    """Follow `model.field` (a FileField) served by the proxy's store `store`. Call it once,
    e.g. from an AppConfig.ready(); a field or preset that does not exist fails here."""
    model._meta.get_field(field)
    unknown = [name for name in presets if name not in imgproxy_settings().presets]
    if unknown:
        raise ImproperlyConfigured(f"lifecycle.connect: no such preset: {', '.join(unknown)}")
    hooks = _Hooks(model, field, tuple(presets), store, delete_old)
    uid = f"imgproxy.lifecycle:{model._meta.label}.{field}"
    pre_save.connect(hooks.before_save, sender=model, weak=False, dispatch_uid=uid)
    post_save.connect(hooks.after_save, sender=model, weak=False, dispatch_uid=uid)
    # A receiver also makes Django delete querysets and cascades object by object, with
    # these signals, instead of in one SQL statement that would skip them.
    post_delete.connect(hooks.after_delete, sender=model, weak=False, dispatch_uid=uid)


@dataclass(frozen=True, slots=True)
class _Hooks:
    model: Any
    field: str
    presets: tuple[str, ...]
    store: str
    delete_old: bool

    @property
    def mark(self) -> str:
        return f"_imgproxy_before_{self.field}"

    def before_save(
        self, sender: Any, instance: Any, using: str, raw: bool = False, **_: Any
    ) -> None:
        """Notes the stored name (read from the database: the instance may be stale; with
        delete_old, in a transaction the row is locked, so of two replacements the later
        reads the earlier's file and deletes it) and whether a new file was assigned, which
        may reuse the old name. With delete_old, a row about to name an existing file claims
        it first."""
        if raw:  # loaddata: rows as they were, no files written
            return
        file = getattr(instance, self.field)
        old = None
        if instance.pk is not None:
            rows = sender._base_manager.using(using).filter(pk=instance.pk)
            if self.delete_old and transaction.get_connection(using).in_atomic_block:
                rows = rows.select_for_update()
            old = rows.values_list(self.field, flat=True).first()
        assigned = bool(file) and not file._committed
        if self.delete_old and file and not assigned and file.name != old:
            self._claim(file.storage, file.name, using)
        instance.__dict__[self.mark] = (old or "", assigned)

    @staticmethod
    def _claim(storage: Storage, name: str, using: str) -> None:
        """A row about to name a file it did not: the file must not be deleted until the row
        is committed, and must not be gone already (deleted as its last row was)."""
        sweep.claim(name, using)
        try:
            exists = storage.exists(name)
        except Exception:
            log.exception("imgproxy: checking that %s exists failed", name)
            return
        if not exists:
            sweep.release(name, using)
            raise FileNotFoundError(f"{name} is no longer stored (deleted with its last row)")

    def after_save(
        self, sender: Any, instance: Any, using: str, raw: bool = False, **_: Any
    ) -> None:
        if raw:
            return
        old, assigned = instance.__dict__.pop(self.mark, ("", False))
        file = getattr(instance, self.field)
        new = file.name or ""
        if self.delete_old and new:
            sweep.release(new, using)  # the row is committed, or will be with its transaction
        if new != old or assigned:
            storage = file.storage
            transaction.on_commit(lambda: self._replaced(storage, old, new), using=using)

    def after_delete(self, sender: Any, instance: Any, using: str, **_: Any) -> None:
        file = getattr(instance, self.field)
        if file.name:
            storage, name = file.storage, file.name
            transaction.on_commit(lambda: self._replaced(storage, name, ""), using=using)

    def _replaced(self, storage: Storage, old: str, new: str) -> None:
        if old:
            purge(self.store, old)
            if self.delete_old and old != new:
                sweep.sweeper.submit(self.model, self.field, storage, old)
        if new:
            warmer.submit(self.store, new, self.presets)
            if self.delete_old:  # unnamed by then if a concurrent replacement overwrote it
                sweep.sweeper.submit(self.model, self.field, storage, new)


def purge(store: str, name: str) -> None:
    """Every rendition of `store/name`, on the serving loop; waits, since it is quick, so
    the response to a delete comes after its renditions are gone."""
    warmer.purged(store, name)
    try:
        purged = serving.current().run(lambda proxy: proxy.purge(store, name))
    except Exception:
        log.exception("imgproxy: purging the renditions of %s failed", name)
        return
    for answer in purged.failed:
        log.warning("imgproxy: %s did not purge %s: %s", answer.url, name, answer.detail)


@dataclass(frozen=True, slots=True)
class _Job:
    store: str
    name: str
    presets: tuple[str, ...]
    purges: int  # the source's purge count when queued: a later purge makes the job stale

    @property
    def key(self) -> tuple[str, str]:
        return (self.store, self.name)


class Warmer:
    """One daemon thread over a bounded queue: one source at a time (its renditions in
    parallel on the serving loop), so a burst of uploads cannot crowd out the renders
    requests wait for. A source purged after its warm was queued is not warmed, and one
    purged while it was warmed is purged again, so a replaced file stays gone."""

    def __init__(self, limit: int = QUEUE_LIMIT) -> None:
        self.limit = limit
        self._reset()
        after_fork(self._reset)  # the thread is not in a forked child; the locks may be held

    def _reset(self) -> None:
        self._jobs: queue.Queue[_Job] = queue.Queue(self.limit)
        self._lock = threading.Lock()
        self._pending: Counter[tuple[str, str]] = Counter()
        self._purges: dict[tuple[str, str], int] = {}  # only sources with a pending warm
        self._thread: threading.Thread | None = None
        self._exit_hook = getattr(self, "_exit_hook", False)  # kept in a forked child

    @property
    def waiting(self) -> int:
        return self._jobs.qsize()

    def submit(self, store: str, name: str, presets: tuple[str, ...]) -> bool:
        key = (store, name)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="imgproxy-warm", daemon=True)
                self._thread.start()
                if not self._exit_hook:
                    _at_shutdown(self._at_exit)
                    self._exit_hook = True
            try:
                self._jobs.put_nowait(_Job(store, name, presets, self._purges.get(key, 0)))
            except queue.Full:
                log.warning("imgproxy: %d warms waiting, not warming %s", self.limit, name)
                return False
            self._pending[key] += 1
        return True

    def purged(self, store: str, name: str) -> None:
        key = (store, name)
        with self._lock:
            if self._pending[key]:
                self._purges[key] = self._purges.get(key, 0) + 1

    def join(self) -> None:
        """Until every warm queued so far is done (for commands and tests)."""
        self._jobs.join()

    def drain(self, seconds: float) -> int:
        """Until every warm queued so far is done, for at most `seconds`; how many are not."""
        deadline = time.monotonic() + seconds
        with self._jobs.all_tasks_done:
            while self._jobs.unfinished_tasks and (left := deadline - time.monotonic()) > 0:
                self._jobs.all_tasks_done.wait(left)
            return self._jobs.unfinished_tasks

    def _at_exit(self) -> None:
        """A process that saved and now exits (a command, a task worker, a WSGI server's
        worker) warms what it queued first, while the proxy's loop still runs; a stopped
        ASGI server's loop cannot, so it does not wait."""
        try:
            if self._jobs.unfinished_tasks and serving.current().running():
                left = self.drain(EXIT_SECONDS)
                if left:
                    log.warning("imgproxy: exiting with %d warms not done", left)
            serving.close_own(CLOSE_SECONDS)
        except Exception:
            log.exception("imgproxy: finishing the warms at exit failed")

    def _stale(self, job: _Job) -> bool:
        with self._lock:
            return self._purges.get(job.key, 0) != job.purges

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                self._warm(job)
            except Exception:
                log.exception("imgproxy: warming %s failed", job.name)
            finally:
                with self._lock:
                    self._pending[job.key] -= 1
                    if self._pending[job.key] <= 0:
                        del self._pending[job.key]
                        self._purges.pop(job.key, None)
                self._jobs.task_done()

    def _warm(self, job: _Job) -> None:
        if self._stale(job):
            return
        proxy = serving.current()
        outcomes = proxy.run(lambda p: p.warm(job.store, job.name, job.presets))
        for outcome in outcomes:
            if outcome.status != 200:
                detail = f"{outcome.status} {outcome.detail}".rstrip()
                log.warning(
                    "imgproxy: warming %s (p=%s) failed: %s", job.name, outcome.preset, detail
                )
        if self._stale(job):
            proxy.run(lambda p: p.purge(job.store, job.name))


warmer = Warmer()
