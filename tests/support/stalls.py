"""A server that stalls: it accepts every connection and never answers (an S3 endpoint,
Redis, an origin that hangs), for the tests of what a stall may cost."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def stalled_endpoint() -> Iterator[tuple[str, list[socket.socket]]]:
    """A TCP server on a free loopback port that accepts every connection and never
    answers: its URL and the connections it has accepted so far."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    listener.settimeout(0.05)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        done.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()
