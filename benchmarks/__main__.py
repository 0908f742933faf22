"""`make bench`: imgproxy side by side with its baselines, in one run, medians of rounds.

(a) cold renders (6 MP and 24 MP JPEG -> 300 px JPEG/WebP) through the HTTP server vs raw
    Pillow best practice in-process (thumbnail(): draft + reducing resize), wall and CPU;
(b) memory-cache hits vs a bare Starlette app returning the same bytes (wrk, req/s);
(c) 304s per second (wrk);
(d) disk-tier hits through uvicorn, and through nginx with X-Accel-Redirect, vs nginx
    serving the same file statically (wrk);
(e) the WSGI middleware, and a generic ASGI->WSGI bridge (a2wsgi) around the same app, vs
    calling the ASGI app: per memory-cache hit, in-process, so no server's cost is counted.
Rounds alternate between the contenders, because these machines drift ±20-30 % a minute.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.services import running  # noqa: E402 - the same process harness as the tests

DATA = ROOT / "benchmarks" / "data"
RESULTS = ROOT / "benchmarks" / "results"
SOURCES = {"6MP": (3000, 2000), "24MP": (6000, 4000)}
QUALITY = {"jpeg": 82, "webp": 80}


def make_sources() -> dict[str, Path]:
    """Photo-like JPEGs: a real demo photo scaled up, with grain so they do not compress
    (and decode) unrealistically fast."""
    DATA.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, size in SOURCES.items():
        path = DATA / f"photo-{name}.jpg"
        if not path.exists():
            base = Image.open(ROOT / "examples" / "media" / "coffee.png").convert("RGB")
            image = base.resize(size, Image.Resampling.BICUBIC)
            grain = Image.effect_noise(size, 24).convert("RGB")
            Image.blend(image, grain, 0.12).save(path, "JPEG", quality=90)
        paths[name] = path
    return paths


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def imgproxy_server(config: Path, port: int) -> Iterator[psutil.Process]:
    """`imgproxy serve` on `port`, as the tests start it, with its process for CPU times."""
    command = [sys.executable, "-m", "imgproxy", "serve", "--config", str(config)]
    with running([*command, "--port", str(port)], port, "imgproxy") as process:
        yield psutil.Process(process.pid)


def write_config(folder: Path, memory_bytes: int) -> Path:
    config = DATA / f"bench-{memory_bytes}.toml"
    config.write_text(
        f"[limits]\nrender_concurrency = 1\n[cache]\nmemory_bytes = {memory_bytes}\n"
        f'[stores.bench]\nkind = "fs"\nroot = "{folder}"\napproved = true\n'
    )
    return config


def pillow_thumbnail(path: Path, fmt: str) -> bytes:
    """Raw Pillow best practice: read, open, thumbnail() (draft + reducing_gap), encode."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail((300, 300), Image.Resampling.LANCZOS, reducing_gap=2.0)
        out = io.BytesIO()
        image.save(out, fmt.upper(), quality=QUALITY[fmt])
        return out.getvalue()


def fetch(http: httpx.Client, url: str) -> None:
    http.get(url).raise_for_status()


def time_calls(call: Callable[[], object], n: int, cpu: Callable[[], float]) -> tuple[float, float]:
    """Median wall seconds per call and mean CPU seconds per call."""
    walls = []
    cpu_before = cpu()
    for _ in range(n):
        start = time.perf_counter()
        call()
        walls.append(time.perf_counter() - start)
    return statistics.median(walls), (cpu() - cpu_before) / n


def cold_renders(paths: dict[str, Path], rounds: int, n: int) -> list[dict[str, object]]:
    port = free_port()
    rows: list[dict[str, object]] = []
    with imgproxy_server(write_config(DATA, 0), port) as proc, httpx.Client(timeout=60) as http:

        def server_cpu() -> float:
            times = proc.cpu_times()
            return float(times.user + times.system)

        def own_cpu() -> float:
            return time.process_time()

        for name, path in paths.items():
            for fmt in ("jpeg", "webp"):
                url = f"http://127.0.0.1:{port}/bench/{path.name}?w=300&h=300&fm={fmt}"
                assert http.get(url).status_code == 200  # warm the probe and the code paths
                pillow_thumbnail(path, fmt)
                ours_wall, ours_cpu, raw_wall, raw_cpu = [], [], [], []
                ours = functools.partial(fetch, http, url)
                raw = functools.partial(pillow_thumbnail, path, fmt)
                for _ in range(rounds):
                    wall, cpu = time_calls(ours, n, server_cpu)
                    ours_wall.append(wall)
                    ours_cpu.append(cpu)
                    wall, cpu = time_calls(raw, n, own_cpu)
                    raw_wall.append(wall)
                    raw_cpu.append(cpu)
                ms = {
                    "imgproxy_ms": 1000 * statistics.median(ours_wall),
                    "pillow_ms": 1000 * statistics.median(raw_wall),
                    "imgproxy_cpu_ms": 1000 * statistics.median(ours_cpu),
                    "pillow_cpu_ms": 1000 * statistics.median(raw_cpu),
                }
                row: dict[str, object] = {
                    "source": name,
                    "format": fmt,
                    **ms,
                    "wall_ratio": ms["imgproxy_ms"] / ms["pillow_ms"],
                    "cpu_ratio": ms["imgproxy_cpu_ms"] / ms["pillow_cpu_ms"],
                }
                rows.append(row)
                print_row(row)
    return rows


def wrk(url: str, seconds: int, headers: dict[str, str] | None = None) -> float:
    command = ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not match or "Non-2xx" in output:
        raise RuntimeError(f"wrk failed:\n{output}")
    return float(match.group(1))


def throughput(paths: dict[str, Path], rounds: int, seconds: int) -> list[dict[str, object]]:
    url_path = f"/bench/{paths['6MP'].name}?w=300&h=300&fm=webp"
    port, minimal_port = free_port(), free_port()
    with imgproxy_server(write_config(DATA, 64 * 1024 * 1024), port):
        first = httpx.get(f"http://127.0.0.1:{port}{url_path}")
        body = DATA / "hit-body.webp"
        body.write_bytes(first.content)
        etag = first.headers["etag"]
        minimal = [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.minimal_app:app",
            "--port",
            str(minimal_port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        env = {"BENCH_BODY": str(body), "PYTHONPATH": str(ROOT)}
        with running(minimal, minimal_port, "minimal app", env={**os.environ, **env}):
            hits, bare, not_modified = [], [], []
            for _ in range(rounds):
                hits.append(wrk(f"http://127.0.0.1:{port}{url_path}", seconds))
                bare.append(wrk(f"http://127.0.0.1:{minimal_port}{url_path}", seconds))
                not_modified.append(
                    wrk(f"http://127.0.0.1:{port}{url_path}", seconds, {"If-None-Match": etag})
                )
    rows: list[dict[str, object]] = [
        {
            "case": "memory-cache hit (20 KiB-class webp)",
            "imgproxy_rps": statistics.median(hits),
            "starlette_rps": statistics.median(bare),
            "ratio": statistics.median(hits) / statistics.median(bare),
        },
        {
            "case": "304 Not Modified",
            "imgproxy_rps": statistics.median(not_modified),
            "starlette_rps": statistics.median(bare),
            "ratio": statistics.median(not_modified) / statistics.median(bare),
        },
    ]
    for row in rows:
        print_row(row)
    return rows


def disk_hits(paths: dict[str, Path], rounds: int, seconds: int) -> list[dict[str, object]]:
    """Memory tier off, so every hit is a disk hit; nginx runs the shipped config/nginx.conf."""
    from tests.services import nginx

    disk = DATA / "disk-cache"
    shutil.rmtree(disk, ignore_errors=True)
    config = DATA / "bench-disk.toml"
    config.write_text(
        f'[limits]\nrender_concurrency = 1\n[cache]\nmemory_bytes = 0\ndisk_path = "{disk}"\n'
        f'accel_redirect = "/_accel/"\n'
        f'[stores.bench]\nkind = "fs"\nroot = "{DATA}"\napproved = true\n'
    )
    plain = DATA / "bench-disk-plain.toml"
    plain.write_text(config.read_text().replace('accel_redirect = "/_accel/"\n', ""))
    url_path = f"/bench/{paths['6MP'].name}?w=300&h=300&fm=webp"
    accel_port, plain_port = free_port(), free_port()
    static = f"\n    location /static/ {{ alias {disk}/; }}\n"
    folder = DATA / "nginx"
    folder.mkdir(exist_ok=True)
    with imgproxy_server(config, accel_port), imgproxy_server(plain, plain_port):
        httpx.get(f"http://127.0.0.1:{plain_port}{url_path}").raise_for_status()
        cached = next(p for p in disk.rglob("*.webp"))
        with nginx(folder, accel_port, disk, cache=False, extra=static) as front:
            static_url = f"{front}/static/{cached.relative_to(disk)}"
            httpx.get(static_url).raise_for_status()
            accel = httpx.get(front + url_path)
            assert accel.content == cached.read_bytes(), "nginx did not send the cached file"
            uvicorn_rps, accel_rps, static_rps = [], [], []
            for _ in range(rounds):
                uvicorn_rps.append(wrk(f"http://127.0.0.1:{plain_port}{url_path}", seconds))
                accel_rps.append(wrk(front + url_path, seconds))
                static_rps.append(wrk(static_url, seconds))
    static_median = statistics.median(static_rps)
    rows: list[dict[str, object]] = [
        {
            "case": "disk hit via uvicorn",
            "imgproxy_rps": statistics.median(uvicorn_rps),
            "nginx_static_rps": static_median,
            "ratio": statistics.median(uvicorn_rps) / static_median,
        },
        {
            "case": "disk hit via nginx X-Accel-Redirect",
            "imgproxy_rps": statistics.median(accel_rps),
            "nginx_static_rps": static_median,
            "ratio": statistics.median(accel_rps) / static_median,
        },
    ]
    for row in rows:
        print_row(row)
    return rows


def wsgi_bridge(paths: dict[str, Path], rounds: int, calls: int = 3000) -> list[dict[str, object]]:
    import asyncio

    from a2wsgi import ASGIMiddleware

    from imgproxy import ImageProxy, Settings
    from imgproxy.wsgi import ImageProxyMiddleware

    settings = Settings.from_mapping(
        {"stores": {"bench": {"kind": "fs", "root": str(DATA), "approved": True}}}, env={}
    )
    proxy = ImageProxy(settings)
    target, query = f"/media/bench/{paths['6MP'].name}", "w=300&h=300&fm=webp"

    def not_found(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        start_response("404 Not Found", [])
        return [b""]

    wsgi = ImageProxyMiddleware(not_found, proxy, prefix="/media")
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": target,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "HTTP_ACCEPT": "*/*",
    }
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": target,
        "raw_path": target.encode(),
        "root_path": "/media",
        "query_string": query.encode(),
        "headers": [(b"accept", b"*/*")],
    }

    generic = ASGIMiddleware(proxy)  # type: ignore[arg-type]
    generic_environ = {**environ, "SCRIPT_NAME": "/media", "PATH_INFO": target[len("/media") :]}

    def call(app: Any, env: dict[str, object]) -> None:
        status: list[str] = []
        body = b"".join(app(dict(env), lambda s, h, e=None: status.append(s)))
        assert status[0].startswith("200")
        assert body

    def per_call_us(app: Any, env: dict[str, object]) -> float:
        began = time.perf_counter()
        for _ in range(calls):
            call(app, env)
        return 1e6 * (time.perf_counter() - began) / calls

    async def asgi_calls(n: int) -> float:
        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            pass

        began = time.perf_counter()
        for _ in range(n):
            await proxy(dict(scope), receive, send)
        return (time.perf_counter() - began) / n

    call(wsgi, environ)  # renders once; every call below is a memory-cache hit
    call(generic, generic_environ)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(asgi_calls(10))
    asgi_us, wsgi_us, generic_us = [], [], []
    for _ in range(rounds):
        asgi_us.append(1e6 * loop.run_until_complete(asgi_calls(calls)))
        wsgi_us.append(per_call_us(wsgi, environ))
        generic_us.append(per_call_us(generic, generic_environ))
    loop.close()
    asgi = statistics.median(asgi_us)
    rows: list[dict[str, object]] = [
        {
            "case": "imgproxy.wsgi middleware",
            "asgi_us": asgi,
            "wsgi_us": statistics.median(wsgi_us),
            "ratio": statistics.median(wsgi_us) / asgi,
        },
        {
            "case": "a2wsgi ASGIMiddleware (generic bridge)",
            "asgi_us": asgi,
            "wsgi_us": statistics.median(generic_us),
            "ratio": statistics.median(generic_us) / asgi,
        },
    ]
    for row in rows:
        print_row(row)
    return rows


def print_row(row: Mapping[str, object]) -> None:
    print(
        "  "
        + "  ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--renders", type=int, default=8, help="cold renders per round")
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per round")
    parser.add_argument(
        "--only", choices=["cold", "throughput", "disk", "wsgi"], help="run one part"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("benchmarks need wrk (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    paths = make_sources()
    cold: list[dict[str, object]] = []
    hot: list[dict[str, object]] = []
    disk: list[dict[str, object]] = []
    bridge: list[dict[str, object]] = []
    if args.only in (None, "cold"):
        print(f"(a) cold renders, {args.rounds} rounds x {args.renders}: HTTP server vs raw Pillow")
        cold = cold_renders(paths, args.rounds, args.renders)
    if args.only in (None, "throughput"):
        print(f"(b, c) throughput, {args.rounds} rounds x {args.seconds} s, wrk -t1 -c32")
        hot = throughput(paths, args.rounds, args.seconds)
    if args.only in (None, "disk"):
        print(f"(d) disk hits, {args.rounds} rounds x {args.seconds} s, wrk -t1 -c32")
        disk = disk_hits(paths, args.rounds, args.seconds)
    if args.only in (None, "wsgi"):
        print(f"(e) WSGI bridge, {args.rounds} rounds")
        bridge = wsgi_bridge(paths, args.rounds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / time.strftime("bench-%Y%m%d-%H%M%S.json")
    results = {"cold": cold, "throughput": hot, "disk": disk, "wsgi": bridge}
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
