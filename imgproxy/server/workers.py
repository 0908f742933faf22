"""`imgproxy serve --workers N`: N server processes, each with its own listening socket on
the same port (SO_REUSEPORT), so the kernel spreads connections evenly across them.

uvicorn's own supervisor shares one socket between its workers, and the worker that wakes
first accepts nearly every connection: measured here, one of two workers did all the renders
under 32 keep-alive connections while the other idled. With a socket each, the kernel hashes
every new connection to one of them. A worker that dies is started again, unless workers keep
failing at start (a setting only a worker can find wrong): then the server stops, saying why.
SIGHUP reloads the configuration file: checked first (a bad one is refused and logged), then
each worker in turn is replaced by one started from it, the old one stopped only once the new
one serves, so the port always has workers.

Workers are forked from a fork server: a fresh interpreter (nothing of the supervisor's state)
that imports the app's modules once. Each worker then shares those pages with it and with the
other workers, where a spawned worker imported them all again: measured with 2 workers after a
few renders, a worker held 42.7 MiB RSS (27.9 MiB its own) spawned, 34.0 (13.4) forked. A
reload re-reads the configuration, not the code: an upgrade needs a restart.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import tempfile
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from multiprocessing.queues import SimpleQueue
from pathlib import Path
from types import FrameType
from typing import Any

from imgproxy.server import worker
from imgproxy.server.claims import PEERS_ENV, make_table
from imgproxy.server.exposition import METRICS_ENV, forget

log = logging.getLogger(__name__)


RESTART_PAUSE = 1.0  # seconds between restarts of a worker that keeps dying
# A worker that exits within FAST_FAILURE seconds of its start failed at start; that many in a
# row, FAST_FAILURES of them within FAST_FAILURE seconds, and another start will fail too.
FAST_FAILURE = 10.0
FAST_FAILURES = 3
READY_WAIT = 60.0  # seconds a reload waits for a new worker to serve before giving up
# What the fork server imports before forking workers (one that is not installed is skipped).
PRELOAD = [
    "imgproxy.server.worker",
    "imgproxy.server.app",
    "imgproxy.server.connections",
    "uvicorn",
    "uvicorn.lifespan.on",
    "uvicorn.loops.uvloop",
    "uvloop",
    "httptools",
    "PIL.JpegImagePlugin",
    "PIL.PngImagePlugin",
    "PIL.GifImagePlugin",
    "PIL.WebPImagePlugin",
]


class Starts:
    """When each worker started, and whether workers keep failing at start: FAST_FAILURES
    exits, each within FAST_FAILURE seconds of its start, all within FAST_FAILURE seconds."""

    def __init__(self) -> None:
        self.started: dict[int | None, float] = {}
        self.failures: deque[float] = deque(maxlen=FAST_FAILURES)

    def began(self, pid: int | None) -> None:
        self.started[pid] = time.monotonic()

    def failing(self, pid: int | None) -> bool:
        """Notes that `pid` exited; True when another start would fail too."""
        now = time.monotonic()
        if now - self.started.pop(pid, 0.0) < FAST_FAILURE:
            self.failures.append(now)
        return len(self.failures) == FAST_FAILURES and now - self.failures[0] < FAST_FAILURE

    def keep(self, pids: set[int | None]) -> None:
        """Forgets the workers a reload replaced."""
        for pid in set(self.started) - pids:
            del self.started[pid]


def supervise(
    host: str,
    port: int,
    workers: int,
    options: dict[str, Any],
    *,
    check: Callable[[], str | None] = lambda: None,
) -> int:
    """Run `workers` processes on `port` (claimed by listening.py) until SIGINT/SIGTERM, or
    until they keep failing at start; returns the exit status. `check` says what is wrong
    with the configuration file as it is now (None: fine), before a reload."""
    shared = _shared_directory()
    context = multiprocessing.get_context("forkserver")  # no state inherited from this process
    context.set_forkserver_preload(PRELOAD)
    alive, holding = context.Pipe(duplex=False)  # EOF at alive once this process is gone
    reasons: SimpleQueue[str] = context.SimpleQueue()
    ready: SimpleQueue[int] = context.SimpleQueue()
    starts = Starts()

    def start() -> BaseProcess:
        process = context.Process(
            target=worker.run,
            args=(host, port, options, alive, (reasons, ready)),
            daemon=False,
        )
        process.start()
        starts.began(process.pid)
        return process

    signals = _Signals()
    running = [start() for _ in range(workers)]
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    log.info("imgproxy serving on http://%s with %d workers (Press CTRL+C to quit)", where, workers)
    ended: str | None = None
    try:
        while not signals.stopping and ended is None:
            if signals.reloading:
                signals.reloading = False
                _roll(running, start, check(), ready, reasons)
                starts.keep({process.pid for process in running})
            ended = _restart_dead(running, start, starts, reasons, signals)
            time.sleep(0.2)
    finally:
        _stop_all(running)
        holding.close()  # after the joins: a worker stopping is not told to stop again
        signals.restore()
        os.environ.pop(METRICS_ENV, None)
        os.environ.pop(PEERS_ENV, None)
        shared.cleanup()
    clean = all(p.exitcode in (0, -signal.SIGTERM) for p in running)
    return 0 if clean and ended != FAILING else 1


FAILING = "failing"  # workers keep failing at start: the server stops, exit status 1
PORT_REFUSED = "port"  # uvicorn could not start (e.g. the port is taken): exit status 3


class _Signals:
    """SIGINT and SIGTERM stop the server, SIGHUP reloads it: flags the loop reads."""

    def __init__(self) -> None:
        self.stopping = self.reloading = False
        self._previous: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | None]
        self._previous = {name: signal.signal(name, self._stop) for name in STOP_SIGNALS}
        self._previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._reload)

    def _stop(self, signum: int, _: FrameType | None) -> None:
        self.stopping = True

    def _reload(self, signum: int, _: FrameType | None) -> None:
        self.reloading = True

    def restore(self) -> None:
        for name, handler in self._previous.items():
            signal.signal(name, handler)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _shared_directory() -> tempfile.TemporaryDirectory[str]:
    """Where /metrics sums every worker's file of counts (exposition.py), and, in `peers`,
    where the workers claim decodes and send each other jobs (peers.py): private, as
    TemporaryDirectory makes it."""
    shared = tempfile.TemporaryDirectory(prefix="imgproxy-metrics-")
    os.environ[METRICS_ENV] = shared.name
    peers = Path(shared.name, "peers")
    peers.mkdir(mode=0o700)
    make_table(peers)
    os.environ[PEERS_ENV] = str(peers)
    return shared


def _restart_dead(
    running: list[BaseProcess],
    start: Callable[[], BaseProcess],
    starts: Starts,
    reasons: SimpleQueue[str],
    signals: _Signals,
) -> str | None:
    """Each worker that exited started again, unless the server must stop: FAILING when
    workers keep failing at start, PORT_REFUSED when one could not serve on the port."""
    for index, process in enumerate(running):
        if process.is_alive() or signals.stopping:
            continue
        if process.exitcode == 3:
            return PORT_REFUSED
        if starts.failing(process.pid):
            reason = _last(reasons) or f"exit status {process.exitcode}"
            log.error(
                "workers failed %d times within %g s of their start; stopping: %s",
                FAST_FAILURES,
                FAST_FAILURE,
                reason,
            )
            return FAILING
        log.warning("worker %s exited with %s; starting another", process.pid, process.exitcode)
        forget(process.pid)
        time.sleep(RESTART_PAUSE)
        running[index] = start()
    return None


def _stop_all(running: list[BaseProcess]) -> None:
    """SIGTERM to each (uvicorn shuts down gracefully), then SIGKILL to any still running
    30 s later."""
    for process in running:
        if process.is_alive():
            process.terminate()
    for process in running:
        process.join(30)
        if process.is_alive():
            process.kill()


def _roll(
    running: list[BaseProcess],
    start: Callable[[], BaseProcess],
    refused: str | None,
    ready: SimpleQueue[int],
    reasons: SimpleQueue[str],
) -> None:
    """Each worker in turn: a new one from the file as it is now, and once it serves, the old
    one stopped gracefully (it finishes what it has begun). A new worker that cannot start
    ends the reload; the workers not yet replaced keep serving."""
    if refused is not None:
        # A worker started again after a crash reads the file too: it must be fixed.
        log.error("SIGHUP: the configuration is refused, the running one stays: %s", refused)
        return
    for index, old in enumerate(running):
        new = start()
        deadline = time.monotonic() + READY_WAIT
        while new.pid not in _drain(ready):
            if not new.is_alive() or time.monotonic() > deadline:
                _stop(new)
                reason = _last(reasons) or f"exit status {new.exitcode}"
                log.error("SIGHUP: a new worker did not start, the others stay: %s", reason)
                return
            time.sleep(0.05)
        running[index] = new
        _stop(old)
    log.info("SIGHUP: configuration reloaded; %d workers replaced", len(running))


def _stop(worker: BaseProcess) -> None:
    """SIGTERM (uvicorn stops accepting, then finishes its requests), SIGKILL 30 s later as at
    shutdown; then its counts join the dead workers' (only once it has exited: a live worker
    would write its file again)."""
    worker.terminate()
    worker.join(30)
    if worker.is_alive():
        worker.kill()
        worker.join()
    forget(worker.pid)


def _drain(queue: SimpleQueue[int]) -> list[int]:
    found = []
    while not queue.empty():
        found.append(queue.get())
    return found


def _last(reasons: SimpleQueue[str]) -> str | None:
    reason = None
    while not reasons.empty():
        reason = reasons.get()
    return reason
