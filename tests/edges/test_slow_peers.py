"""Slow and idle clients against a real `imgproxy serve` (imgproxy/server/connections.py): a request
head that never completes is closed within the head timeout, however slowly it drips, while
normal requests keep working. Waits are bounded by socket and pytest timeouts, never asserted
as wall-clock thresholds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn

from imgproxy.server import cli, connection_limits, connections
from imgproxy.server.app import CONFIG_ENV
from imgproxy.server.connection_limits import HEAD_TIMEOUT_ENV, MAX_HEADERS_ENV, Deadlines
from tests.support import images
from tests.support.processes import free_port, running

HEAD_TIMEOUT = "1"  # seconds, for the server under test
WAIT = 15  # a socket's own timeout: a regression fails here instead of hanging


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("slow-peers")
    (folder / "media").mkdir()
    (folder / "media" / "photo.jpg").write_bytes(images.jpeg((64, 48)))
    path = folder / "imgproxy.toml"
    path.write_text(f'[stores.media]\nkind = "fs"\nroot = "{folder / "media"}"\napproved = true\n')
    return path


def start(config: Path, *extra: str, head_timeout: str = HEAD_TIMEOUT) -> Any:
    port = free_port()
    command = [sys.executable, "-m", "imgproxy", "serve", "--config", str(config)]
    env = {**os.environ, HEAD_TIMEOUT_ENV: head_timeout}
    return port, running([*command, "--port", str(port), *extra], port, "imgproxy", env=env)


@pytest.fixture(scope="module", params=[(), ("--workers", "2")], ids=["one", "workers"])
def base(config: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    port, server = start(config, *request.param)
    with server:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:  # with workers, the port answers before every worker is up
            try:
                httpx.get(url + "/healthz", timeout=5).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=WAIT)


def closed_by_server(conn: socket.socket) -> bytes:
    """Everything the server sent until it closed the connection (EOF or reset)."""
    data = b""
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def assert_serving(base: str) -> None:
    with httpx.Client(base_url=base, timeout=WAIT) as client:
        assert client.get("/healthz").status_code == 200
        response = client.get("/media/photo.jpg?w=32")
        assert response.status_code == 200
        assert images.decode(response.content).size == (32, 24)


@pytest.mark.timeout(60)
def test_a_head_that_stops_halfway_is_closed(base: str) -> None:
    with connect(base) as conn:
        conn.sendall(b"GET /media/photo.jpg HTTP/1.1\r\nHost: x\r\nAccept: im")
        assert closed_by_server(conn) == b""  # no answer: the request never was one
    assert_serving(base)


@pytest.mark.timeout(60)
def test_a_connection_that_sends_nothing_is_closed(base: str) -> None:
    with connect(base) as conn:
        assert closed_by_server(conn) == b""
    assert_serving(base)


@pytest.mark.timeout(60)
def test_a_head_dripping_a_byte_at_a_time_is_closed(base: str) -> None:
    """Slowloris proper: every byte restarts an idle timer, never the head's deadline."""
    head = b"GET /media/photo.jpg HTTP/1.1\r\nHost: x\r\n" + b"X-Drip: " + b"a" * 10_000
    with connect(base) as conn:
        conn.settimeout(0.2)
        for byte in head:
            try:
                conn.sendall(bytes([byte]))
                if conn.recv(1) == b"":
                    break  # closed by the server
            except TimeoutError:
                continue  # still open: drip on
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            pytest.fail("the server read a 10 kB head at 5 bytes/s to the end")
    assert_serving(base)


@pytest.mark.timeout(60)
def test_keep_alive_requests_are_unaffected(base: str) -> None:
    """Requests on one connection, each head sent at once, all answered on it."""
    with connect(base) as conn:
        for _ in range(5):
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"\r\n\r\nok"):  # /healthz answers "ok"
                answer += conn.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 ")
            time.sleep(0.3)  # under the head timeout, many times over in total


@pytest.mark.timeout(60)
def test_a_huge_head_is_refused(base: str) -> None:
    """Past 64 kB of head: a 400 and the connection closed (a reset may beat the 400 here, as
    the server closes with the rest of the head unread)."""
    headers = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"a" * 1000) for n in range(100))
    with connect(base) as conn:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        answer = closed_by_server(conn)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), answer[:100]
    assert_serving(base)


HOSTILE = 100  # connections at once
EMPTY_HEADERS = 4000  # `X:` lines in each unfinished head: 16 kB as received, one segment


def hostile_heads(
    address: tuple[str, int], *, lines: int = EMPTY_HEADERS, end: bytes = b""
) -> list[socket.socket]:
    """HOSTILE connections at once, each sending a head of `lines` empty headers, then `end`."""

    def one(_: int) -> socket.socket:
        conn = socket.create_connection(address, timeout=WAIT)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X:\r\n" * lines + end)
        return conn

    with ThreadPoolExecutor(HOSTILE) as pool:
        return list(pool.map(one, range(HOSTILE)))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.fixture
def uvicorn_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """A uvicorn server in this process with `request.param`'s protocol and /healthz."""
    listener = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(Healthz(), http=request.param, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        yield listener.getsockname()
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


class Healthz:
    """Answers the count of headers it got; /slow takes a while first, as a render does."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if scope["path"] == "/slow":
                await asyncio.sleep(0.2)
            count = str(len(scope["headers"])).encode()
            headers = [(b"content-length", str(len(count)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": count})


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "uvicorn_server",
    [connections.HttpToolsLimits, connections.H11Limits],
    ids=["httptools", "h11"],
    indirect=True,
)
def test_heads_past_the_header_count_get_400_at_once(
    uvicorn_server: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the app got all 4000 headers of each head (uvicorn keeps them all). Now each
    is a 400, and a head of exactly server.max_headers headers is still served."""
    monkeypatch.setenv(MAX_HEADERS_ENV, "100")
    conns = hostile_heads(uvicorn_server, end=b"\r\n")
    answers = []
    for conn in conns:
        with conn:
            answers.append(closed_by_server(conn))
    assert all(answer.startswith(b"HTTP/1.1 400 ") for answer in answers), {
        answer[:40] for answer in answers
    }
    with socket.create_connection(uvicorn_server, timeout=WAIT) as conn:
        extra = b"".join(b"X-%d: v\r\n" % n for n in range(99))  # and Host: 100
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + extra + b"Connection: close\r\n\r\n")
        answer = closed_by_server(conn)
    assert answer.startswith(b"HTTP/1.1 400 ")  # 101 with Connection
    with socket.create_connection(uvicorn_server, timeout=WAIT) as conn:
        extra = b"".join(b"X-%d: v\r\n" % n for n in range(98))
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + extra + b"Connection: close\r\n\r\n")
        answer = closed_by_server(conn)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n100"), answer[-50:]


@pytest.mark.timeout(60)
def test_unfinished_heads_of_empty_headers_hold_no_memory(config: Path) -> None:
    """100 unfinished heads of 15,000 `X:` lines each (60 kB as received, under the byte cap)
    against a real `imgproxy serve` with the default head deadline: before, the server kept
    every header for the deadline's 10 s (hundreds of MB); now each is a 400 at once, RSS
    stays within a few MB of where it was, and /healthz keeps answering."""
    port, server = start(config, head_timeout="10")
    with server as process:
        base = f"http://127.0.0.1:{port}"
        assert_serving(base)
        before = rss_mb(process.pid)
        conns = hostile_heads(("127.0.0.1", port), lines=15_000)
        peak = rss_mb(process.pid)
        with httpx.Client(base_url=base, timeout=WAIT) as client:
            for _ in range(5):
                assert client.get("/healthz").status_code == 200
                peak = max(peak, rss_mb(process.pid))
        answers = []
        for conn in conns:
            with conn:
                answers.append(closed_by_server(conn))
        assert peak - before < 40, (before, peak)  # was +690 MB at 60,000 lines each
        # A reset may beat a 400 when the rest of a head was still on its way at the close.
        assert all(answer == b"" or answer.startswith(b"HTTP/1.1 400 ") for answer in answers)
        assert any(answer.startswith(b"HTTP/1.1 400 ") for answer in answers)
        assert_serving(base)


def half_closed_request(base: str, target: str) -> bytes:
    """A whole GET, then shutdown(SHUT_WR): everything the server sends back until it closes."""
    with connect(base) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        conn.shutdown(socket.SHUT_WR)
        return closed_by_server(conn)


@pytest.mark.timeout(60)
def test_a_request_followed_by_a_half_close_is_answered(base: str) -> None:
    """Renders (each width new: a miss), the original and a hit, 24 clients at once, each
    half-closing after its request: every one gets its whole 200, then the close."""
    targets = [f"/media/photo.jpg?w={8 + n}" for n in range(16)]
    targets += ["/media/photo.jpg"] * 4 + ["/media/photo.jpg?w=32"] * 4
    with ThreadPoolExecutor(len(targets)) as pool:
        answers = list(pool.map(lambda target: half_closed_request(base, target), targets))
    for target, answer in zip(targets, answers, strict=True):
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), (target, answer[:60])
        width = int(target.partition("?w=")[2] or 64)
        assert images.decode(body).size[0] == width
    assert_serving(base)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "uvicorn_server",
    [connections.HttpToolsLimits, connections.H11Limits],
    ids=["httptools", "h11"],
    indirect=True,
)
def test_both_protocols_answer_after_a_half_close(uvicorn_server: tuple[str, int]) -> None:
    host, port = uvicorn_server
    base = f"http://{host}:{port}"
    with ThreadPoolExecutor(HOSTILE) as pool:
        answers = list(pool.map(lambda _: half_closed_request(base, "/slow"), range(HOSTILE)))
    assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in answers), {
        answer[:20] for answer in answers
    }
    assert all(answer.endswith(b"\r\n\r\n1") for answer in answers)  # Host only
    with connect(base) as conn:  # a half-close with no request: closed, nothing sent
        conn.shutdown(socket.SHUT_WR)
        assert closed_by_server(conn) == b""


SLOW_READERS = 20
BUDGET = 16 * 1024 * 1024  # limits.inflight_bytes of the server under test


@pytest.fixture(scope="module")
def big_original(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A config whose store holds a 12 MB PNG (noise, stored), under a 16 MiB budget."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("slow-readers")
    (folder / "media").mkdir()
    noise = Image.frombytes("RGB", (2000, 2000), os.urandom(2000 * 2000 * 3))
    noise.save(folder / "media" / "big.png", compress_level=0)
    path = folder / "imgproxy.toml"
    path.write_text(
        f'[stores.media]\nkind = "fs"\nroot = "{folder / "media"}"\napproved = true\n'
        f"[limits]\ninflight_bytes = {BUDGET}\n"
    )
    return path, (folder / "media" / "big.png").read_bytes()


@pytest.mark.timeout(90)
def test_clients_that_never_read_an_original_hold_no_more_than_the_budget(
    big_original: tuple[Path, bytes],
) -> None:
    """20 clients at once ask for a 12 MB original and read nothing: before, each held all
    of it (the budget counted it only while it was read: +240 MB here, 37 -> 896 MB with 30
    clients of a 30 MB file); now each holds the piece its client has not taken. A client
    that reads gets every byte meanwhile, and once the slow ones leave their pieces go back
    to the budget: a render that needs almost all of it then runs."""
    config, data = big_original
    port, server = start(config, head_timeout="10")
    with server as process:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=WAIT) as client:
            assert client.get("/media/big.png").content == data  # its facts are learned
        before = rss_mb(process.pid)
        slow = []
        for _ in range(SLOW_READERS):
            conn = socket.socket()
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            conn.connect(("127.0.0.1", port))
            conn.sendall(b"GET /media/big.png HTTP/1.1\r\nHost: x\r\n\r\n")
            slow.append(conn)
        peak = before
        with httpx.Client(base_url=base, timeout=WAIT) as client:
            for _ in range(3):
                assert client.get("/media/big.png").content == data
                peak = max(peak, rss_mb(process.pid))
            time.sleep(0.5)
            peak = max(peak, rss_mb(process.pid))
            for conn in slow:
                conn.close()
            # 12 MB of a 16 MiB budget: it runs only once the slow clients' pieces are back.
            rendered = client.get("/media/big.png?w=100", timeout=30)
            assert rendered.status_code == 200
            assert images.decode(rendered.content).size == (100, 100)
        assert peak - before < BUDGET / 2**20 + 32, (before, peak)


def test_the_keep_alive_cap_ends_a_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection_limits, "KEEP_ALIVE_REQUESTS", 3)
    loop = asyncio.new_event_loop()
    try:
        deadlines = Deadlines(loop, asyncio.Transport())
        assert [deadlines.head_complete() for _ in range(3)] == [False, False, True]
    finally:
        loop.close()


class Big:
    """An ASGI app whose one answer is far larger than the socket buffers."""

    body = bytes(16 * 1024 * 1024)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        length = str(len(self.body)).encode()
        headers = [(b"content-length", length)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


@pytest.mark.timeout(60)
@pytest.mark.parametrize("protocol", ["HttpToolsLimits", "H11Limits"])
def test_a_client_that_reads_nothing_is_dropped(
    protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection_limits, "SEND_TIMEOUT", 0.5)
    listener = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(Big(), http=getattr(connections, protocol), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        conn = socket.socket()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.settimeout(WAIT)
        with conn:
            conn.connect(listener.getsockname())
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(2)  # read nothing while the server's writes stall
            received = closed_by_server(conn)
        assert len(received) < len(Big.body)  # never all of it: dropped, not kept waiting
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def test_serve_installs_the_limits_and_warns_about_a_signing_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(CONFIG_ENV, "")  # serve sets it for its workers: restored after
    monkeypatch.setenv("IMGPROXY_SERVER__WORKERS", "1")  # and this one
    monkeypatch.delenv(MAX_HEADERS_ENV, raising=False)  # and this one
    ran: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **options: ran.update(options))
    config = tmp_path / "imgproxy.toml"
    (tmp_path / "media").mkdir()
    config.write_text(
        '[server]\ndemo = true\nmax_headers = 50\n[security]\nkeys = ["k1"]\n'
        f'[stores.media]\nkind = "fs"\nroot = "{tmp_path / "media"}"\n'
    )
    assert cli.main(["serve", "--config", str(config), "--port", "0"]) == 0
    assert ran["http"].startswith("imgproxy.server.connections:")
    assert ran["timeout_keep_alive"] == connection_limits.KEEP_ALIVE_TIMEOUT
    assert ran["ws"] == "none"
    assert os.environ[MAX_HEADERS_ENV] == "50"  # what each connection reads
    err = capsys.readouterr().err
    assert "WARNING" in err and "server.demo = true" in err and "security.keys" in err


@pytest.mark.parametrize("sections", ["[server]\ndemo = true\n", '[security]\nkeys = ["k1"]\n', ""])
def test_no_warning_without_both_demo_and_keys(
    sections: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(CONFIG_ENV, "")
    monkeypatch.setenv("IMGPROXY_SERVER__WORKERS", "1")
    monkeypatch.setenv(MAX_HEADERS_ENV, "100")
    monkeypatch.setattr(uvicorn, "run", lambda *args, **options: None)
    config = tmp_path / "imgproxy.toml"
    config.write_text(sections)
    assert cli.main(["serve", "--config", str(config), "--port", "0"]) == 0
    assert "WARNING" not in capsys.readouterr().err


class FakeLoop:
    """Just the clock and timers Deadlines uses, driven by hand."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Any]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any) -> Any:
        timer = (when, callback)
        self.timers.append(timer)
        return SimpleNamespace(cancel=lambda: self.timers.remove(timer))

    def call_later(self, delay: float, callback: Any) -> Any:
        return self.call_at(self.now + delay, callback)

    def fire(self) -> None:
        when, callback = self.timers.pop(0)
        self.now = max(self.now, when)
        callback()


class FakeTransport:
    closed = False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def test_the_head_deadline_is_one_timer_that_follows_each_new_head() -> None:
    """Requests only note when their head was awaited: one timer a connection, which closes
    it only when the head awaited at the deadline is still incomplete HEAD_SECONDS later."""
    loop, transport = FakeLoop(), FakeTransport()
    deadlines = Deadlines(loop, transport)  # type: ignore[arg-type]
    deadlines.await_head()
    for _ in range(100):  # keep-alive requests: no timer each
        loop.now += 0.01
        deadlines.head_complete()
        deadlines.await_head()
    assert len(loop.timers) == 1
    awaited = loop.now
    loop.fire()  # the first head's deadline: a later head is awaited, not yet for long
    assert not transport.closed
    assert loop.timers[0][0] == awaited + connection_limits.HEAD_SECONDS
    loop.fire()
    assert transport.closed


def test_a_complete_head_disarms_the_deadline() -> None:
    loop, transport = FakeLoop(), FakeTransport()
    deadlines = Deadlines(loop, transport)  # type: ignore[arg-type]
    deadlines.await_head()
    deadlines.head_complete()  # then a long render: no head is awaited meanwhile
    loop.fire()
    assert not transport.closed and not loop.timers
    deadlines.await_head()  # the answer sent: the next head's deadline is armed again
    assert loop.timers[0][0] == loop.now + connection_limits.HEAD_SECONDS
