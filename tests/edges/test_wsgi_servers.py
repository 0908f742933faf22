"""The WSGI middleware under a real pre-forking server: gunicorn --preload builds the app in
the master, then forks its workers, which must each serve images (none may hang)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import wsgiref.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
from PIL import Image

from imgproxy import ImageProxy, Settings
from imgproxy.render.executor import RenderExecutor
from imgproxy.wsgi import ImageProxyMiddleware
from tests.support import images, never_reading
from tests.support.processes import free_port, running, sampled_rss

APP = """
from imgproxy import ImageProxy, Settings
from imgproxy.wsgi import ImageProxyMiddleware


def site(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"site"]


settings = Settings.from_mapping(
    {{"stores": {{"media": {{"kind": "fs", "root": {root!r}, "approved": True}}}}}}, env={{}}
)
application = ImageProxyMiddleware(site, ImageProxy(settings), prefix="/media")
{warm}
"""

# Serving before the fork starts the master's loop and render threads, which a child lacks.
WARM = """
def _warm():
    import io, sys
    seen = {}
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/media/media/photo.jpg",
               "QUERY_STRING": "w=20", "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr}
    application(environ, lambda status, headers: seen.setdefault("status", status))
    assert seen["status"] == "200 OK", seen
_warm()
"""


def serve_under_gunicorn(tmp_path: Path, *, warm: bool) -> None:
    gunicorn = str(Path(sys.executable).parent / "gunicorn")  # a dev dependency
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(images.jpeg((400, 300)))
    (tmp_path / "preloaded.py").write_text(APP.format(root=str(folder), warm=WARM if warm else ""))
    port = free_port()
    command = [gunicorn, "--preload", "-w", "2", "-b", f"127.0.0.1:{port}", "preloaded:application"]
    with running(command, port, "gunicorn", cwd=str(tmp_path)):
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(base + "/", timeout=10).text == "site"
        for n in range(12):  # new connections: both workers get some
            response = httpx.get(f"{base}/media/media/photo.jpg?w={40 + n}", timeout=10)
            assert response.status_code == 200
            assert images.decode(response.content).width == 40 + n


def test_gunicorn_preload_serves_images_in_every_worker(tmp_path: Path) -> None:
    serve_under_gunicorn(tmp_path, warm=False)


def test_gunicorn_preload_after_the_master_served(tmp_path: Path) -> None:
    serve_under_gunicorn(tmp_path, warm=True)


TWO_STORES = """
from imgproxy import ImageProxy, Settings
from imgproxy.wsgi import ImageProxyMiddleware


def site(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"site"]


stores = {{name: {{"kind": "fs", "root": root, "approved": True}} for name, root in {roots!r}}}
settings = Settings.from_mapping({{"stores": stores}}, env={{}})
application = ImageProxyMiddleware(site, ImageProxy(settings), prefix="/media")
"""


def _ask(port: int, target: str) -> tuple[int, bytes]:
    """One request with `target` as its request line's target, sent as is on a raw socket."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: pics\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_an_absolute_form_target_is_routed_by_its_path_alone(tmp_path: Path) -> None:
    """`GET http://pics/media/media/photo.jpg` (absolute-form, RFC 9112 §3.2.2) under
    gunicorn: its RAW_URI holds the scheme and host, which must pick no store; every
    absolute-form request answers as its origin-form path does, from many clients at once."""
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    roots = [("media", tmp_path / "media"), ("other", tmp_path / "other")]
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "photo.jpg").write_bytes(images.jpeg((400, 300)))
    # What the host part picked before: store `other`, its file media/photo.jpg.
    (tmp_path / "other" / "media").mkdir(parents=True)
    (tmp_path / "other" / "media" / "photo.jpg").write_bytes(images.jpeg((64, 64)))
    app = TWO_STORES.format(roots=[(name, str(root)) for name, root in roots])
    (tmp_path / "two_stores.py").write_text(app)
    port = free_port()
    command = [gunicorn, "-w", "2", "-b", f"127.0.0.1:{port}", "two_stores:application"]
    paths = ["/media/media/photo.jpg?w=40", "/media/photo.jpg", "/media/other/media/photo.jpg"]
    hosts = ["pics", "other", "media", "127.0.0.1"]
    with running(command, port, "gunicorn", cwd=str(tmp_path)):
        expected = {path: _ask(port, path) for path in paths}
        assert expected[paths[0]][0] == 200
        assert images.decode(expected[paths[0]][1]).width == 40
        assert expected[paths[1]][0] == 404  # store "photo.jpg": none
        assert expected[paths[2]][0] == 200
        targets = [
            (path, f"{scheme}://{host}{path}")
            for path in paths
            for host in hosts
            for scheme in ("http", "HTTPS")
        ]
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda pair: _ask(port, pair[1]), targets))
    wrong = [
        (target, status)
        for (path, target), (status, body) in zip(targets, answers, strict=True)
        if (status, body) != expected[path]
    ]
    assert wrong == []


BUDGETED = """
from imgproxy import ImageProxy, Settings
from imgproxy.wsgi import ImageProxyMiddleware


def site(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"site"]


settings = Settings.from_mapping(
    {{
        "stores": {{"media": {{"kind": "fs", "root": {root!r}, "approved": True}}}},
        "limits": {{"inflight_bytes": {budget}}},
        "cache": {{"memory_bytes": {budget}}},
    }},
    env={{}},
)
application = ImageProxyMiddleware(site, ImageProxy(settings), prefix="/media")
"""


def test_threads_writing_to_clients_that_never_read_hold_no_more_than_the_budget(
    tmp_path: Path,
) -> None:
    """16 clients ask gunicorn's threads at once for distinct 4 MB renditions (noise as PNG)
    and read nothing: each thread held its whole rendition past the budget (+85 MiB under an
    8 MiB budget and tier), where the ASGI app counts a body being sent. Now the WSGI edge
    counts it too, until the server closes the body; once the clients leave, renders run."""
    from PIL import Image

    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    folder = tmp_path / "media"
    folder.mkdir()
    side = (1400, 1000)
    noise = Image.frombytes("RGB", side, os.urandom(side[0] * side[1] * 3))
    noise.save(folder / "noise.png", compress_level=1)
    budget = 8 * 2**20
    (tmp_path / "budgeted.py").write_text(BUDGETED.format(root=str(folder), budget=budget))
    port = free_port()
    threads = ["-k", "gthread", "--threads", "32", "-w", "1"]
    command = [gunicorn, *threads, "-b", f"127.0.0.1:{port}", "budgeted:application"]
    with running(command, port, "gunicorn", cwd=str(tmp_path)) as master:
        base = f"http://127.0.0.1:{port}/media/media/noise.png"
        first = httpx.get(base + "?w=1399&fm=png", timeout=30)
        assert first.status_code == 200 and len(first.content) > 3_000_000
        (worker,) = psutil.Process(master.pid).children()
        before = worker.memory_info().rss
        with sampled_rss(worker) as peak:
            targets = [f"/media/media/noise.png?w={1398 - n}&fm=png" for n in range(16)]
            slow = never_reading(port, targets)
            time.sleep(6)  # every render done, before: each body held by its thread
        for conn in slow:
            conn.close()
        after = httpx.get(base + "?w=300&fm=png", timeout=60)
        assert after.status_code == 200
    grown = peak[0] - before
    # Measured 19-40 MiB (one render's own working memory, and 32 threads' malloc arenas,
    # which the library leaves to the host); the old code held 85 MiB and more.
    assert grown < budget * 2 + 32 * 2**20, f"{grown / 2**20:.0f} MiB"


def test_a_body_counted_for_sending_is_given_back_when_start_response_fails(
    tmp_path: Path,
) -> None:
    """A body over 256 KiB counts in limits.inflight_bytes until the server closes it; a
    start_response that raised (a server refusing the headers, a client gone) got no body to
    close, and the count stayed taken while anything kept the error's traceback (only the
    count's frame going away gave it back, and then on the server's thread, not the loop)."""
    folder = tmp_path / "media"
    folder.mkdir()
    noise = Image.frombytes("RGB", (700, 500), os.urandom(700 * 500 * 3))
    noise.save(folder / "photo.png", compress_level=1)  # a rendition of ~1 MB: over 256 KiB
    budget = 8 * 2**20
    settings = Settings.from_mapping(
        {
            "stores": {"media": {"kind": "fs", "root": str(folder), "approved": True}},
            "limits": {"inflight_bytes": budget},
        },
        env={},
    )
    app = ImageProxyMiddleware(lambda environ, start: [], ImageProxy(settings), prefix="/img")
    environ: dict[str, object] = {}
    wsgiref.util.setup_testing_defaults(environ)
    environ.update(PATH_INFO="/img/media/photo.png", QUERY_STRING="fm=png&q=100")

    def refuse(status: str, headers: list[tuple[str, str]]) -> None:
        raise ConnectionResetError("the client left")

    kept = []  # as a server that logs the error keeps its traceback, and the frames with it
    for _ in range(3):
        with pytest.raises(ConnectionResetError) as caught:
            app(environ, refuse)
        kept.append(caught)
    executor = app.services.executor

    def all_free() -> bool:
        return asyncio.run_coroutine_threadsafe(_all_free(executor), app.loop).result()

    deadline = time.monotonic() + 5
    while not all_free():
        assert time.monotonic() < deadline, "the sent bodies' count was never given back"
        time.sleep(0.05)


async def _all_free(executor: RenderExecutor) -> bool:
    """Whether the whole budget is free (taken and given back at once, on the loop)."""
    if not executor.take_now(executor.budget):
        return False
    executor.give_back(executor.budget)
    return True
