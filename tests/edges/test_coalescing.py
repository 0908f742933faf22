"""A response's head leaves with its body in one write (imgproxy/server/connections.py, Coalescing),
counted by the kernel: /proc/PID/io's `syscw` is the number of write(2)/writev(2) calls a
process made. And nothing that must leave at once is held back: a 100 Continue, a streamed
chunk, a HEAD answer, a 400, pipelined answers; many clients at once get whole, unmixed bytes.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from imgproxy.server import connections
from tests.support import images
from tests.support.processes import free_port, running

WAIT = 15  # a socket's own timeout: a regression fails here instead of hanging
PROTOCOLS = ["HttpToolsLimits", "H11Limits"]


def write_calls(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError("no syscw in /proc/PID/io")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """`imgproxy serve`, one process (so its /proc/PID/io counts every write it makes)."""
    if not Path("/proc/self/io").exists():
        pytest.skip("no /proc/PID/io on this system")
    folder = tmp_path_factory.mktemp("coalescing")
    (folder / "media").mkdir()
    (folder / "media" / "photo.jpg").write_bytes(images.jpeg((640, 480)))
    config = folder / "imgproxy.toml"
    root = folder / "media"
    config.write_text(f'[stores.media]\nkind = "fs"\nroot = "{root}"\napproved = true\n')
    port = free_port()
    command = [sys.executable, "-m", "imgproxy", "serve", "--config", str(config)]
    with running([*command, "--port", str(port)], port, "imgproxy") as server:
        yield f"http://127.0.0.1:{port}", server.pid


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_each_hit_is_one_write(served: tuple[str, int], method: str) -> None:
    """200 memory hits on one keep-alive connection: 200 writes, not 400 (head, then body)."""
    base, pid = served
    url = f"{base}/media/photo.jpg?w=200&fm=webp"
    with httpx.Client(timeout=WAIT) as client:
        first = client.get(url)
        assert first.status_code == 200 and len(first.content) > 1000
        before = write_calls(pid)
        for _ in range(200):
            response = client.request(method, url)
            assert response.status_code == 200
            assert response.content == (first.content if method == "GET" else b"")
        # One write each (two each would be 400); a few to spare for anything else the
        # process might write meanwhile (none was seen: exactly 200 in every run here).
        assert write_calls(pid) - before <= 205


def test_many_clients_get_whole_unmixed_answers(served: tuple[str, int]) -> None:
    """32 clients, 20 keep-alive requests each over 4 renditions: every body is its
    rendition's bytes, every 304 empty, and the server is healthy afterwards."""
    base, _ = served
    urls = [f"{base}/media/photo.jpg?w={w}&fm={fm}" for w in (120, 160) for fm in ("jpeg", "png")]
    with httpx.Client(timeout=WAIT) as client:
        wanted = {url: client.get(url) for url in urls}

    async def one_client(n: int) -> list[bool]:
        async with httpx.AsyncClient(timeout=WAIT) as http:
            checks = []
            for i in range(20):
                url = urls[(n + i) % len(urls)]
                if i % 5 == 4:
                    etag = wanted[url].headers["etag"]
                    answer = await http.get(url, headers={"if-none-match": etag})
                    checks.append(answer.status_code == 304 and answer.content == b"")
                else:
                    answer = await http.get(url)
                    checks.append(answer.content == wanted[url].content)
            return checks

    async def all_clients() -> list[list[bool]]:
        return await asyncio.gather(*(one_client(n) for n in range(32)))

    results = asyncio.run(all_clients())
    assert all(all(checks) for checks in results)
    assert httpx.get(f"{base}/healthz", timeout=WAIT).status_code == 200


class Paced:
    """An ASGI app for what must not wait: POST /echo reads its body (the client waits for
    100 Continue first); GET /stream sends one chunk and waits until the client has it."""

    def __init__(self) -> None:
        self.client_has_chunk = threading.Event()
        self.waited: list[bool] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/echo":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            await _answer(send, body)
        elif scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
            for _ in range(WAIT * 100):  # until the client has the first chunk, or gives up
                if self.client_has_chunk.is_set():
                    break
                await asyncio.sleep(0.01)
            self.waited.append(self.client_has_chunk.is_set())
            await send({"type": "http.response.body", "body": b"second"})
        else:
            await _answer(send, b"hello")


async def _answer(send: Any, body: bytes) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextmanager
def uvicorn_with(protocol: str, app: Any) -> Iterator[tuple[str, int]]:
    listener = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=getattr(connections, protocol), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + WAIT
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        yield listener.getsockname()[:2]
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def read_until(conn: socket.socket, end: bytes) -> bytes:
    data = b""
    while end not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.timeout(60)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_100_continue_is_not_held(protocol: str) -> None:
    with uvicorn_with(protocol, Paced()) as address:
        conn = socket.create_connection(address, timeout=WAIT)
        with conn:
            head = b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            conn.sendall(head + b"Content-Length: 4\r\n\r\n")
            assert read_until(conn, b"\r\n\r\n").startswith(b"HTTP/1.1 100 ")
            conn.sendall(b"ping")
            answer = read_until(conn, b"ping")
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"ping")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_streamed_chunk_leaves_at_once(protocol: str) -> None:
    app = Paced()
    with uvicorn_with(protocol, app) as address:
        conn = socket.create_connection(address, timeout=WAIT)
        with conn:
            conn.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"first" in read_until(conn, b"first")
            app.client_has_chunk.set()
            assert b"second" in read_until(conn, b"second")
    assert app.waited == [True]  # the head and first chunk came before the app went on


@pytest.mark.timeout(60)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_head_pipelined_and_bad_requests_are_answered(protocol: str) -> None:
    with uvicorn_with(protocol, Paced()) as address:
        with socket.create_connection(address, timeout=WAIT) as conn:
            conn.sendall(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n")
            head = read_until(conn, b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: 5" in head
            two = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
            conn.sendall(two)
            answers = b""
            while answers.count(b"hello") < 2:
                chunk = conn.recv(65536)
                assert chunk, answers
                answers += chunk
            assert answers.count(b"HTTP/1.1 200 ") == 2
        with socket.create_connection(address, timeout=WAIT) as conn:
            conn.sendall(b"NOT A REQUEST\r\n\r\n")
            assert read_until(conn, b"\r\n\r\n").startswith(b"HTTP/1.1 400 ")
