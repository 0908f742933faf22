"""Red-team findings against SPEC §11.1 (every resource bounded), each sent to a real
`imgproxy serve` on a loopback port by many clients at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
from PIL import Image

from tests.support import images, never_reading, write_config
from tests.support.processes import sampled_rss, served

LONG = 60_000  # characters of one URL: within the request head's 64 KiB
CLIENTS = 16


async def _statuses(base: str, urls: list[str]) -> dict[int, int]:
    found: dict[int, int] = {}
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        gate = asyncio.Semaphore(CLIENTS)

        async def one(url: str) -> None:
            async with gate:
                status = (await client.get(url)).status_code
                found[status] = found.get(status, 0) + 1

        await asyncio.gather(*(one(url) for url in urls))
    return found


def test_long_urls_do_not_grow_a_worker(tmp_path: Path, media: Path) -> None:
    """A production server (signing on, unsigned presets allowed, the default) remembered
    every accepted URL, 20 000 of them, whatever their length: distinct 60 kB paths under
    `?p=small` (404s) held 117 MB a thousand, and 60 kB queries of `&` beside `p=small` on a
    real photo (200s) 69 MB a thousand, about 2.4 GB at the count's bound."""
    config = write_config(tmp_path, media, security={"keys": ["k"]})
    missing = [f"/media/{n:06d}{'x' * LONG}.jpg?p=small" for n in range(300)]
    spelled = [f"/media/photo.jpg?{'&' * n}p=small{'&' * LONG}" for n in range(300)]
    with served(config) as server:
        worker = psutil.Process(server.process.pid)
        assert httpx.get(server.url + "/media/photo.jpg?p=small").status_code == 200
        before = worker.memory_info().rss
        statuses = asyncio.run(_statuses(server.url, missing + spelled))
        grown = worker.memory_info().rss - before
    assert statuses == {404: 300, 200: 300}
    assert grown < 24 * 2**20, f"{grown / 2**20:.1f} MiB for 600 long URLs"


def test_a_width_hint_of_superscript_digits_is_ignored(tmp_path: Path, media: Path) -> None:
    """`Width: ²` (latin-1 0xB2, which str.isdigit() calls a digit and int() refuses) was a
    500 with a traceback on every request of a server with client hints on."""
    config = write_config(tmp_path, media, server={"client_hints": True})
    hostile = [b"\xb2", b"1\xb2", b"\xb9\xb2\xb3", b"64\xb3"]

    async def send_all(base: str) -> dict[int, int]:
        found: dict[int, int] = {}
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:

            async def one(name: bytes, value: bytes) -> None:
                response = await client.get("/media/photo.jpg?w=300", headers=[(name, value)])
                found[response.status_code] = found.get(response.status_code, 0) + 1

            sends = [(name, value) for name in (b"width", b"sec-ch-width") for value in hostile]
            await asyncio.gather(*(one(name, value) for name, value in sends * 4))
        return found

    with served(config) as server:
        statuses = asyncio.run(send_all(server.url))
        plain = httpx.get(server.url + "/media/photo.jpg?w=300")
        assert plain.status_code == 200
    assert statuses == {200: 32}
    assert "Traceback" not in server.stderr


def _answers(conn: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """`count` responses read off `conn` in order: each one's status and body."""
    buffer = b""
    found: list[tuple[int, bytes]] = []
    while len(found) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = conn.recv(65536)
            assert chunk, f"closed after {len(found)} answers"
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)[1])  # type: ignore[index]
        while len(buffer) < length:
            chunk = conn.recv(65536)
            assert chunk, f"closed in answer {len(found)}"
            buffer += chunk
        found.append((int(head.split(b" ", 2)[1]), buffer[:length]))
        buffer = buffer[length:]
    return found


def test_pipelined_requests_hold_no_more_than_their_cap(tmp_path: Path, media: Path) -> None:
    """Clients that pipeline tiny requests and read nothing: uvicorn parsed and queued every
    request that arrived, reading on after each answer, so one connection sending 50 MB of
    `GET /healthz` held 3.7 GB; 4 sending 1 MB each grew the worker by 300 MB."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    config = write_config(tmp_path, media)

    def flood(port: int) -> None:
        conn = socket.create_connection(("127.0.0.1", port), timeout=20)
        with conn, contextlib.suppress(OSError):  # closed after KEEP_ALIVE_REQUESTS answers
            conn.sendall(request * (2**20 // len(request)))
            time.sleep(1)

    with served(config) as server:
        port = int(server.url.rsplit(":", 1)[1])
        worker = psutil.Process(server.process.pid)
        before = worker.memory_info().rss
        with sampled_rss(worker) as peak, ThreadPoolExecutor(4) as pool:
            list(pool.map(flood, [port] * 4))
        assert httpx.get(server.url + "/healthz").status_code == 200
    grown = peak[0] - before
    assert grown < 32 * 2**20, f"{grown / 2**20:.0f} MiB for 4 MB of pipelined requests"


def test_pipelined_requests_are_all_answered_in_order(tmp_path: Path, media: Path) -> None:
    """Past the cap, the held requests are parsed as the earlier ones are answered: each gets
    its own answer, in order, also when the client half-closes right after sending them."""
    config = write_config(tmp_path, media)
    widths = list(range(8, 128))
    requests = b"".join(
        f"GET /media/photo.jpg?w={w}&fm=png HTTP/1.1\r\nHost: x\r\n\r\n".encode() for w in widths
    )
    with served(config) as server:
        port = int(server.url.rsplit(":", 1)[1])
        for half_close in (False, True):
            with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
                conn.sendall(requests)
                if half_close:
                    conn.shutdown(socket.SHUT_WR)
                answers = _answers(conn, len(widths))
                if half_close:
                    assert conn.recv(1) == b""  # then closed
            assert [status for status, _ in answers] == [200] * len(widths)
            assert [images.decode(body).size[0] for _, body in answers] == widths


def test_clients_that_never_read_renditions_hold_no_more_than_the_budget(
    tmp_path: Path, media: Path
) -> None:
    """16 clients ask at once for distinct 4 MB renditions (noise as PNG) and read nothing:
    each held its whole rendition past the budget (+76 MiB here under an 8 MiB budget and
    tier; 20 of 8.6 MB: +194 MiB). Now a body being sent counts in the budget, so the
    renders behind them wait; once the slow clients leave, renders run again."""
    from PIL import Image

    side = (1400, 1000)
    Image.frombytes("RGB", side, os.urandom(side[0] * side[1] * 3)).save(
        media / "noise.png", compress_level=1
    )
    budget = 8 * 2**20
    config = write_config(
        tmp_path, media, limits={"inflight_bytes": budget}, cache={"memory_bytes": budget}
    )
    with served(config) as server:
        port = int(server.url.rsplit(":", 1)[1])
        worker = psutil.Process(server.process.pid)
        first = httpx.get(server.url + "/media/noise.png?w=1399&fm=png", timeout=30)
        assert first.status_code == 200 and len(first.content) > 3_000_000
        before = worker.memory_info().rss
        with sampled_rss(worker) as peak:
            slow = never_reading(port, [f"/media/noise.png?w={1398 - n}&fm=png" for n in range(16)])
            time.sleep(6)  # every render done, before: each body held for its client
        for conn in slow:
            conn.close()
        after = httpx.get(server.url + "/media/noise.png?w=300&fm=png", timeout=60)
        assert after.status_code == 200
    grown = peak[0] - before
    assert grown < budget * 2 + 24 * 2**20, f"{grown / 2**20:.0f} MiB"


def test_connections_past_the_cap_close_the_longest_waiting(tmp_path: Path, media: Path) -> None:
    """2000 connections that each send half a head (slowloris) from 40 clients at once: each
    was kept until its head deadline, 5000 of them 37 MB and 5000 descriptors, bounded only
    by the descriptor limit. Past `server.max_connections` the one that has waited longest
    for its head is closed; a real request still gets its answer."""
    config = write_config(tmp_path, media, server={"max_connections": 200})
    with served(config) as server:
        port = int(server.url.rsplit(":", 1)[1])
        worker = psutil.Process(server.process.pid)
        base_fds = worker.num_fds()
        opened: list[socket.socket] = []

        def dribble(_: int) -> None:
            for _ in range(50):
                conn = socket.create_connection(("127.0.0.1", port), timeout=10)
                with contextlib.suppress(OSError):  # closed already: the cap at work
                    conn.sendall(b"GET /media/photo.jpg HTTP/1.1\r\nHost: x\r\n")
                opened.append(conn)

        try:
            with ThreadPoolExecutor(40) as pool:
                list(pool.map(dribble, range(40)))
            time.sleep(0.5)
            held = worker.num_fds() - base_fds
            answer = httpx.get(server.url + "/media/photo.jpg?w=20", timeout=10)
        finally:
            for conn in opened:
                conn.close()
    assert len(opened) == 2000
    assert held <= 200 + 10, f"{held} descriptors for 2000 half-sent heads"
    assert answer.status_code == 200


def test_a_worker_gives_back_its_renders_pixels(tmp_path: Path, media: Path) -> None:
    """16 clients asking at once to trim distinct 2000x2000 PNGs (each render larger than
    the 64 MiB limits.inflight_bytes, so they ran one at a time): the worker's heap kept the
    pixels its render threads had freed, 94 MiB more than before once idle, for ever (glibc's
    mmap threshold rises to the largest block freed). Now the idle worker trims its heap and
    is back near where it began (server/heap.py)."""
    for n in range(CLIENTS):
        flat = Image.new("RGB", (2000, 2000), (n, 20, 30))
        flat.save(media / f"flat{n}.png")
    config = write_config(tmp_path, media, limits={"inflight_bytes": 64 * 2**20})
    urls = [f"/media/flat{n}.png?w=100&trim=0" for n in range(CLIENTS)]
    with served(config) as server:
        worker = psutil.Process(server.process.pid)
        before = worker.memory_info().rss
        statuses = asyncio.run(_statuses(server.url, urls))
        deadline = time.monotonic() + 3  # nothing in flight: the worker is idle
        while (kept := worker.memory_info().rss - before) >= 24 * 2**20:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert statuses == {200: CLIENTS}
    assert kept < 24 * 2**20, f"{kept / 2**20:.1f} MiB kept 3 s after the renders"
