"""One worker process of `imgproxy serve --workers N`: its own listening socket on the shared
port (SO_REUSEPORT), uvicorn serving the app on it, a word to the supervisor once it serves
(or why it could not start), and a graceful stop of its own if the supervisor dies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from multiprocessing.connection import Connection
from multiprocessing.queues import SimpleQueue
from typing import Any


def reuse_port_socket(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _stop_when_orphaned(supervisor: Connection) -> None:
    """A worker whose supervisor died without stopping it (SIGKILL, the OOM killer) stops
    itself, gracefully: it would serve on for ever beside a restarted supervisor's workers.
    `supervisor` is the read end of a pipe whose only write end the supervisor holds: it ends
    when the supervisor does. (The worker's parent is the fork server, which lives on while
    any worker does: it cannot tell.)"""
    with contextlib.suppress(EOFError, OSError):
        supervisor.recv()
    os.kill(os.getpid(), signal.SIGTERM)


def _say_when_ready(server: Any, ready: SimpleQueue[int]) -> None:
    while not server.started:
        time.sleep(0.02)
    ready.put(os.getpid())


def run(
    host: str,
    port: int,
    options: dict[str, Any],
    supervisor: Connection,
    queues: tuple[SimpleQueue[str], SimpleQueue[int]],
) -> None:
    import threading

    import uvicorn

    reasons, ready = queues
    threading.Thread(target=_stop_when_orphaned, args=(supervisor,), daemon=True).start()
    try:
        sock = reuse_port_socket(host, port)
        config = uvicorn.Config("imgproxy.server.app:app_from_env", factory=True, **options)
        server = uvicorn.Server(config)
        threading.Thread(target=_say_when_ready, args=(server, ready), daemon=True).start()
        server.run(sockets=[sock])
    except Exception as exc:  # the traceback follows on stderr; the supervisor says why it stops
        reasons.put(f"{type(exc).__name__}: {exc}")
        raise
