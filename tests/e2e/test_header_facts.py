"""Header facts are header facts (SPEC §11.1) against a real `imgproxy serve`: the first HEAD,
original or `fm=json` of a 49 MP PNG reads its header, never decodes its pixels, however many
clients ask at once; a JPEG whose header Pillow would take seconds to parse is refused before
Pillow opens it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
from PIL import Image

from tests.support import hostile, images, write_config
from tests.support.processes import served

SIDE = 7000  # 49 MP: a full decode is 196 MB of pixels


def peak_rss(process: psutil.Process) -> int:
    """The process's high-water mark (VmHWM): a decode between two samples is not missed."""
    status = Path(f"/proc/{process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def test_first_sights_of_a_large_png_read_only_its_header(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    data = images.encode(Image.new("RGB", (SIDE, SIDE), (200, 30, 40)), "PNG")
    for n in range(12):  # each a version seen for the first time
        (media / f"big{n}.png").write_bytes(data)
    (media / "small.png").write_bytes(images.png((64, 48)))
    config = write_config(tmp_path, media, limits={"render_concurrency": 2})
    with served(config) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        process = psutil.Process(server.process.pid)
        assert http.get("/media/small.png?fm=json").status_code == 200  # plugins loaded
        before = peak_rss(process)

        def first_sight(n: int) -> httpx.Response:
            path = f"/media/big{n}.png"
            if n % 3 == 0:
                return http.head(path)
            return http.get(path + ("?fm=json" if n % 3 == 1 else ""))

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(first_sight, range(12)))
        grown = peak_rss(process) - before
    assert [answer.status_code for answer in answers] == [200] * 12
    for n, answer in enumerate(answers):
        if n % 3 == 1:
            assert (answer.json()["width"], answer.json()["height"]) == (SIDE, SIDE)
        elif n % 3 == 2:
            assert answer.content == data
    print(f"12 first sights of a {SIDE}x{SIDE} PNG: peak RSS +{grown / 2**20:.1f} MiB")
    assert grown < 48 * 2**20  # one decode is 196 MB


def test_a_flood_of_exif_segments_is_refused_before_pillow_parses_it(tmp_path: Path) -> None:
    """700 APP1 Exif segments of 64 KiB (44 MB): Pillow copies all it has read so far at each
    one, seconds of work for a 64x64 image. 413 at once, for every answer that reads it."""
    media = tmp_path / "media"
    media.mkdir()
    (media / "flood.jpg").write_bytes(hostile.exif_segment_flood(700))
    (media / "ok.jpg").write_bytes(images.jpeg((64, 48)))
    config = write_config(tmp_path, media, limits={"render_concurrency": 2})
    queries = ("", "?w=50", "?fm=json") * 4
    with served(config) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        with ThreadPoolExecutor(len(queries)) as pool:
            answers = list(pool.map(lambda q: http.get("/media/flood.jpg" + q), queries))
        assert http.get("/media/ok.jpg?w=20").status_code == 200
    assert [answer.status_code for answer in answers] == [413] * len(queries)
    assert all("Exif segments" in answer.json()["detail"] for answer in answers)
