"""Client connections for `imgproxy serve`: uvicorn's HTTP protocols with the limits of
connection_limits.py, and each response's head sent in one write with its body
(coalescing.py).

uvicorn alone holds a connection that never finishes its head (slowloris) or never reads its
answer for ever, and keeps every header of a head: 60,000 empty ones are 240 kB sent and
7 MB held (SPEC §11.1).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING, Any, cast

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

from imgproxy.server.coalescing import Coalescing
from imgproxy.server.connection_limits import (
    DRAIN_SECONDS,
    KEEP_ALIVE_REQUESTS,
    MAX_HEAD_BYTES,
    Deadlines,
    max_connections,
    max_headers,
)

if TYPE_CHECKING:
    from uvicorn.server import Protocols, ServerState

HEADER_LINE = len(b":\r\n")  # what a header line has besides its name and value, at least
TOO_LARGE = "the request head is too large"
TOO_MANY = "the request head has too many headers"
ARRIVED = "imgproxy.arrived"  # the scope key asgi.ARRIVED reads: when the head was complete
# Pipelined requests parsed ahead of the one being answered; the rest of what arrived waits
# unparsed, and the connection unread, until they are answered. Bytes are parsed in pieces of
# FEED_BYTES, so a piece adds at most FEED_BYTES / 18 (the shortest request) more.
PIPELINED = 16
FEED_BYTES = 2048
# Each server's connections waiting for a request head, longest first (Deadlines.waiting).
_WAITING: weakref.WeakKeyDictionary[ServerState, dict[Deadlines, None]] = (
    weakref.WeakKeyDictionary()
)


def keep_open_to_answer(cycle: Any) -> bool:
    """At a client's half-close (shutdown(SHUT_WR) after its request): whether the request
    still needs its answer. It gets it, then the connection closes; uvicorn closed at once,
    dropping every answer not written yet (all but memory hits). `cycle` is the newest
    request's, so any pipelined before it are answered as usual."""
    if cycle is None or cycle.response_complete:
        return False
    cycle.keep_alive = False
    return True


class _Deadlined(asyncio.Protocol):
    """What both protocols add alike: the deadlines started with the connection, stopped with
    it, the write-stall timer, the coalescing transport (before uvicorn's in the MRO), and the
    cap on open connections.

    uvicorn accepts every connection the kernel hands it: each waiting for its head holds
    about 8 KiB and a file descriptor for the head deadline, and a client opening thousands a
    second held 5000 at once (37 MB), bounded by nothing but the descriptor limit. Past
    `server.max_connections`, the connection that has waited longest for a head (idle
    between requests, or dribbling one) is closed for the new one; when every one is busy
    with a request, the new one is closed."""

    deadlines: Deadlines
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    coalescing: Coalescing
    connections: set[Protocols]  # uvicorn's: every open connection of this server
    server_state: ServerState

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        raw = cast(asyncio.Transport, transport)
        waiting = _WAITING.setdefault(self.server_state, {})
        self.deadlines = Deadlines(self.loop, raw, waiting)
        # uvicorn hands self.transport to each request's cycle, which writes the response.
        self.transport = self.coalescing = Coalescing(raw)
        if len(self.connections) > max_connections():
            # The longest wait for a head ends (a closed transport leaves `waiting` with its
            # connection_lost); with none waiting, every other is busy: this one goes.
            longest = next(iter(waiting), None)
            if longest is None:
                self.transport.close()
                return
            longest.cancel()
            longest.transport.close()
        self.deadlines.await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self.deadlines.cancel()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """A graceful stop (SIGTERM, a SIGHUP's rolling restart). uvicorn closed an idle
        keep-alive connection at once, and a request crossing that close was reset: a failure
        the client saw. Now its next request is its last (answered with Connection: close), and
        a connection still idle after DRAIN_SECONDS is closed, as at a keep-alive timeout."""
        self.deadlines.requests = KEEP_ALIVE_REQUESTS
        cycle = getattr(self, "cycle", None)
        if cycle is not None and not cycle.response_complete:
            super().shutdown()  # type: ignore[misc]  # uvicorn's: this answer is the last
        else:
            self.loop.call_later(DRAIN_SECONDS, self._shutdown_now)

    def _shutdown_now(self) -> None:
        if not self.transport.is_closing():
            super().shutdown()  # type: ignore[misc]  # closes it if idle

    def pause_writing(self) -> None:
        super().pause_writing()
        self.deadlines.writing_paused()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.deadlines.writing_resumed()


class CountedHeaders(h11.Connection):
    """h11's connection refusing a head with more than `max_headers` headers: h11 caps a head's
    bytes as received (h11_max_incomplete_event_size), not its count."""

    def __init__(self, max_incomplete_event_size: int, max_headers: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size)
        self.max_headers = max_headers

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request) and len(event.headers) > self.max_headers:
            raise h11.RemoteProtocolError(TOO_MANY, 400)  # uvicorn answers it with a 400
        return event


class H11Limits(_Deadlined, H11Protocol):
    """uvicorn's h11 protocol (the pure-Python fallback) with the Deadlines and the header
    count cap."""

    def __init__(self, config: Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        size = config.h11_max_incomplete_event_size or MAX_HEAD_BYTES
        self.conn = CountedHeaders(size, max_headers())

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is cycle or self.cycle is None:
            return  # no new request's head in what arrived
        self.cycle.scope[ARRIVED] = time.perf_counter()  # type: ignore[literal-required]
        if self.deadlines.head_complete():
            self.cycle.keep_alive = False

    def eof_received(self) -> bool:  # type: ignore[override]  # uvicorn's: None, so close
        return keep_open_to_answer(self.cycle)

    def on_response_complete(self) -> None:
        self.coalescing.response_complete()
        super().on_response_complete()
        if self.cycle is None or self.cycle.response_complete:  # nothing pipelined started
            self.deadlines.await_head()


try:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn without httptools: h11 only
    pass
else:

    class HttpToolsLimits(_Deadlined, HttpToolsProtocol):
        """uvicorn's httptools protocol with the Deadlines and caps on the head's size and
        header count. The parser keeps no line breaks or colons, so each header counts its
        line's least overhead too: 60,000 `X:` lines are 240 kB, not 60 kB.
        The parser's callbacks call the base class directly: super() costs a lookup each.

        And a cap on pipelined requests (PIPELINED): uvicorn parsed every request of what
        arrived and queued each one, reading on after every answer, so one connection
        sending 50 MB of `GET /healthz` without reading held 3.7 GB."""

        held = b""  # what arrived past the pipelined requests' cap, not parsed yet
        eof_held = False  # the client half-closed after sending what is held

        def data_received(self, data: bytes) -> None:
            if self.held:  # arrived while held (reading resumed by a request's receive())
                self.held += data
                self.flow.pause_reading()
                return
            if len(data) <= FEED_BYTES and len(self.pipeline) < PIPELINED:
                HttpToolsProtocol.data_received(self, data)  # the usual case: one piece
                return
            self._feed(data)

        def _feed(self, data: bytes) -> None:
            """`data` parsed piece by piece until PIPELINED requests wait for their answers;
            the rest is held, the connection no longer read, until they are answered."""
            view = memoryview(data)
            while view and not self.transport.is_closing():
                if len(self.pipeline) >= PIPELINED:
                    self.held = bytes(view)
                    self.flow.pause_reading()
                    return
                piece, view = view[:FEED_BYTES], view[FEED_BYTES:]
                HttpToolsProtocol.data_received(self, bytes(piece))
            if self.eof_held:  # all of it parsed: the half-close applies to the newest now
                self.eof_held = False
                if not keep_open_to_answer(self.cycle):
                    self.transport.close()

        def on_url(self, url: bytes) -> None:
            self.deadlines.head_bytes += len(url)
            if self.deadlines.head_bytes > MAX_HEAD_BYTES:
                raise httptools.HttpParserError(TOO_LARGE)  # uvicorn answers it with a 400
            HttpToolsProtocol.on_url(self, url)

        def on_header(self, name: bytes, value: bytes) -> None:
            deadlines = self.deadlines
            deadlines.head_bytes += len(name) + len(value) + HEADER_LINE
            if deadlines.head_bytes > MAX_HEAD_BYTES:
                raise httptools.HttpParserError(TOO_LARGE)
            deadlines.headers += 1
            if deadlines.headers > deadlines.max_headers:
                raise httptools.HttpParserError(TOO_MANY)
            HttpToolsProtocol.on_header(self, name, value)

        def on_headers_complete(self) -> None:
            HttpToolsProtocol.on_headers_complete(self)
            self.scope[ARRIVED] = time.perf_counter()  # type: ignore[literal-required]
            if self.deadlines.head_complete() and self.cycle is not None:
                self.cycle.keep_alive = False

        def eof_received(self) -> bool:  # type: ignore[override]  # uvicorn's: None, so close
            if self.held:  # requests not parsed yet: answered before the close
                self.eof_held = True
                return True
            return keep_open_to_answer(self.cycle)

        def on_response_complete(self) -> None:
            self.coalescing.response_complete()
            HttpToolsProtocol.on_response_complete(self)  # starts the next, reads on
            if self.held and len(self.pipeline) < PIPELINED:
                held, self.held = self.held, b""
                self._feed(held)
            elif self.held:  # still as many waiting: nothing more is read yet
                self.flow.pause_reading()
            if self.cycle.response_complete:  # nothing pipelined is waiting or running
                self.deadlines.await_head()
