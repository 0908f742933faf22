"""The limits of one client connection of `imgproxy serve`, and the timers that keep them:
a deadline for each request head, caps on its bytes and its header count, a deadline for a
stalled write and a cap on the requests of one keep-alive connection (SPEC §11.1).

Apart from the protocols that install them (connections.py), which import uvicorn: the
supervisor of `serve --workers N` reads these and imports neither. `uvicorn_options()` names
the protocol as an import string, so it passes to each worker as plain data.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

HEAD_TIMEOUT = 10.0  # seconds from "ready for a request" to its complete head
HEAD_TIMEOUT_ENV = "IMGPROXY_HEAD_TIMEOUT"  # overrides HEAD_TIMEOUT (tests use a short one)
KEEP_ALIVE_TIMEOUT = 5  # idle seconds between two requests (uvicorn's timeout_keep_alive)
KEEP_ALIVE_REQUESTS = 1000  # then Connection: close; reconnecting also rebalances workers
DRAIN_SECONDS = 2.0  # at a graceful stop, how long an idle keep-alive connection is kept
SEND_TIMEOUT = 60.0  # a client that reads nothing of its answer for this long is dropped
MAX_HEAD_BYTES = 64 * 1024  # request line and headers as received; larger: 400 and close
MAX_HEADERS = 100  # server.max_headers, unless MAX_HEADERS_ENV says otherwise
MAX_HEADERS_ENV = "IMGPROXY_SERVER__MAX_HEADERS"  # `serve` sets it from the settings
MAX_CONNECTIONS = 4096  # server.max_connections, unless MAX_CONNECTIONS_ENV says otherwise
MAX_CONNECTIONS_ENV = "IMGPROXY_SERVER__MAX_CONNECTIONS"  # `serve` sets it from the settings


def head_timeout(environ: dict[str, str] | os._Environ[str] = os.environ) -> float:
    """HEAD_TIMEOUT, or a positive number of seconds under 3600 from HEAD_TIMEOUT_ENV."""
    try:
        seconds = float(environ.get(HEAD_TIMEOUT_ENV) or HEAD_TIMEOUT)
    except ValueError:
        return HEAD_TIMEOUT
    return seconds if 0 < seconds < 3600 else HEAD_TIMEOUT


def max_headers(environ: dict[str, str] | os._Environ[str] = os.environ) -> int:
    """MAX_HEADERS, or a positive whole number from MAX_HEADERS_ENV. Read per connection:
    `serve` sets it after importing this module and before the first connection."""
    try:
        count = int(environ.get(MAX_HEADERS_ENV) or MAX_HEADERS)
    except ValueError:
        return MAX_HEADERS
    return count if count > 0 else MAX_HEADERS


def max_connections(environ: dict[str, str] | os._Environ[str] = os.environ) -> int:
    """MAX_CONNECTIONS, or a positive whole number from MAX_CONNECTIONS_ENV (read as
    max_headers is)."""
    try:
        count = int(environ.get(MAX_CONNECTIONS_ENV) or MAX_CONNECTIONS)
    except ValueError:
        return MAX_CONNECTIONS
    return count if count > 0 else MAX_CONNECTIONS


def uvicorn_options(*, fast: bool) -> dict[str, Any]:
    """The uvicorn.Config options that install these limits (httptools when `fast`)."""
    protocol = "HttpToolsLimits" if fast else "H11Limits"
    return {
        "http": f"imgproxy.server.connections:{protocol}",
        "ws": "none",  # no WebSocket route; an upgrade would also get the Coalescing transport
        "timeout_keep_alive": KEEP_ALIVE_TIMEOUT,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }


HEAD_SECONDS = head_timeout()  # read once, when each server process imports this module


class Deadlines:
    """One connection's timers. The head deadline runs from the moment the server is ready for
    a request (connected, or the previous answer sent) until the request's head is complete;
    the send deadline while the transport refuses more bytes (the client is not reading).

    The head deadline is checked lazily: a request only notes when the wait for its head began
    (a float), and one timer per connection, armed at most once per HEAD_SECONDS, closes the
    connection if the head awaited then is still incomplete at its own deadline. Creating and
    cancelling a timer for every request cost about as much as the rest of a memory hit's edge."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.Transport,
        waiting: dict[Deadlines, None] | None = None,
    ) -> None:
        self.loop = loop
        self.transport = transport
        # The server's connections now waiting for a head, longest first (insertion order).
        self.waiting = {} if waiting is None else waiting
        self.head_since: float | None = None  # when the wait for the current head began
        self.timer: asyncio.TimerHandle | None = None  # the head deadline's check, if armed
        self.send: asyncio.TimerHandle | None = None
        self.requests = 0
        self.head_bytes = 0  # of the head being received (httptools only)
        self.headers = 0  # in the head being received (httptools only)
        self.max_headers = max_headers()

    def await_head(self) -> None:
        if self.head_since is None and not self.transport.is_closing():
            self.head_since = self.loop.time()
            self.head_bytes = self.headers = 0
            self.waiting[self] = None
            if self.timer is None:
                self.timer = self.loop.call_later(HEAD_SECONDS, self._check_head)

    def head_complete(self) -> bool:
        """Stops the head deadline; True when this request is the connection's last."""
        self.head_since = None
        self.waiting.pop(self, None)
        self.head_bytes = self.headers = 0
        self.requests += 1
        return self.requests >= KEEP_ALIVE_REQUESTS

    def _check_head(self) -> None:
        self.timer = None
        if self.head_since is None:
            return  # no head awaited now; the next wait arms the timer again
        due = self.head_since + HEAD_SECONDS
        if self.loop.time() >= due:
            self.transport.close()
        else:  # a later head than the one this timer was armed for
            self.timer = self.loop.call_at(due, self._check_head)

    def writing_paused(self) -> None:
        if self.send is None:
            self.send = self.loop.call_later(SEND_TIMEOUT, self.transport.abort)

    def writing_resumed(self) -> None:
        if self.send is not None:
            self.send.cancel()
            self.send = None

    def cancel(self) -> None:
        for timer in (self.timer, self.send):
            if timer is not None:
                timer.cancel()
        self.timer = self.send = None
        self.head_since = None
        self.waiting.pop(self, None)
