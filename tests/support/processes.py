"""Real service processes for the tests, on free loopback ports in temp folders: redis-server,
nginx, Varnish, and imgproxy itself. A missing binary skips loudly, or fails when CI requires it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support import REQUIRE_SERVICES, need_binary

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serving_children(pid: int) -> list[psutil.Process]:
    """The live processes under `pid` that serve: its children, but for multiprocessing's fork
    server (whose children, `serve`'s workers, are counted instead) and resource tracker."""
    found = []
    for child in psutil.Process(pid).children():
        try:
            command = " ".join(child.cmdline())
            forked = child.children() if "multiprocessing.forkserver" in command else None
        except psutil.Error:  # exited, or a zombie not reaped yet
            continue
        if forked is not None:
            found += [worker for worker in forked if worker.is_running()]
        elif "resource_tracker" not in command:
            found.append(child)
    return found


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read().decode() if process.stdout else ""
                raise RuntimeError(f"{what} did not start:\n{output[-3000:]}") from None
            time.sleep(0.05)


@contextmanager
def running(
    command: list[str], port: int, what: str, **kwargs: object
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
    try:
        wait_for_port(port, process, what)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stdout:
            process.stdout.close()


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    binary = need_binary("redis-server")
    port = free_port()
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(folder),
    ]
    with running(command, port, "redis-server"):
        yield f"redis://127.0.0.1:{port}/0"


# The shipped config/nginx.conf is tested as shipped: only these strings are replaced, to
# point its addresses and folders at the test's. Nothing else in the file changes.
SITE_SUBSTITUTIONS = (
    "server 127.0.0.1:8080;",  # imgproxy (the upstream)
    "listen 80 default_server;",  # the edge server, which caches
    "listen 127.0.0.1:8081;",  # the origin server, which uses X-Accel-Redirect
    "/srv/imgproxy/var/cache/",  # imgproxy's cache.disk_path
    "/var/lib/nginx/imgproxy",  # nginx's proxy_cache_path
)


@dataclass(frozen=True, slots=True)
class NginxSite:
    edge: str  # base URL of the server that caches in nginx
    origin: str  # base URL of the server that sends disk hits with X-Accel-Redirect
    cache: Path  # the edge's proxy_cache folder
    error_log: Path  # written at `info` level, so it shows "cache lock timeout"


def nginx_site(
    upstream_port: int, edge_port: int, origin_port: int, cache_dir: Path, nginx_cache: Path
) -> str:
    """The shipped config/nginx.conf, with SITE_SUBSTITUTIONS pointed at the test's."""
    site = (ROOT / "config" / "nginx.conf").read_text()
    values = (
        f"server 127.0.0.1:{upstream_port};",
        f"listen 127.0.0.1:{edge_port};",
        f"listen 127.0.0.1:{origin_port};",
        f"{cache_dir}/",
        str(nginx_cache),
    )
    for old, new in zip(SITE_SUBSTITUTIONS, values, strict=True):
        assert site.count(old) == 1, f"config/nginx.conf no longer has one {old!r}"
        site = site.replace(old, new)
    return site


def into_server(site: str, listen: str, extra: str) -> str:
    """`extra` appended inside the server block that has the `listen` line."""
    start = site.rindex("server {", 0, site.index(listen))
    depth = 0
    for at in range(start, len(site)):
        depth += {"{": 1, "}": -1}.get(site[at], 0)
        if site[at] == "}" and depth == 0:
            return site[:at] + extra + "\n" + site[at:]
    raise ValueError("unbalanced braces in the nginx site")


@contextmanager
def nginx_servers(
    folder: Path,
    upstream_port: int,
    cache_dir: Path,
    *,
    edge_extra: str = "",
    origin_extra: str = "",
) -> Iterator[NginxSite]:
    """The shipped site in a private nginx; the extras add locations to either server."""
    binary = need_binary("nginx")
    edge_port, origin_port = free_port(), free_port()
    nginx_cache = folder / "nginx-cache"
    site = nginx_site(upstream_port, edge_port, origin_port, cache_dir, nginx_cache)
    site = into_server(site, f"listen 127.0.0.1:{edge_port};", edge_extra)
    site = into_server(site, f"listen 127.0.0.1:{origin_port};", origin_extra)
    user = "user root;\n" if os.geteuid() == 0 else ""
    (folder / "logs").mkdir(exist_ok=True)
    error_log = folder / "logs" / "error.log"
    (folder / "nginx.conf").write_text(
        f"{user}worker_processes 1;\ndaemon off;\nerror_log {error_log} info;\n"
        f"pid {folder}/nginx.pid;\nevents {{ worker_connections 512; }}\n"
        f"http {{\n  include /etc/nginx/mime.types;\n  access_log off;\n  sendfile on;\n"
        f"  client_body_temp_path {folder}/tmp-body;\n  proxy_temp_path {folder}/tmp-proxy;\n"
        f"  fastcgi_temp_path {folder}/tmp-fcgi;\n  uwsgi_temp_path {folder}/tmp-uwsgi;\n"
        f"  scgi_temp_path {folder}/tmp-scgi;\n{site}\n}}\n"
    )
    command = [binary, "-p", str(folder), "-c", str(folder / "nginx.conf")]
    with running(command, edge_port, "nginx") as process:
        wait_for_port(origin_port, process, "nginx")
        yield NginxSite(
            f"http://127.0.0.1:{edge_port}",
            f"http://127.0.0.1:{origin_port}",
            nginx_cache,
            error_log,
        )


@contextmanager
def nginx(
    folder: Path, upstream_port: int, cache_dir: Path, *, cache: bool = True, extra: str = ""
) -> Iterator[str]:
    """The base URL of one server of the shipped site: the edge, which caches in nginx, or
    with cache=False the origin, which sends disk hits with X-Accel-Redirect; `extra` adds
    locations to that server's block."""
    extras = {"edge_extra": extra} if cache else {"origin_extra": extra}
    with nginx_servers(folder, upstream_port, cache_dir, **extras) as site:
        yield site.edge if cache else site.origin


# The shipped config/varnish.vcl is tested as shipped: only its backend's port is replaced.
VCL_BACKEND_PORT = '.port = "8080";'


def varnish_vcl(backend_port: int) -> str:
    """The shipped config/varnish.vcl, its backend pointed at imgproxy's test port."""
    vcl = (ROOT / "config" / "varnish.vcl").read_text()
    assert vcl.count(VCL_BACKEND_PORT) == 1, f"varnish.vcl no longer has one {VCL_BACKEND_PORT!r}"
    return vcl.replace(VCL_BACKEND_PORT, f'.port = "{backend_port}";')


@contextmanager
def varnish(folder: Path, backend_port: int, *, port: int = 0) -> Iterator[str]:
    """varnishd in the foreground with the shipped VCL in front of `backend_port`, on `port`
    (default: a free one); yields its base URL. No admin port:
    nothing here needs varnishadm. Skips loudly without varnishd or a vmod the VCL imports
    (Debian: varnish, varnish-modules), or fails when CI requires them."""
    binary = need_binary("varnishd")
    port = port or free_port()
    (folder / "varnish.vcl").write_text(varnish_vcl(backend_port))
    # As root, varnishd reads the VCL as its own `varnish` user, which cannot enter pytest's
    # private temp root: no privilege separation here.
    options = ["-n", str(folder / "varnish"), *(["-j", "none"] if os.geteuid() == 0 else [])]
    compiled = subprocess.run(
        [binary, "-C", "-f", str(folder / "varnish.vcl"), *options],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "Could not find VMOD" in compiled.stderr:
        message = f"*** a vmod is not installed (varnish-modules?): {compiled.stderr.strip()} ***"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (IMGPROXY_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    assert compiled.returncode == 0, compiled.stderr
    command = [
        binary,
        "-F",
        *options,
        "-a",
        f"127.0.0.1:{port}",
        "-f",
        str(folder / "varnish.vcl"),
        "-T",
        "none",
        "-s",
        "malloc,64m",
    ]
    with running(command, port, "varnishd"):
        yield f"http://127.0.0.1:{port}"


@dataclass
class Served:
    """A running `imgproxy serve`: its URL and process; its stderr once it has stopped."""

    url: str
    process: subprocess.Popen[bytes]
    stderr: str = ""


@contextmanager
def served(
    config: Path, *args: str, command: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> Iterator[Served]:
    """`imgproxy serve --config CONFIG --port P *args` (or `command` instead of this venv's
    `python -m imgproxy`), ready once /healthz answers; stopped with SIGTERM after."""
    port = free_port()
    program = list(command) or [sys.executable, "-m", "imgproxy"]
    process = subprocess.Popen(
        [*program, "serve", "--config", str(config), "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    server = Served(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(server.url + "/healthz")
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=30)
        server.stderr = errors.decode()


@contextmanager
def imgproxy_process(config: Path, **env: str) -> Iterator[str]:
    with served(config, env=env) as server:
        yield server.url


def postgres_binary(name: str) -> str:
    """PostgreSQL's own tools live outside PATH on Debian (/usr/lib/postgresql/N/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else need_binary(name)


@dataclass
class Postgres:
    """A running PostgreSQL server that a test may stop and start again (a restart)."""

    dsn: str
    command: list[str]  # pg_ctl -D DATA, as the data folder's owner

    def stop(self) -> None:
        subprocess.run([*self.command, "-m", "fast", "stop"], capture_output=True, timeout=60)

    def start(self) -> None:
        subprocess.run([*self.command, "-w", "start"], check=True, capture_output=True, timeout=120)


@contextmanager
def postgres(folder: Path) -> Iterator[Postgres]:
    initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
    port = free_port()
    as_owner: list[str] = []
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: use the postgres account, in a folder it can
        # reach (pytest's own temp root is private to root).
        need_binary("runuser")
        as_owner = ["runuser", "-u", "postgres", "--"]
        folder = Path(tempfile.mkdtemp(prefix="imgproxy-pg-"))
        shutil.chown(folder, "postgres")
    data = folder / "data"
    subprocess.run(
        [*as_owner, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    log = folder / "postgres.log"
    command = [*as_owner, pg_ctl, "-D", str(data), "-l", str(log), "-o", options]
    server = Postgres(f"postgresql://postgres@127.0.0.1:{port}/postgres", command)
    server.start()
    try:
        yield server
    finally:
        subprocess.run([*command, "-m", "immediate", "stop"], capture_output=True, timeout=60)


@contextmanager
def postgres_server(folder: Path) -> Iterator[str]:
    with postgres(folder) as server:
        yield server.dsn


def peak_rss_growth(script: str, *args: str, timeout: float = 180) -> int:
    """Run `script` (python -c) in a fresh process that prints, last, how many bytes its peak
    RSS grew by. glibc is told to give each large buffer back when it is freed, so the peak
    is what was held at once, not what per-thread arenas keep for reuse."""
    ran = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"},
    )
    return int(ran.stdout.split()[-1])


def peak_rss(process: psutil.Process) -> int:
    """The process's peak RSS (VmHWM), or its current RSS where /proc has no peak."""
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return int(process.memory_info().rss)


@contextmanager
def sampled_rss(process: psutil.Process) -> Iterator[list[int]]:
    """[the highest RSS seen], sampled every 10 ms while the block runs: a peak since a
    moment of the test's choosing, which VmHWM (since the process began) cannot give."""
    peak = [int(process.memory_info().rss)]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], int(process.memory_info().rss))
            done.wait(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
