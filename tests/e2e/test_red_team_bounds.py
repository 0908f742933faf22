"""Red-team findings against SPEC §11.1 (every resource bounded), each sent to a real
`imgproxy serve` on a loopback port by many clients at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import psutil

from tests.support import write_config
from tests.support.processes import served

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
