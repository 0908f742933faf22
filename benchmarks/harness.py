"""What every side-by-side part needs: servers in their own process groups (so a forking
server's workers never outlive the benchmark), CPU and peak-RSS probes over a server's
process tree, wrk runs (plain, or with a Lua script making every URL unique), and the
round statistics (medians, per-round ratios as the noise figure)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work"  # git-ignored: logs, thumbor's and libvips' venvs, config
UNIQUE_LUA = Path(__file__).resolve().parent / "unique.lua"
PAGES_LUA = Path(__file__).resolve().parent / "pages.lua"
LINKS = 4000  # names per round: more page sets than any contender gets through in a round

sys.path.insert(0, str(ROOT))
from tests.support.processes import serving_children, wait_for_port  # noqa: E402 - the same start-up check as the tests


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole process group, give it 10 s, then SIGKILL what is left."""
    try:
        members = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
    except psutil.NoSuchProcess:
        members = []
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(10)
    _, alive = psutil.wait_procs(members, timeout=5)
    for leftover in alive:
        leftover.kill()
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # anything forked after the snapshot
    if process.poll() is None:
        process.wait(5)


@contextmanager
def service(
    command: Sequence[str], port: int, what: str, *, env: Mapping[str, str] | None = None
) -> Iterator[psutil.Process]:
    """Start a server in a new session (Ctrl-C in the terminal does not reach it, this does),
    its output to benchmarks/work/<what>.log; on leaving, for any reason, the whole group
    is stopped."""
    WORK.mkdir(parents=True, exist_ok=True)
    log_path = WORK / (re.sub(r"[^\w.-]+", "-", what) + ".log")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
        )
        try:
            try:
                wait_for_port(port, process, what)
            except RuntimeError:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{what} did not start ({log_path}):\n{tail}") from None
            yield psutil.Process(process.pid)
        finally:
            _stop_group(process)


def terminate_on_sigterm() -> None:
    """SIGTERM (and SIGINT, even where a shell started us with it ignored) unwinds like
    Ctrl-C, so every `finally` stops its server."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def workers(server: psutil.Process) -> list[psutil.Process]:
    """The processes that serve requests: a supervisor's children (uvicorn --workers,
    thumbor --processes, imgproxy's through its fork server), or the server itself when it
    does not fork."""
    return serving_children(server.pid) or [server]


def tree_cpu(server: psutil.Process) -> dict[int, float]:
    """CPU seconds (user + system) of every live process in the server's tree, by pid."""
    seconds = {}
    for proc in [server, *server.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            seconds[proc.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return seconds


def tree_pss(server: psutil.Process) -> int:
    """Bytes of PSS of every live process in the server's tree: what the server as a whole
    costs the machine, its processes' shared pages counted once between them."""
    total = 0
    for proc in [server, *server.children(recursive=True)]:
        with suppress(psutil.NoSuchProcess):
            total += proc.memory_full_info().pss
    return total


def _busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores, idle and iowait excluded)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


@dataclass
class Probe:
    """During a load run: the tree's CPU-time delta, and every worker's peak RSS sampled at
    ~20 Hz by a thread. Use as a context manager around the run."""

    server: psutil.Process
    period: float = 0.05
    pss: bool = False  # also the whole tree's PSS at the start (reads every smaps: slower)
    base_pss: int = 0
    cpu_seconds: float = 0.0
    busiest_share: float = 0.0  # the busiest worker's part of the workers' CPU time
    other_cores: float = 0.0  # mean cores busy outside the server: load generator, others
    peak_rss: dict[int, int] = field(default_factory=dict)
    base_rss: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _before: dict[int, float] = field(default_factory=dict)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Probe:
        self._workers = workers(self.server)
        for proc in self._workers:
            self.base_rss[proc.pid] = proc.memory_info().rss
        self.peak_rss = dict(self.base_rss)
        if self.pss:
            self.base_pss = tree_pss(self.server)
        self._before = tree_cpu(self.server)
        self._machine_before = _busy_seconds()
        self._began = time.monotonic()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.period):
            for proc in self._workers:
                try:
                    rss = proc.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                if rss > self.peak_rss.get(proc.pid, 0):
                    self.peak_rss[proc.pid] = rss

    def settle(self, *, idle_cpu: float = 0.02, step: float = 0.2, limit: float = 60) -> None:
        """Wait until the tree is idle (< idle_cpu CPU seconds per step): renders of requests
        still in flight when the load generator stopped are part of the cost."""
        deadline = time.monotonic() + limit
        last = sum(tree_cpu(self.server).values())
        while time.monotonic() < deadline:
            time.sleep(step)
            now = sum(tree_cpu(self.server).values())
            if now - last < idle_cpu:
                return
            last = now

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        after = tree_cpu(self.server)
        delta = {pid: after[pid] - self._before.get(pid, 0.0) for pid in after}
        self.cpu_seconds = sum(delta.values())
        per_worker = [delta.get(proc.pid, 0.0) for proc in self._workers]
        self.busiest_share = max(per_worker) / sum(per_worker) if sum(per_worker) else 0.0
        elapsed = time.monotonic() - self._began
        outside = _busy_seconds() - self._machine_before - self.cpu_seconds
        self.other_cores = max(0.0, outside) / elapsed if elapsed else 0.0

    @property
    def peak_rss_mib(self) -> float:
        return max(self.peak_rss.values()) / 2**20

    @property
    def base_rss_mib(self) -> float:
        return max(self.base_rss.values()) / 2**20


@dataclass(frozen=True)
class WrkResult:
    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: str  # wrk's socket errors / non-2xx line, "" when clean
    issued: int | None = None  # with unique.lua: requests sent, answered or not


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unreadable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    url: str,
    seconds: float,
    *,
    connections: int = 32,
    headers: Mapping[str, str] | None = None,
    unique: tuple[str, int] | None = None,
    script: tuple[Path, Sequence[str]] | None = None,
    allow_errors: bool = False,
) -> WrkResult:
    """`wrk -t1 -c<connections> --latency`. `unique=(format, start)` runs unique.lua: each
    request's URL is `url` + `format % n`, n counting up from start + 1 (e.g. "&bg=%06x").
    `script=(path, arguments)` runs another Lua script that prints "issued <n>" too."""
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "120s",
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    if unique is not None:
        script = (UNIQUE_LUA, [unique[0], str(unique[1])])
    if script is not None:
        command[1:1] = ["-s", str(script[0])]
        command += ["--", *script[1]]
    done = subprocess.run(command, capture_output=True, text=True)
    output = done.stdout
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    errors = "; ".join(
        line.strip() for line in output.splitlines() if "Non-2xx" in line or "Socket errors" in line
    )
    if not (rps and total and p50 and p99) or (errors and not allow_errors):
        raise RuntimeError(f"wrk failed on {url}:\n{output}")
    issued = re.search(r"^issued (\d+)", output, re.M)
    return WrkResult(
        float(rps.group(1)),
        int(total.group(1)),
        _ms(p50.group(1)),
        _ms(p99.group(1)),
        errors,
        int(issued.group(1)) if issued else None,
    )


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratios(ours: Sequence[float], theirs: Sequence[float]) -> dict[str, float]:
    """Median ratio of the medians, and the min..max of the per-round ratios (rounds
    alternate, so round i of each ran a few seconds apart: their ratio is the noise figure)."""
    per_round = [a / b for a, b in zip(ours, theirs, strict=True) if b]
    return {
        "ratio": median(ours) / median(theirs) if median(theirs) else float("nan"),
        "ratio_min": min(per_round) if per_round else float("nan"),
        "ratio_max": max(per_round) if per_round else float("nan"),
    }


def markdown_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 10 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def print_row(row: Mapping[str, object]) -> None:
    """One result row on one line, as it is measured (lists and dicts left to the JSON)."""
    print(
        "  "
        + "  ".join(
            f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
            for k, v in row.items()
            if not isinstance(v, dict | list)
        )
    )


@contextmanager
def imgproxy_server(config: Path, port: int, workers: int = 1) -> Iterator[psutil.Process]:
    """`imgproxy serve` on `port` in its own process group, stopped whole on exit."""
    command = [sys.executable, "-m", "imgproxy", "serve", "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    with service(command, port, f"imgproxy-{port}") as process:
        yield process


def link_round(data: Path, photos: list[Path], name: str) -> str:
    """LINKS fresh names (hard links) for one round, photo n % len(photos) each: a source of
    its own per request, so nothing is shared between two of them. The folder, relative to
    data."""
    folder = data / "pages" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for n in range(LINKS):
        os.link(photos[n % len(photos)], folder / f"{n}.jpg")
    return str(folder.relative_to(data))
