"""Client connections for `imgproxy serve`: uvicorn's HTTP protocols with limits, and each
response's head sent in one write with its body.

The limits: a deadline for each request head, caps on its bytes as received and on its
header count, a deadline for a stalled write and a cap on the requests of one keep-alive
connection. uvicorn alone holds a connection that never finishes its head (slowloris) or
never reads its answer for ever, and keeps every header of a head: 60,000 empty ones are
240 kB sent and 7 MB held (SPEC §11.1).

`uvicorn_options()` names the protocol as an import string, so `serve --workers N` passes it
to each worker as plain data.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from typing import Any, cast

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT = 10.0  # seconds from "ready for a request" to its complete head
HEAD_TIMEOUT_ENV = "IMGPROXY_HEAD_TIMEOUT"  # overrides HEAD_TIMEOUT (tests use a short one)
KEEP_ALIVE_TIMEOUT = 5  # idle seconds between two requests (uvicorn's timeout_keep_alive)
KEEP_ALIVE_REQUESTS = 1000  # then Connection: close; reconnecting also rebalances workers
DRAIN_SECONDS = 2.0  # at a graceful stop, how long an idle keep-alive connection is kept
SEND_TIMEOUT = 60.0  # a client that reads nothing of its answer for this long is dropped
MAX_HEAD_BYTES = 64 * 1024  # request line and headers as received; larger: 400 and close
HEADER_LINE = len(b":\r\n")  # what a header line has besides its name and value, at least
MAX_HEADERS = 100  # server.max_headers, unless MAX_HEADERS_ENV says otherwise
MAX_HEADERS_ENV = "IMGPROXY_SERVER__MAX_HEADERS"  # `serve` sets it from the settings
TOO_LARGE = "the request head is too large"
TOO_MANY = "the request head has too many headers"
ARRIVED = "imgproxy.arrived"  # the scope key asgi.ARRIVED reads: when the head was complete
INTERIM = b"HTTP/1.1 1"  # an interim response (100 Continue) is sent at once, never held


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

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport) -> None:
        self.loop = loop
        self.transport = transport
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
            if self.timer is None:
                self.timer = self.loop.call_later(HEAD_SECONDS, self._check_head)

    def head_complete(self) -> bool:
        """Stops the head deadline; True when this request is the connection's last."""
        self.head_since = None
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


class Coalescing(asyncio.Transport):
    """The connection's transport, sending a response's head with the first write after it.

    uvicorn writes the status line and headers when the app sends `http.response.start`, and
    the body with `http.response.body`: two send() calls for a memory hit, each a trip
    through the kernel's TCP stack and a wake-up of the client. Held, the head leaves with
    the body in one writev: one send() fewer per response (measured: 27 % more hits/s).
    Only a response's head is held, and only until the next write, the response's end or the
    connection's close; an interim `100 Continue` is never held."""

    __slots__ = ("_head_next", "_held", "_inner")

    def __init__(self, inner: asyncio.Transport) -> None:
        super().__init__()
        self._inner = inner
        self._head_next = True  # the next write starts a response
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._inner.writelines((held, data))
        elif self._head_next and not (isinstance(data, bytes) and data.startswith(INTERIM)):
            self._head_next = False
            self._held = bytes(data)
        else:
            self._inner.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def response_complete(self) -> None:
        """Sends a head still held (a HEAD answer has no body); the next write is a head."""
        self.flush()
        self._head_next = True

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._inner.write(held)

    def close(self) -> None:
        self.flush()
        self._inner.close()

    def abort(self) -> None:
        self._held = None
        self._inner.abort()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size() + len(self._held or b"")

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._inner.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()

    def write_eof(self) -> None:
        self.flush()
        self._inner.write_eof()


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
    it, the write-stall timer, and the coalescing transport (before uvicorn's in the MRO)."""

    deadlines: Deadlines
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    coalescing: Coalescing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        raw = cast(asyncio.Transport, transport)
        self.deadlines = Deadlines(self.loop, raw)
        # uvicorn hands self.transport to each request's cycle, which writes the response.
        self.transport = self.coalescing = Coalescing(raw)
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
        The parser's callbacks call the base class directly: super() costs a lookup each."""

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
            return keep_open_to_answer(self.cycle)

        def on_response_complete(self) -> None:
            self.coalescing.response_complete()
            HttpToolsProtocol.on_response_complete(self)
            if self.cycle.response_complete:  # nothing pipelined is waiting or running
                self.deadlines.await_head()
