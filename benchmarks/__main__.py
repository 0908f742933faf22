"""`make bench`: imgproxy side by side with its baselines, in one run, medians of rounds.

(a) cold renders (6 MP and 24 MP JPEG -> 300 px JPEG/WebP) through the HTTP server vs raw
    Pillow best practice in-process (thumbnail(): draft + reducing resize), wall and CPU;
(b) memory-cache hits vs a bare Starlette app returning the same bytes (wrk, req/s);
(c) 304s per second (wrk);
(d) disk-tier hits through uvicorn, and through nginx with X-Accel-Redirect, vs nginx
    serving the same file statically (wrk);
(e) the WSGI middleware, and a generic ASGI->WSGI bridge (a2wsgi) around the same app, vs
    calling the ASGI app: per memory-cache hit, in-process, so no server's cost is counted;
(f) thumbor 7.8 (its own venv, made on first run): cold renders with unique URLs at 8 and
    32 connections (req/s, p50/p99, server CPU per request, peak RSS per worker), and peak
    RSS under 64 concurrent cold requests for a 40 MB source;
(g) a fleet's shared tiers (benchmarks/fleet.py): a hit from the object-store tier and from
    Redis vs a render, and a new instance's first hit (source bytes it downloads: 0);
(h) output costs (benchmarks/formats.py): ThumbHash/BlurHash vs a 300 px JPEG, and AVIF at
    speed 8 (our default) vs 6 (libavif's), time and bytes;
(i) page sets (benchmarks/pages.py): new 6 MP photos, each at 320/640/1280 px as WebP and
    JPEG q=80, 32 clients, vs thumbor and a libvips app (pyvips, its own venv);
(j) encoder settings (benchmarks/encoders.py), in-process CPU time: where a page set's CPU
    goes, and each WebP/JPEG/AVIF/resize setting's time, bytes and SSIM.
Rounds alternate between the contenders, because these machines drift ±20-30 % a minute:
compare the ratios (and their per-round range, the noise figure), not absolute numbers.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import PIL
from PIL import Image

from benchmarks import encoders, fleet, formats, pages, versus_thumbor
from benchmarks.harness import (
    ROOT,
    free_port,
    imgproxy_server,
    markdown_table,
    median,
    print_row,
    ratios,
    service,
    terminate_on_sigterm,
)
from benchmarks.harness import wrk as wrk_run

DATA = ROOT / "benchmarks" / "data"
RESULTS = ROOT / "benchmarks" / "results"
SOURCES = {"6MP": (3000, 2000), "24MP": (6000, 4000)}
BIG_SOURCE = (8400, 5600)  # 47 MP (the default limit is 50 MP), ~40 MB at q=97 4:4:4
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


def make_big_source() -> Path:
    """A ~40 MB JPEG (47 MP, q=97, no chroma subsampling, per-channel grain)."""
    path = DATA / "photo-40MB.jpg"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        base = Image.open(ROOT / "examples" / "media" / "coffee.png").convert("RGB")
        image = base.resize(BIG_SOURCE, Image.Resampling.BICUBIC)
        grain = Image.merge("RGB", [Image.effect_noise(BIG_SOURCE, 32) for _ in range(3)])
        Image.blend(image, grain, 0.15).save(path, "JPEG", quality=97, subsampling=0)
    return path


def write_config(folder: Path, memory_bytes: int) -> Path:
    """With no memory tier (a cold part), no decode lingers either: each request of the same
    URL, one after another, is then a whole render, decode included."""
    config = DATA / f"bench-{memory_bytes}.toml"
    linger = "" if memory_bytes else "[render]\ndecode_linger = 0\n"
    config.write_text(
        f"[limits]\nrender_concurrency = 1\n[cache]\nmemory_bytes = {memory_bytes}\n{linger}"
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


def wrk(url: str, seconds: float, headers: dict[str, str] | None = None) -> float:
    """Requests per second of `wrk -t1 -c32` on one URL (every response a 2xx/3xx)."""
    return wrk_run(url, seconds, headers=headers).rps


# Headers the server (uvicorn, Starlette) writes itself for any app.
SERVER_HEADERS = frozenset({"date", "server", "content-length"})


def hit_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in SERVER_HEADERS}


def throughput(paths: dict[str, Path], rounds: int, seconds: float) -> list[dict[str, object]]:
    """Memory-tier hits and 304s vs a bare Starlette app sending the same bytes and the same
    headers; both on uvicorn (httptools + uvloop) with 2 workers."""
    url_path = f"/bench/{paths['6MP'].name}?w=300&h=300&fm=webp"
    port, minimal_port = free_port(), free_port()
    workers = 2
    with imgproxy_server(write_config(DATA, 64 * 1024 * 1024), port, workers):
        url = f"http://127.0.0.1:{port}{url_path}"
        for _ in range(8 * workers):  # a new connection each: every worker renders, then hits
            first = httpx.get(url)
            first.raise_for_status()
        body = DATA / "hit-body.webp"
        body.write_bytes(first.content)
        etag = first.headers["etag"]
        headers = hit_headers(first)
        minimal = [sys.executable, "-m", "uvicorn", "benchmarks.minimal_app:app"]
        minimal += ["--host", "127.0.0.1", "--port", str(minimal_port)]
        minimal += ["--workers", str(workers), "--loop", "uvloop", "--http", "httptools"]
        minimal += ["--no-access-log", "--no-server-header", "--log-level", "warning"]
        env = {"BENCH_BODY": str(body), "BENCH_HEADERS": json.dumps(headers)}
        env["PYTHONPATH"] = str(ROOT)
        with service(minimal, minimal_port, "minimal-app", env={**os.environ, **env}):
            bare_url = f"http://127.0.0.1:{minimal_port}{url_path}"
            bare_response = httpx.get(bare_url)
            assert bare_response.content == first.content, "the bare app sends other bytes"
            assert hit_headers(bare_response) == headers, (hit_headers(bare_response), headers)
            assert set(bare_response.headers) == set(first.headers), "other server headers"
            hits: list[float] = []
            bare: list[float] = []
            not_modified: list[float] = []
            for r in range(rounds):
                runs = [
                    (hits, url, None),
                    (bare, bare_url, None),
                    (not_modified, url, {"If-None-Match": etag}),
                ]
                for figures, target, extra in runs if r % 2 == 0 else runs[::-1]:
                    figures.append(wrk(target, seconds, extra))
    rows: list[dict[str, object]] = [
        {
            "case": f"memory-cache hit ({len(first.content) // 1024} KiB webp), {workers} workers",
            "imgproxy_rps": median(hits),
            "starlette_rps": median(bare),
            **ratios(hits, bare),
            "rounds": {"imgproxy": hits, "starlette": bare},
        },
        {
            "case": f"304 Not Modified, {workers} workers",
            "imgproxy_rps": median(not_modified),
            "starlette_rps": median(bare),
            **ratios(not_modified, bare),
            "rounds": {"imgproxy": not_modified, "starlette": bare},
        },
    ]
    for row in rows:
        print_row(row)
    return rows


def disk_hits(paths: dict[str, Path], rounds: int, seconds: float) -> list[dict[str, object]]:
    """Memory tier off, so every hit is a disk hit; nginx runs the shipped config/nginx.conf."""
    from tests.support.processes import nginx_servers

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
        with nginx_servers(folder, accel_port, disk, origin_extra=static) as site:
            front, edge = site.origin, site.edge
            static_url = f"{front}/static/{cached.relative_to(disk)}"
            httpx.get(edge + url_path).raise_for_status()  # MISS: nginx stores imgproxy's bytes
            assert httpx.get(edge + url_path).headers["x-cache-status"] == "HIT"
            httpx.get(static_url).raise_for_status()
            accel = httpx.get(front + url_path)
            assert accel.content == cached.read_bytes(), "nginx did not send the cached file"
            # nginx adds Accept-Ranges to a file it sends; imgproxy's renditions have none.
            assert accel.headers.get("accept-ranges") == "bytes", (
                "nginx proxied imgproxy's bytes instead of sending the file: no X-Accel-Redirect "
                "(does config/nginx.conf's origin server set X-Imgproxy-Accel: on?)"
            )
            uvicorn_rps, accel_rps, edge_rps, static_rps = [], [], [], []
            for _ in range(rounds):
                uvicorn_rps.append(wrk(f"http://127.0.0.1:{plain_port}{url_path}", seconds))
                accel_rps.append(wrk(front + url_path, seconds))
                edge_rps.append(wrk(edge + url_path, seconds))
                static_rps.append(wrk(static_url, seconds))
    static_median = statistics.median(static_rps)
    rows: list[dict[str, object]] = [
        {
            "case": "disk hit via uvicorn",
            "imgproxy_rps": statistics.median(uvicorn_rps),
            "nginx_static_rps": static_median,
            **ratios(uvicorn_rps, static_rps),
        },
        {
            "case": "disk hit via nginx X-Accel-Redirect (origin server)",
            "imgproxy_rps": statistics.median(accel_rps),
            "nginx_static_rps": static_median,
            **ratios(accel_rps, static_rps),
        },
        {
            "case": "nginx cache hit (edge server, X-Cache-Status: HIT)",
            "imgproxy_rps": statistics.median(edge_rps),
            "nginx_static_rps": static_median,
            **ratios(edge_rps, static_rps),
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


def environment() -> dict[str, object]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "wrk": wrk_version.split(" [")[0].strip(),
    }


def report(meta: Mapping[str, object], results: Mapping[str, list[dict[str, object]]]) -> str:
    """The Markdown the README's tables are pasted from."""
    lines = [
        f"Run {meta['date']}: {meta['nproc']} cores ({meta['cpu']}), Python {meta['python']}, "
        f"Pillow {meta['pillow']}"
        + (
            f"; thumbor {meta['thumbor']} (Pillow {meta['thumbor_pillow']})"
            if "thumbor" in meta
            else ""
        )
        + f"; {meta['rounds']} alternating rounds, medians; ratio = us / baseline, "
        "(min..max of the per-round ratios).",
        "",
    ]
    if "libvips" in meta:
        lines[0] += f" libvips {meta['libvips']} (pyvips {meta['pyvips']})."
    if "imgproxy_settings" in meta:
        lines[0] += f" imgproxy not as shipped: {', '.join(meta['imgproxy_settings'])}."  # type: ignore[arg-type]
    if results.get("thumbor"):
        lines += [
            "(f) vs thumbor and a libvips app, 2 workers each, every request a source of its own"
            " (a hard link), so every request decodes and renders:",
            "",
        ]
        lines += [versus_thumbor.table(results["thumbor"]), ""]
    if results.get("pages"):
        lines += ["(i) page sets, 2 workers each, every photo new:", ""]
        lines += [versus_thumbor.table(results["pages"]), ""]
    if results.get("encoders"):
        lines += ["(j) encoder settings:", "", encoders.table(results["encoders"]), ""]
    columns = {
        "cold": ["source", "format", "imgproxy_ms", "pillow_ms", "wall_ratio", "cpu_ratio"],
        "throughput": ["case", "imgproxy_rps", "starlette_rps", "ratio", "ratio_min", "ratio_max"],
        "disk": ["case", "imgproxy_rps", "nginx_static_rps", "ratio", "ratio_min", "ratio_max"],
        "wsgi": ["case", "asgi_us", "wsgi_us", "ratio"],
        "fleet": ["case", "hit_ms", "render_ms", "ratio", "source_bytes_read"],
        "formats": ["case", "ours_ms", "baseline_ms", "ratio", "bytes_8", "bytes_6"],
    }
    for part, names in columns.items():
        if results.get(part):
            lines += [f"({part})", "", markdown_table(results[part], names), ""]
    return "\n".join(lines)


PARTS = ["cold", "throughput", "disk", "wsgi", "thumbor", "fleet", "formats", "pages", "encoders"]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--rounds", type=int, help="alternating rounds (default 5; --quick 1)")
    parser.add_argument("--renders", type=int, help="cold renders per round, part (a)")
    parser.add_argument("--seconds", type=float, help="wrk duration per round (default 5)")
    parser.add_argument("--only", choices=PARTS, action="append", help="run these parts only")
    parser.add_argument("--quick", action="store_true", help="a short smoke run of every part")
    parser.add_argument(
        "--connections",
        default="8,32",
        help="wrk connections for the thumbor cold runs, comma-separated (default 8,32)",
    )
    parser.add_argument(
        "--imgproxy-setting",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a setting other than the shipped one for imgproxy in (f) and (i), as TOML "
        "(render.webp_effort=2); the report names it, and README's results stay",
    )
    args = parser.parse_args()
    versus_thumbor.SETTINGS[:] = args.imgproxy_setting
    rounds = args.rounds or (1 if args.quick else 5)
    renders = args.renders or (2 if args.quick else 8)
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    burst = 16 if args.quick else 64
    parts = args.only or PARTS
    if shutil.which("wrk") is None:
        print("benchmarks need wrk (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    terminate_on_sigterm()
    meta: dict[str, object] = {**environment(), "rounds": rounds, "seconds": seconds}
    if args.imgproxy_setting:
        meta["imgproxy_settings"] = args.imgproxy_setting
    paths = make_sources()
    results: dict[str, list[dict[str, object]]] = {part: [] for part in PARTS}
    try:
        if "cold" in parts:
            print(f"(a) cold renders, {rounds} rounds x {renders}: HTTP server vs raw Pillow")
            results["cold"] = cold_renders(paths, rounds, renders)
        if "throughput" in parts:
            print(f"(b, c) throughput, {rounds} rounds x {seconds} s, wrk -t1 -c32")
            results["throughput"] = throughput(paths, rounds, seconds)
        if "disk" in parts:
            print(f"(d) disk hits, {rounds} rounds x {seconds} s, wrk -t1 -c32")
            results["disk"] = disk_hits(paths, rounds, seconds)
        if "wsgi" in parts:
            print(f"(e) WSGI bridge, {rounds} rounds")
            results["wsgi"] = wsgi_bridge(paths, rounds)
        if "thumbor" in parts or "pages" in parts:
            meta.update(versus_thumbor.ensure_thumbor())
            meta.update(versus_thumbor.ensure_vips())
        if "thumbor" in parts:
            connections = [int(c) for c in args.connections.split(",")]
            print(f"(f) vs thumbor, {rounds} rounds x {seconds} s, wrk -t1 -c{connections}")
            check = versus_thumbor.check_unique(DATA, paths["6MP"], min(seconds, 3.0))
            print(f"  unique URLs: {check['renders']} renders for {check['issued']} requests")
            meta["unique_check"] = check
            rows = results["thumbor"]
            versus_thumbor.cold(DATA, paths, rounds, seconds, connections, rows)
            # The wrk rounds' RSS includes every rendition our memory tier kept from the
            # rounds before (thumbor keeps none): the RSS case, on fresh servers.
            print(f"(f) peak RSS, {burst // 2} concurrent cold requests for the 24 MP source")
            versus_thumbor.big_source_rss(DATA, paths["24MP"], rounds, burst // 2, rows)
            print(f"(f) peak RSS, {burst} concurrent cold requests for a 40 MB source")
            versus_thumbor.big_source_rss(DATA, make_big_source(), rounds, burst, rows)
        if "fleet" in parts:
            print(f"(g) fleet: SeaweedFS + Redis, {rounds} rounds x {renders} requests")
            results["fleet"] = fleet.run(DATA / "fleet", paths["6MP"], rounds, renders)
        if "formats" in parts:
            print(f"(h) placeholder hashes and AVIF speed, {rounds} rounds, in-process")
            results["formats"] = formats.run(paths["6MP"], rounds)
        if "pages" in parts:
            print(f"(i) page sets, {rounds} rounds x {2 * seconds} s, wrk -t1 -c32, 3 servers")
            pages.run(DATA, rounds, seconds, results["pages"])
        if "encoders" in parts:
            print(f"(j) encoder settings, in-process CPU time, {rounds} rounds")
            results["encoders"] = encoders.run(DATA, rounds, quick=args.quick)
    finally:  # whatever ran is kept, even after a failure or Ctrl-C
        if any(results.values()):
            RESULTS.mkdir(parents=True, exist_ok=True)
            out = RESULTS / time.strftime("bench-%Y%m%d-%H%M%S.json")
            out.write_text(json.dumps({"meta": meta, **results}, indent=2))
            print(f"\nresults: {out.relative_to(ROOT)}\n")
            text = report(meta, results)
            print(text)
            shipped = not args.imgproxy_setting
            if parts == PARTS and not args.quick and shipped and all(results.values()):
                record(text)
    return 0


BEGIN, END = "<!-- bench: a full `make bench` replaces this block -->", "<!-- /bench -->"


def record(text: str) -> None:
    """A full run's report into benchmarks/README.md, so its tables are always one run's."""
    readme = ROOT / "benchmarks" / "README.md"
    page = readme.read_text()
    start, end = page.index(BEGIN) + len(BEGIN), page.index(END)
    readme.write_text(page[:start] + "\n" + text.strip() + "\n" + page[end:])
    print(f"recorded in {readme.relative_to(ROOT)}")


if __name__ == "__main__":
    raise SystemExit(main())
