"""(f) imgproxy side by side with thumbor 7.8: cold renders of one 300 px wide JPEG (q=80)
from a 6 MP and a 24 MP JPEG, every URL unique, 2 worker processes each; and peak RSS under
64 concurrent cold requests for a 40 MB source.

thumbor runs from its own venv (benchmarks/work/thumbor-venv, made on first run), with a
file loader rooted at benchmarks/data, no storage and no result storage: like imgproxy with
unique URLs, every request reads its source and renders. imgproxy runs as shipped (memory
cache on); unique URLs come from `bg=<counter>`, which is part of the cache key but changes
no pixel of an opaque JPEG. thumbor ignores a query string, so its URLs get `?n=<counter>`.

The libvips contender (benchmarks/vips_app.py: pyvips `thumbnail_buffer`, shrink-on-load)
runs beside them in the cold cases, from its own venv (benchmarks/work/vips-venv, made on
first run from benchmarks/vips-requirements.txt, hashes required); it ignores `n=` too.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from PIL import Image

from benchmarks.harness import (
    LINKS,
    PAGES_LUA,
    ROOT,
    WORK,
    Probe,
    free_port,
    link_round,
    markdown_table,
    median,
    ratios,
    service,
    workers,
    wrk,
)

THUMBOR_SPEC = "thumbor==7.8.*"
VENV = WORK / "thumbor-venv"
VIPS_VENV = WORK / "vips-venv"
VIPS_REQUIREMENTS = ROOT / "benchmarks" / "vips-requirements.txt"
WIDTH, QUALITY, WORKERS = 300, 80, 2
OURS_SUFFIX, THEIRS_SUFFIX, VIPS_SUFFIX = "&bg=%06x", "?n=%d", "&n=%d"
BASELINES = ("thumbor", "vips")
LOCAL = "http://127.0.0.1"


@dataclass(frozen=True)
class Contender:
    name: str
    base: str  # http://127.0.0.1:port
    server: psutil.Process
    suffix: str  # unique.lua's format for the per-request part

    def url(self, source: Path) -> str:
        if self.name == "imgproxy":
            return f"{self.base}/bench/{source.name}?w={WIDTH}&fm=jpeg&q={QUALITY}"
        if self.name == "vips":
            return f"{self.base}/{source.name}?w={WIDTH}&fm=jpeg&q={QUALITY}"
        return f"{self.base}/unsafe/{WIDTH}x0/{source.name}"

    def template(self, folder: str) -> str:
        """pages.lua's path template for photo {n} of `folder` at width {w}, format {fm}."""
        if self.name == "imgproxy":
            return f"/bench/{folder}/{{n}}.jpg?w={{w}}&fm={{fm}}&q={QUALITY}"
        if self.name == "vips":
            return f"/{folder}/{{n}}.jpg?w={{w}}&fm={{fm}}&q={QUALITY}"
        filters = f"filters:format({{fm}}):quality({QUALITY})"
        return f"/unsafe/fit-in/{{w}}x0/{filters}/{folder}/{{n}}.jpg"

    def unique_url(self, source: Path, n: int) -> str:
        return self.url(source) + self.suffix % (n % 0x1000000)


def ensure_thumbor() -> dict[str, str]:
    """thumbor's venv, made with `python3 -m venv` + pip on first run; its versions."""
    python = VENV / "bin" / "python"
    if not (VENV / "bin" / "thumbor").exists():
        print(f"  installing {THUMBOR_SPEC} into {VENV.relative_to(ROOT)} (first run only)")
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", THUMBOR_SPEC],
            check=True,
        )
    probe = "import PIL, thumbor, sys; print(thumbor.__version__, PIL.__version__, sys.version)"
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
    thumbor, pillow, python_version = out.stdout.split(maxsplit=2)
    if not thumbor.startswith("7.8."):
        raise RuntimeError(f"{VENV} holds thumbor {thumbor}, not {THUMBOR_SPEC}: delete it")
    return {
        "thumbor": thumbor,
        "thumbor_pillow": pillow,
        "thumbor_python": python_version.split()[0],
    }


def ensure_vips() -> dict[str, str]:
    """The libvips app's venv, made on first run from the pinned, hashed requirements."""
    python = VIPS_VENV / "bin" / "python"
    if not python.exists():
        print(f"  installing pyvips into {VIPS_VENV.relative_to(ROOT)} (first run only)")
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run(["python3", "-m", "venv", str(VIPS_VENV)], check=True)
        install = [str(python), "-m", "pip", "install", "--quiet", "--require-hashes"]
        subprocess.run([*install, "-r", str(VIPS_REQUIREMENTS)], check=True)
    probe = "import pyvips; print(pyvips.__version__, pyvips.version(0), pyvips.version(1))"
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
    binding, major, minor = out.stdout.split()
    return {"pyvips": binding, "libvips": f"{major}.{minor}"}


def thumbor_conf(data: Path) -> Path:
    conf = WORK / "thumbor.conf"
    conf.write_text(
        "# written by benchmarks/versus_thumbor.py\n"
        "LOADER = 'thumbor.loaders.file_loader'\n"
        f"FILE_LOADER_ROOT_PATH = {str(data)!r}\n"
        "STORAGE = 'thumbor.storages.no_storage'  # no caching of sources\n"
        "RESULT_STORAGE = None  # no caching of results\n"
        f"QUALITY = {QUALITY}\n"
        "ALLOW_UNSAFE_URL = True\n"
    )
    return conf


# `--imgproxy-setting SECTION.KEY=VALUE` (python -m benchmarks): settings other than the
# shipped ones, for (f) and (i) only, named in the report.
SETTINGS: list[str] = []


def imgproxy_conf(data: Path) -> Path:
    """Everything as shipped (memory cache on, render slots = cores) but the store, and any
    SETTINGS (TOML values: render.webp_effort=2)."""
    conf = WORK / "imgproxy-vs-thumbor.toml"
    tables: dict[str, list[str]] = {}
    for setting in SETTINGS:
        name, value = setting.split("=", 1)
        section, key = name.rsplit(".", 1)
        tables.setdefault(section, []).append(f"{key} = {value}\n")
    extra = "".join(f"[{section}]\n" + "".join(lines) for section, lines in tables.items())
    conf.write_text(f'[stores.bench]\nkind = "fs"\nroot = "{data}"\napproved = true\n{extra}')
    return conf


def vips_command(data: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """The libvips app on uvicorn as imgproxy serves (uvloop, httptools), 2 workers; libvips
    with one thread per render, as imgproxy (Go) runs it: the workers are the parallelism."""
    command = [str(VIPS_VENV / "bin" / "python"), "-m", "uvicorn", "benchmarks.vips_app:app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS)]
    command += ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    command += ["--log-level", "warning"]
    env = {**os.environ, "BENCH_ROOT": str(data), "PYTHONPATH": str(ROOT)}
    env["VIPS_CONCURRENCY"] = "1"
    return command, env


@contextmanager
def contenders(data: Path, *, vips: bool = False) -> Iterator[dict[str, Contender]]:
    """imgproxy and thumbor (and the libvips app), fresh, with 2 workers each; stopped
    (whole process groups) on exit."""
    ours_port, theirs_port = free_port(), free_port()
    ours_cmd = [sys.executable, "-m", "imgproxy", "serve", "--config", str(imgproxy_conf(data))]
    ours_cmd += ["--host", "127.0.0.1", "--port", str(ours_port), "--workers", str(WORKERS)]
    theirs_cmd = [str(VENV / "bin" / "thumbor"), "-c", str(thumbor_conf(data))]
    theirs_cmd += ["-i", "127.0.0.1", "-p", str(theirs_port), "--processes", str(WORKERS)]
    theirs_cmd += ["-l", "warning"]
    with ExitStack() as stack:
        ours = stack.enter_context(service(ours_cmd, ours_port, "imgproxy-vs-thumbor"))
        theirs = stack.enter_context(service(theirs_cmd, theirs_port, "thumbor"))
        _wait_for_workers(ours)
        _wait_for_workers(theirs)
        both = {
            "imgproxy": Contender("imgproxy", f"http://127.0.0.1:{ours_port}", ours, OURS_SUFFIX),
            "thumbor": Contender(
                "thumbor", f"http://127.0.0.1:{theirs_port}", theirs, THEIRS_SUFFIX
            ),
        }
        if vips:
            vips_port = free_port()
            command, env = vips_command(data, vips_port)
            app = stack.enter_context(service(command, vips_port, "vips-app", env=env))
            _wait_for_workers(app)
            both["vips"] = Contender("vips", f"http://127.0.0.1:{vips_port}", app, VIPS_SUFFIX)
        yield both


def _wait_for_workers(server: psutil.Process) -> None:
    deadline = time.monotonic() + 30
    while len(workers(server)) < WORKERS and time.monotonic() < deadline:
        time.sleep(0.1)


async def _burst(urls: list[str]) -> list[int]:
    """All `urls` at once, one connection each; their statuses."""
    limits = httpx.Limits(max_connections=len(urls), max_keepalive_connections=len(urls))
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        responses = await asyncio.gather(*(http.get(url) for url in urls))
    return [r.status_code for r in responses]


def burst(urls: list[str]) -> list[int]:
    return asyncio.run(_burst(urls))


def expected_size(source: Path) -> tuple[int, int]:
    """thumbor's `300x0`: height = round(300 * h / w) (engines/__init__.py)."""
    with Image.open(source) as image:
        width, height = image.size
    return WIDTH, round(WIDTH * height / width)


def check_outputs(both: dict[str, Contender], source: Path) -> dict[str, object]:
    """Same pixel size, both JPEG; ours byte-identical whatever the cache-busting bg."""
    sizes: dict[str, object] = {}
    want = expected_size(source)
    bodies = []
    for contender in both.values():
        for n in (0xFFFFFE, 0xFFFFFF):
            response = httpx.get(contender.unique_url(source, n), timeout=120)
            response.raise_for_status()
            with Image.open(io.BytesIO(response.content)) as image:
                assert image.format == "JPEG", (contender.name, image.format)
                assert image.size == want, (contender.name, image.size, want)
            if contender.name == "imgproxy":
                bodies.append(response.content)
            sizes[contender.name] = {"size": list(want), "bytes": len(response.content)}
    assert bodies[0] == bodies[1], "bg changed the bytes of an opaque JPEG"
    return sizes


def renders_total(base: str) -> int:
    text = httpx.get(f"{base}/metrics").text
    match = re.search(r"^imgproxy_renders_total (\S+)", text, re.M)
    assert match, "no imgproxy_renders_total at /metrics"
    return int(float(match.group(1)))


def check_unique(data: Path, source: Path, seconds: float) -> dict[str, int]:
    """With one worker (/metrics is per process): every wrk request of the unique.lua
    scheme is a render, nothing is shared by the single-flight or the memory cache."""
    port = free_port()
    cmd = [sys.executable, "-m", "imgproxy", "serve", "--config", str(imgproxy_conf(data))]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with service(cmd, port, "imgproxy-unique-check") as server:
        base = f"http://127.0.0.1:{port}"
        ours = Contender("imgproxy", base, server, OURS_SUFFIX)
        before = renders_total(base)
        with Probe(server) as probe:
            result = wrk(ours.url(source), seconds, connections=8, unique=(OURS_SUFFIX, 0))
            probe.settle()
        renders = renders_total(base) - before
    assert result.issued is not None
    check = {"requests": result.requests, "issued": result.issued, "renders": renders}
    if not result.requests <= renders <= result.issued:
        raise RuntimeError(f"unique URLs did not all render: {check}")
    return check


def cold(
    data: Path,
    sources: dict[str, Path],
    rounds: int,
    seconds: float,
    connections: list[int],
    rows: list[dict[str, object]],
) -> None:
    """One row per source and connection count, appended to `rows` as soon as it is done."""
    counter = 0
    for name in ("6MP", "24MP"):
        source = sources[name]
        for conns in connections:
            with contenders(data, vips=True) as both:
                check_outputs(both, source)
                for contender in both.values():  # warm every worker's imports and pools
                    burst([contender.unique_url(source, 0xFFFF00 + i) for i in range(2 * conns)])
                runs: dict[str, list[dict[str, float]]] = {n: [] for n in both}
                for r in range(rounds):
                    order = list(both.values()) if r % 2 == 0 else list(both.values())[::-1]
                    for contender in order:
                        # Every request a source of its own (a hard link): a render that
                        # shares nothing with another, which is what a cold render means.
                        counter += 1
                        folder = link_round(data, [source], f"cold-{counter}")
                        path = contender.template(folder).format(n="{n}", w=WIDTH, fm="jpeg")
                        runs[contender.name].append(
                            through_links(contender, path, seconds, conns, 1)
                        )
                        shutil.rmtree(data / folder)
            row = summarise(f"cold {name} JPEG, -c{conns}", runs)
            rows.append(row)
            print_summary(row)


def through_links(
    contender: Contender, path: str, seconds: float, connections: int, per: int
) -> dict[str, float]:
    """One wrk round of pages.lua over LINKS hard-linked sources, `per` requests each (the
    cold part 1, the page sets 6), and what it cost the contender's processes."""
    with Probe(contender.server) as probe:
        result = wrk(
            contender.base + "/",  # pages.lua writes each request's path
            seconds,
            connections=connections,
            script=(PAGES_LUA, [path, "0", str(LINKS), str(per)]),
        )
        probe.settle()
    assert result.issued is not None
    if result.issued > per * LINKS:
        raise RuntimeError(f"{contender.name} went through more than {LINKS} sources")
    return {
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "cpu_ms_per_req": 1000 * probe.cpu_seconds / result.issued,
        "busiest_worker_cpu_share": probe.busiest_share,
        "other_cores": probe.other_cores,
        "peak_rss_mib": probe.peak_rss_mib,
        "base_rss_mib": probe.base_rss_mib,
        "requests": result.requests,
        "issued": result.issued,
    }


SPLIT = 0.6  # thumbor's busiest process did at most this share of its CPU time


def summarise(case: str, runs: dict[str, list[dict[str, float]]]) -> dict[str, object]:
    """Medians, and ratios us/thumbor ("ratio", ...) and us/libvips ("vips_ratio", ...) when
    it ran; and req/s over only the rounds in which thumbor's two processes split the work
    (its shared accept socket sometimes hands one of them every connection, which halves its
    rate: the ratio then says more about that than about rendering)."""
    ours, theirs = runs["imgproxy"], runs["thumbor"]
    row: dict[str, object] = {"case": case, "rounds": runs}
    for metric in ours[0]:
        if metric in ("requests", "issued"):
            continue
        value: dict[str, float] = {}
        for name, figures in runs.items():
            value[name] = median([run[metric] for run in figures])
        a = [run[metric] for run in ours]
        value.update(ratios(a, [run[metric] for run in theirs]))
        if "vips" in runs:
            vs = ratios(a, [run[metric] for run in runs["vips"]])
            value.update({f"vips_{k}": v for k, v in vs.items()})
        row[metric] = value
    for name, prefix in (("thumbor", ""), ("vips", "vips_")):
        if name not in runs or "rps" not in ours[0]:
            continue
        rounds = runs[name]  # uvicorn's workers share one socket too
        split = [i for i, run in enumerate(rounds) if run["busiest_worker_cpu_share"] <= SPLIT]
        if split:
            a = [ours[i]["rps"] for i in split]
            b = [rounds[i]["rps"] for i in split]
            row[f"rps_{name}_split"] = {
                "imgproxy": median(a),
                name: median(b),
                "rounds": len(split),
                **{prefix + k: v for k, v in ratios(a, b).items()},
            }
    return row


def _ratio(value: dict[str, float], prefix: str = "") -> str:
    return (
        f"x{value[prefix + 'ratio']:.2f} "
        f"({value[prefix + 'ratio_min']:.2f}..{value[prefix + 'ratio_max']:.2f})"
    )


def print_summary(row: dict[str, object]) -> None:
    parts = [str(row["case"])]
    for metric, value in row.items():
        if isinstance(value, dict) and "ratio" in value:
            text = f"{metric}: {value['imgproxy']:.1f} vs thumbor {value['thumbor']:.1f} "
            text += _ratio(value)
            if "vips" in value:
                text += f", vs libvips {value['vips']:.1f} " + _ratio(value, "vips_")
            parts.append(text)
        elif isinstance(value, dict) and "vips_ratio" in value:
            text = f"{metric}: {value['imgproxy']:.1f} vs libvips {value['vips']:.1f} "
            parts.append(text + _ratio(value, "vips_"))
    print("  " + "\n    ".join(parts))


def big_source_rss(
    data: Path, source: Path, rounds: int, concurrent: int, rows: list[dict[str, object]]
) -> None:
    """`concurrent` cold requests at once for one big source, each under a name of its own
    (a hard link: no two share a decode); fresh servers each round, so a round's peak is its
    own; rounds alternate which server goes first."""
    runs: dict[str, list[dict[str, float]]] = {"imgproxy": [], "thumbor": []}
    for r in range(rounds):
        with contenders(data) as both:
            order = list(both.values()) if r % 2 == 0 else list(both.values())[::-1]
            for contender in order:
                burst([contender.unique_url(source, 0xFFFF00 + i) for i in range(WORKERS * 2)])
                folder = link_round(data, [source], f"burst-{r}-{contender.name}")
                path = contender.template(folder).format(n="{n}", w=WIDTH, fm="jpeg")
                urls = [contender.base + path.format(n=i) for i in range(concurrent)]
                with Probe(contender.server, pss=True) as probe:
                    began = time.perf_counter()
                    statuses = burst(urls)
                    wall = time.perf_counter() - began
                    probe.settle()
                runs[contender.name].append(
                    {
                        "peak_rss_mib": probe.peak_rss_mib,
                        "base_rss_mib": probe.base_rss_mib,
                        "idle_pss_mib": probe.base_pss / 2**20,
                        "wall_s": wall,
                        "ok": float(statuses.count(200)),
                        "cpu_ms_per_req": 1000 * probe.cpu_seconds / concurrent,
                        "busiest_worker_cpu_share": probe.busiest_share,
                        "other_cores": probe.other_cores,
                    }
                )
    size_mb = source.stat().st_size / 1e6
    with Image.open(source) as image:
        mp = image.size[0] * image.size[1] / 1e6
    row = summarise(f"{concurrent} concurrent cold, {size_mb:.0f} MB {mp:.0f} MP JPEG", runs)
    rows.append(row)
    print_summary(row)


def table(rows: list[dict[str, object]]) -> str:
    """One line per case and contender, then the ratio lines with their per-round range."""
    metrics = {
        "req/s": "rps",
        "req/s, rounds thumbor split": "rps_thumbor_split",
        "req/s, rounds libvips split": "rps_vips_split",
        "p50 ms": "p50_ms",
        "p99 ms": "p99_ms",
        "CPU ms/req": "cpu_ms_per_req",
        "peak RSS/worker MiB": "peak_rss_mib",
        "idle RSS/worker MiB": "base_rss_mib",
        "idle PSS/server MiB": "idle_pss_mib",
        "busiest worker's CPU share": "busiest_worker_cpu_share",
        "wall s": "wall_s",
        "200s": "ok",
    }
    columns = [
        c for c in ["case", *metrics] if c == "case" or any(metrics[c] in row for row in rows)
    ]
    lines: list[dict[str, object]] = []
    for row in rows:
        names = list(row["rounds"])  # type: ignore[call-overload]
        for who in names:
            line: dict[str, object] = {"case": f"{row['case']}: {who}"}
            for column in columns[1:]:
                value = row.get(metrics[column])
                line[column] = value.get(who, "-") if isinstance(value, dict) else "-"
            lines.append(line)
        for who, prefix in (("thumbor", ""), ("vips", "vips_")):
            if who not in names:
                continue
            ratio_line: dict[str, object] = {"case": f"{row['case']}: **ratio us/{who}**"}
            for column in columns[1:]:
                value = row.get(metrics[column])
                ratio_line[column] = (
                    f"**{value[prefix + 'ratio']:.2f}** "
                    f"({value[prefix + 'ratio_min']:.2f}..{value[prefix + 'ratio_max']:.2f})"
                    if isinstance(value, dict) and prefix + "ratio" in value
                    else "-"
                )
            lines.append(ratio_line)
    others = [
        run["other_cores"]
        for row in rows
        for runs in row["rounds"].values()  # type: ignore[attr-defined]
        for run in runs
    ]
    note = (
        f"\n\nCPU busy outside the measured server during the runs (wrk, this script, anything "
        f"else on the machine): median {median(others):.2f} cores, max {max(others):.2f}."
        if others
        else ""
    )
    return markdown_table(lines, columns) + note
