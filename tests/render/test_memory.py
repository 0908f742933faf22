"""A render's working memory, estimated from the header facts (render/memory.py): a
progressive JPEG's coefficient buffer from its frame header, and an estimate never below
what a real render of each kind holds at its peak."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from PIL import Image

from imgproxy import headers
from imgproxy.render import memory, probe
from tests.support import images
from tests.support.processes import peak_rss_growth


def test_a_progressive_jpeg_declares_its_coefficient_buffer() -> None:
    progressive = images.jpeg((640, 480), progressive=True)  # 4:2:0
    frame = headers.jpeg_frame(progressive)
    assert frame is not None and frame.buffered
    # One 16-bit coefficient per pixel of luma, and of each quarter-size chroma plane.
    assert frame.coefficient_bytes == (640 * 480 + 2 * 320 * 240) * 2
    assert probe(progressive, None, 50_000_000).coefficient_bytes == frame.coefficient_bytes
    sequential = headers.jpeg_frame(images.jpeg((640, 480)))
    assert sequential is not None and sequential.coefficient_bytes == 0
    # A sequential file whose first scan carries one component is buffered too (libjpeg).
    data = images.jpeg((640, 480))
    sos = data.index(b"\xff\xda")
    one = data[:sos] + b"\xff\xda\x00\x08\x01" + data[sos + 5 : sos + 7] + b"\x00\x3f\x00"
    assert headers.jpeg_frame(one + data[sos + 14 :]) == headers.JpegFrame(
        (640, 480), ((2, 2), (1, 1), (1, 1)), True, 0, data_at=sos + 10
    )


def test_a_share_larger_than_the_budget_runs_alone() -> None:
    budget = memory.ThreadBudget(100)
    order: list[object] = []
    with budget.hold(10**9):  # the whole budget, not forever
        waiter = threading.Thread(target=lambda: order.append(budget.hold(1).__enter__()))
        waiter.start()
        waiter.join(0.2)
        assert waiter.is_alive()  # nothing else runs beside it
        order.append("done")
    waiter.join(5)
    assert order == ["done", None]


_PEAKS = """
import json, sys
from pathlib import Path
from imgproxy import render
from imgproxy.formats import OutputFormat
from imgproxy.job import RenderJob
from imgproxy.params import build_transform

def status(key):
    lines = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in lines if line.startswith(key)).split()[1]) * 1024

found = []
for path, query, output in json.loads(sys.argv[1]):
    data = Path(path).read_bytes()
    info = render.probe(data, None, 50_000_000)
    t = build_transform(dict(pair.split("=") for pair in query.split("&")), 8192)
    job = RenderJob(t, OutputFormat(output), 100, None, False, 50_000_000)
    render.render(data, job)  # plugins loaded, caches filled
    Path("/proc/self/clear_refs").write_text("5")
    before = status("VmRSS:")
    render.render(data, job)
    found.append((path, query, output, status("VmHWM:") - before, render.working_bytes(info, job)))
print(json.dumps(found))
"""


QUERIES = ("w=64", "w=1300", "w=300&h=300&fit=cover&g=smart", "w=300&h=200&fit=cover&g=entropy")


def test_the_estimate_covers_what_real_renders_hold(tmp_path: Path) -> None:
    """Measured in a fresh process, glibc giving each buffer back when it is freed: the
    peak over the render is what it held, which the reservation must cover."""
    picture = images.photo((2400, 1800))
    files = {
        "progressive.jpg": images.encode(picture, "JPEG", progressive=True),
        "baseline.jpg": images.encode(picture, "JPEG"),
        "photo.png": images.encode(picture, "PNG"),
        "photo.webp": images.encode(picture, "WEBP", lossless=True),
        "photo.gif": images.encode(picture.convert("P"), "GIF"),
        "alpha.png": images.encode(picture.convert("RGBA"), "PNG"),
        "rotated.jpg": images.jpeg_with_exif((2400, 1800), orientation=6, gps=False),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    # Each encoder at a large padded canvas of a tiny source (the red-team's case: AVIF
    # held 5x what was reserved), opaque and with alpha.
    (tmp_path / "tiny.png").write_bytes(images.encode(picture.resize((10, 10)), "PNG"))
    (tmp_path / "tiny-alpha.png").write_bytes(images.rgba_png((40, 40)))
    encoders = [
        (str(tmp_path / name), "w=2048&h=2048&fit=pad", output)
        for name in ("tiny.png", "tiny-alpha.png")
        for output in ("avif", "webp", "png", "jpeg")
    ]
    cases = encoders + [
        (str(tmp_path / name), query, "jpeg")
        for name in files
        for query in (
            "w=64",
            "w=1300",
            "w=300&h=300&fit=cover&g=smart",
            "w=300&h=200&fit=cover&g=entropy",
        )
    ]
    _check_peaks(cases)


def _check_peaks(cases: list[tuple[str, str, str]]) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", _PEAKS, json.dumps(cases)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"},
    )
    for path, query, output, held, estimate in json.loads(ran.stdout):
        name = Path(path).name
        print(f"{name} {query} {output}: held {held / 2**20:.1f} MiB, est. {estimate / 2**20:.1f}")
        assert held <= estimate, (path, query, output)


def test_the_estimate_covers_the_operations(tmp_path: Path) -> None:
    """The §15.1 operations' copies: trim's difference and mask over a whole decode (no
    shrink-on-load), a rotated crop's larger decode, blur's and sharpen's copies, a pad's
    canvas on a tiny source."""
    picture = images.photo((2400, 1800))
    framed = Image.new("RGB", (2400, 1800), (250, 250, 250))
    framed.paste(picture.resize((1600, 1000)), (400, 400))
    files = {
        "photo.jpg": images.encode(picture, "JPEG"),
        "photo.png": images.encode(picture, "PNG"),
        "framed.jpg": images.encode(framed, "JPEG"),
        "alpha.png": images.encode(picture.convert("RGBA"), "PNG"),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "tiny.png").write_bytes(images.encode(picture.resize((10, 10)), "PNG"))
    queries = (
        "w=300&trim=10",
        "w=2000&trim=10&pad=20",
        "w=300&crop=100,100,600,400&rot=90",
        "w=2048&blur=100&flip=hv",
        "w=2048&blur=7&sharpen=10",
        "w=1500&pixelate=16&rot=270",
    )
    cases = [(str(tmp_path / n), q, "jpeg") for n in files for q in queries]
    cases += [(str(tmp_path / "tiny.png"), "w=2048&h=2048&fit=pad&pad=1024", "webp")]
    _check_peaks(cases)


# 8 cold renditions of one 48 MP progressive JPEG through the core, in a fresh process whose
# peak RSS is its own (glibc gives each large buffer back when freed, as in the inspect test).
_CONCURRENT_RENDERS = """
import asyncio, sys
from pathlib import Path
from imgproxy import pipeline
from imgproxy.messages import ImageRequest
from imgproxy.services import Services
from tests.support import settings_for

folder, budget = Path(sys.argv[1]), int(sys.argv[2])
settings = settings_for(
    folder,
    limits={"render_concurrency": 4, "inflight_bytes": budget, "max_source_pixels": 60_000_000},
    cache={"memory_bytes": 0},
)
services = Services.build(settings)

def status(key):
    lines = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in lines if line.startswith(key)).split()[1]) * 1024

async def main():
    warm = ImageRequest("GET", "/media/small.jpg", "w=32")
    assert (await pipeline.serve(services, warm)).status == 200  # libraries loaded
    learn = ImageRequest("GET", "/media/large.jpg", "fm=json")
    assert (await pipeline.serve(services, learn)).status == 200  # facts known
    Path("/proc/self/clear_refs").write_text("5")
    before = status("VmRSS:")
    requests = [ImageRequest("GET", "/media/large.jpg", f"w={60 + i}") for i in range(8)]
    answers = await asyncio.gather(*(pipeline.serve(services, r) for r in requests))
    assert [a.status for a in answers] == [200] * 8, [a.body[:120] for a in answers]
    print(status("VmHWM:") - before)

asyncio.run(main())
"""


def test_concurrent_renders_hold_their_working_memory_within_the_budget(tmp_path: Path) -> None:
    """Four render threads, eight cold renditions of a 48 MP progressive JPEG: each render
    reserves its coefficient buffer (~144 MB) and pixels, not only its source bytes, so
    they run one at a time within a 160 MiB budget instead of four at once (SPEC §11.1)."""
    folder = tmp_path / "media"
    folder.mkdir()
    flat = Image.new("RGB", (8000, 6000), (90, 140, 200))
    (folder / "large.jpg").write_bytes(images.encode(flat, "JPEG", progressive=True))
    (folder / "small.jpg").write_bytes(images.jpeg((64, 48), progressive=True))
    budget = 160 * 2**20
    grown = peak_rss_growth(_CONCURRENT_RENDERS, str(folder), str(budget))
    print(f"8 concurrent renders: peak RSS +{grown / 2**20:.1f} MiB")
    assert grown < budget
