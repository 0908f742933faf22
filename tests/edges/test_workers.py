"""`imgproxy serve --workers 2` (SPEC §11 fair admission): both workers render under load, a
worker that dies is replaced, and SIGTERM stops them all; a second server on the port refuses
to start, and workers that keep failing at start stop the server."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support import images, need_binary
from tests.support.processes import free_port, running, serving_children


def workers_of(process: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The live server processes (the fork server and resource tracker left out)."""
    return serving_children(process.pid)


def listening(worker: psutil.Process, port: int) -> bool:
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in worker.net_connections()
    )


def both_listening(server: subprocess.Popen[bytes], port: int) -> list[psutil.Process]:
    """The two workers, once each has its own socket listening on the port."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = workers_of(server)
        if len(workers) == 2 and all(listening(w, port) for w in workers):
            return workers
        time.sleep(0.05)
    raise AssertionError("two listening workers did not start")


def two_workers(tmp_path: Path, size: tuple[int, int], settings: str = "") -> tuple[list[str], int]:
    """`imgproxy serve --workers 2` on a free port, its store `media` holding one JPEG,
    photo.jpg, of `size`; `settings` go before the store's table. The command and port."""
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(images.jpeg(size))
    config = tmp_path / "imgproxy.toml"
    config.write_text(
        f'{settings}[stores.media]\nkind = "fs"\nroot = "{folder}"\napproved = true\n'
    )
    port = free_port()
    command = [sys.executable, "-m", "imgproxy", "serve", "--config", str(config), "--workers"]
    return [*command, "2", "--port", str(port)], port


def cpu(worker: psutil.Process) -> float:
    times = worker.cpu_times()
    return float(times.user + times.system)


def test_two_workers_share_cold_renders_and_survive_a_crash(tmp_path: Path) -> None:
    command, port = two_workers(tmp_path, (1600, 1200), "[limits]\nrender_concurrency = 1\n")
    with running(command, port, "imgproxy") as server:
        base = f"http://127.0.0.1:{port}"
        workers = both_listening(server, port)
        time.sleep(0.5)  # both event loops running

        # Keep-alive connections opened one after another, as a proxy's pool opens them:
        # with one shared accept socket, one worker took all of them in half the runs here,
        # and most of them in the others.
        held = []
        for _ in range(60):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(1000).startswith(b"HTTP/1.1 200")
            held.append(sock)
        share = [
            sum(c.status == psutil.CONN_ESTABLISHED for c in w.net_connections()) for w in workers
        ]
        for sock in held:
            sock.close()
        assert sum(share) == 60 and min(share) >= 15, share  # binomial: below 15 is ~1e-4

        before = [cpu(w) for w in workers]

        # wrk opens all its keep-alive connections at once, as a load balancer's pool does:
        # each connection then renders unique URLs in turn.
        script = tmp_path / "unique.lua"
        script.write_text(
            "n = 0\nrequest = function()\n  n = n + 1\n"
            '  return wrk.format("GET", "/media/photo.jpg?w=" .. (100 + n))\nend\n'
        )
        wrk = need_binary("wrk")
        subprocess.run(
            [wrk, "-t2", "-c24", "-d3s", "-s", str(script), base], check=True, capture_output=True
        )
        spent = [cpu(w) - b for w, b in zip(workers, before, strict=True)]
        assert min(spent) > 0.1 * sum(spent), spent  # both rendered (binomial: ~1e-5 to fail)

        workers[0].kill()  # a crashed worker is replaced
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            alive = workers_of(server)
            if len(alive) == 2 and workers[0].pid not in {w.pid for w in alive}:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the killed worker was not replaced")
        for _ in range(20):
            assert httpx.get(f"{base}/media/photo.jpg?w=99").status_code == 200

        survivors = workers_of(server)
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
        gone, alive = psutil.wait_procs(survivors, timeout=10)
        assert alive == [] and len(gone) == 2


def test_a_port_in_use_fails_at_once(tmp_path: Path) -> None:
    config = tmp_path / "imgproxy.toml"
    config.write_text("")
    with running(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port := free_port())],
        port,
        "http.server",
    ):
        serve = [sys.executable, "-m", "imgproxy", "serve", "--config", str(config)]
        result = subprocess.run(
            [*serve, "--workers", "2", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ},
        )
    assert result.returncode != 0
    assert f"address already in use: 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize(
    ("first", "second", "host"),
    [(2, 2, "127.0.0.1"), (1, 2, "127.0.0.1"), (2, 1, "127.0.0.1"), (2, 2, "0.0.0.0")],
)
def test_a_second_server_on_the_port_refuses_to_start(
    tmp_path: Path, first: int, second: int, host: str
) -> None:
    """Two multi-worker servers on one port both started, and the kernel split the
    connections between them (SO_REUSEPORT): an old instance with other keys answered half."""
    config = tmp_path / "imgproxy.toml"
    config.write_text("[security]\nallow_unsigned = true\n")  # 0.0.0.0 with no keys
    port = free_port()
    serve = [sys.executable, "-m", "imgproxy", "serve", "--config", str(config)]
    with running([*serve, "--workers", str(first), "--port", str(port)], port, "imgproxy") as one:
        if first > 1:
            both_listening(one, port)
        second_serve = [*serve, "--workers", str(second), "--host", host, "--port", str(port)]
        result = subprocess.run(second_serve, capture_output=True, text=True, timeout=30)
        assert result.returncode == 1, result.stderr
        assert f"imgproxy: address already in use: {host}:{port}" in result.stderr
        for _ in range(10):  # new connections: every one reaches the first server
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        assert one.poll() is None


def test_workers_failing_at_start_stop_the_server_with_the_reason(tmp_path: Path) -> None:
    """A worker that cannot start was restarted for ever, a traceback a second."""
    config = tmp_path / "imgproxy.toml"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config.write_text(f'[cache]\ndisk_path = "{blocker}/cache"\n')  # under a file: uncreatable
    serve = [sys.executable, "-m", "imgproxy", "serve", "--config", str(config), "--workers", "2"]
    started = time.monotonic()
    result = subprocess.run(
        [*serve, "--port", str(free_port())], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert time.monotonic() - started < 20
    assert f"{blocker}/cache" in result.stderr.splitlines()[-1]  # the reason, last
    assert result.stderr.count("starting another") < 3


def test_metrics_sum_every_worker(tmp_path: Path) -> None:
    """SPEC §12.2: /metrics answers for the whole server, whichever worker is asked, and
    still counts what a worker that died had counted."""
    command, port = two_workers(tmp_path, (400, 300))
    with running(command, port, "imgproxy") as server:
        base = f"http://127.0.0.1:{port}"
        both_listening(server, port)
        for n in range(30):  # a new connection each: both workers answer some
            assert httpx.get(f"{base}/media/photo.jpg?w={50 + n}").status_code == 200
        assert httpx.get(f"{base}/media/nothing.jpg").status_code == 404
        time.sleep(2.5)  # each worker flushes its counts once a second
        for _ in range(6):  # new connections: scrapes land on both workers
            text = httpx.get(f"{base}/metrics").text
            assert sample(text, 'imgproxy_requests_total{status="200"}') == 30
            assert sample(text, 'imgproxy_requests_total{status="404"}') == 1
            assert sample(text, "imgproxy_renders_total") == 30
            assert sample(text, "imgproxy_request_duration_seconds_count") >= 31
            assert sample(text, 'imgproxy_cache_misses_total{tier="memory"}') == 30
            assert "imgproxy_render_queue_depth" in text

        dead = workers_of(server)[0]
        dead.kill()  # its counts stay in the sum: no counter goes back
        deadline = time.monotonic() + 30
        while {w.pid for w in workers_of(server)} & {dead.pid} or len(workers_of(server)) < 2:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.1)
        for _ in range(6):
            text = httpx.get(f"{base}/metrics").text
            assert sample(text, 'imgproxy_requests_total{status="200"}') == 30
            assert sample(text, "imgproxy_renders_total") == 30


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


def pinned_connections(
    workers: list[psutil.Process], port: int
) -> dict[int, http.client.HTTPConnection]:
    """One keep-alive connection to each worker (the kernel picks; psutil says which)."""
    pinned: dict[int, http.client.HTTPConnection] = {}
    spare = []
    for _ in range(64):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.connect()
        assert connection.sock is not None
        mine = connection.sock.getsockname()[1]
        deadline = time.monotonic() + 5
        owner = None
        while owner is None and time.monotonic() < deadline:
            for worker in workers:
                if any(c.raddr and c.raddr.port == mine for c in worker.net_connections()):
                    owner = worker.pid
            time.sleep(0.01)
        if owner is not None and owner not in pinned:
            pinned[owner] = connection
        else:
            spare.append(connection)
        if len(pinned) == len(workers):
            break
    for connection in spare:
        connection.close()
    assert len(pinned) == len(workers), "the kernel sent every connection to one worker"
    return pinned


def test_purge_reaches_the_memory_of_every_running_worker(tmp_path: Path) -> None:
    """Without Redis, `imgproxy purge` used to clear the disk tier and say so while both
    workers went on serving the rendition from memory: now each drops it, and says how many."""
    cache = '[cache]\nmemory_bytes = 33554432\ndisk_path = "cache"\n'
    command, port = two_workers(tmp_path, (400, 300), cache)
    config = tmp_path / "imgproxy.toml"
    with running(command, port, "imgproxy") as server:
        pinned = pinned_connections(both_listening(server, port), port)

        def get(connection: http.client.HTTPConnection) -> int:
            connection.request("GET", "/media/photo.jpg?w=120")
            response = connection.getresponse()
            response.read()
            return response.status

        for connection in pinned.values():  # a render (or a disk hit), then a memory hit
            assert [get(connection), get(connection)] == [200, 200]
        purged = subprocess.run(
            [sys.executable, "-m", "imgproxy", "purge", "--config", str(config), "media/photo.jpg"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert purged.returncode == 0, purged.stderr
        reached = re.search(r"(\d+) from the memory of 2 running worker\(s\)", purged.stdout)
        assert reached and int(reached[1]) >= 2, purged.stdout  # its rendition, each of them
        for connection in pinned.values():  # on the same connections, the same workers
            assert get(connection) == 200
            connection.close()
        time.sleep(2.5)  # each worker flushes its counts once a second
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        # The warm-up's second requests were the only memory hits: after the purge both
        # workers missed in memory (one rendered again, the other found that on disk).
        assert sample(text, 'imgproxy_cache_hits_total{tier="memory"}') == 2
        assert sample(text, 'imgproxy_cache_misses_total{tier="memory"}') == 4


def test_the_supervisor_holds_neither_the_app_nor_uvicorn(tmp_path: Path) -> None:
    """The supervisor serves nothing: it validated the stores itself, importing the app,
    Pillow and uvicorn, and held 35 MiB RSS beside workers of 30. A child validates now."""
    command, port = two_workers(tmp_path, (40, 30))
    with running(command, port, "serve") as server:
        workers = both_listening(server, port)
        assert httpx.get(f"http://127.0.0.1:{port}/media/photo.jpg?w=20").status_code == 200

        def mapped(pid: int) -> str:
            return Path(f"/proc/{pid}/maps").read_text()

        for library in ("PIL/_imaging", "uvloop/loop", "httptools/parser"):
            assert library in mapped(workers[0].pid)
            assert library not in mapped(server.pid), library


def test_sighup_reloads_worker_by_worker_without_dropping_a_request(tmp_path: Path) -> None:
    """SIGHUP did nothing useful (the supervisor died of it): a config change needed a
    restart, which drops what is in flight. Now a new preset serves after it, a broken file
    is refused, and a steady load sees no failure through both."""
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(images.jpeg((400, 300)))
    config = tmp_path / "imgproxy.toml"
    store = f'[stores.media]\nkind = "fs"\nroot = "{folder}"\napproved = true\n'
    config.write_text(f"[security]\nallow_unsigned_presets = true\n{store}")
    port = free_port()
    command = [sys.executable, "-m", "imgproxy", "serve", "--config", str(config), "--workers"]
    server = subprocess.Popen(
        [*command, "2", "--port", str(port)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        both_listening(server, port)
        statuses: list[int | str] = []
        done = threading.Event()

        def load() -> None:  # keep-alive clients, as a proxy's pool
            with httpx.Client(base_url=base) as client:
                while not done.is_set():
                    try:
                        statuses.append(client.get("/media/photo.jpg?w=64").status_code)
                    except httpx.HTTPError as exc:
                        statuses.append(repr(exc))
                    time.sleep(0.01)

        clients = [threading.Thread(target=load) for _ in range(4)]
        for client in clients:
            client.start()
        assert httpx.get(f"{base}/media/photo.jpg?p=tiny").status_code == 400  # no such preset
        old = {w.pid for w in workers_of(server)}
        config.write_text(
            f'[security]\nallow_unsigned_presets = true\n[presets]\ntiny = "w=20"\n{store}'
        )
        server.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while not old.isdisjoint(w.pid for w in workers_of(server)):
            assert time.monotonic() < deadline, "the workers were not replaced"
            time.sleep(0.1)
        for _ in range(6):  # new connections: both new workers know the preset
            assert httpx.get(f"{base}/media/photo.jpg?p=tiny").status_code == 200

        renewed = {w.pid for w in workers_of(server)}
        (tmp_path / "a-file").write_text("")
        for broken in ("[presets\n", f'[cache]\ndisk_path = "{tmp_path}/a-file/cache"\n{store}'):
            config.write_text(broken)  # refused (a store only a child builds), the old one stays
            server.send_signal(signal.SIGHUP)
            time.sleep(2)
            assert {w.pid for w in workers_of(server)} == renewed
            for _ in range(6):
                assert httpx.get(f"{base}/media/photo.jpg?p=tiny").status_code == 200
        done.set()
        for client in clients:
            client.join(10)
        assert len(statuses) > 100 and set(statuses) == {200}, [s for s in statuses if s != 200]
    finally:
        server.send_signal(signal.SIGTERM)
        _, errors = server.communicate(timeout=60)
    stderr = errors.decode()
    assert "SIGHUP: configuration reloaded; 2 workers replaced" in stderr
    refused = "SIGHUP: the configuration is refused, the running one stays: "
    assert stderr.count(refused) == 2
    assert f"{refused}cache.disk_path: cannot create {tmp_path}/a-file/cache" in stderr
    assert server.returncode == 0, stderr[-3000:]
