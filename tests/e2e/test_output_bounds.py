"""Outputs sized past the limits, sent by many clients at once to a real `imgproxy serve`:
each a 400 naming its limit, the server's memory unmoved and the server healthy after
(SPEC §11.1). A 10x1 PNG with `h=4096&enlarge=1` was a 40960x4096 render (697 MB)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest

from tests.support import images
from tests.support.processes import served

CLIENTS = 24
# The default limits in `media`; `wide` lets sides reach 65536, so the pixel limit and the
# encoders' own limits are what refuse.
STORES = (
    '[stores.media]\nkind = "fs"\nroot = "media"\n'
    '[stores.wide]\nkind = "fs"\nroot = "media"\nmax_output_dimension = 65536\n'
)
HOSTILE = [  # (path, query with {n} for a distinct size per client, the limit it must name)
    ("/media/tiny.png", "h={n}&enlarge=1", "limits.max_output_dimension"),
    ("/media/tiny.png", "h={n}&enlarge=1&fm=webp", "limits.max_output_dimension"),
    ("/media/tiny.png", "h={n}&enlarge=1&fm=auto", "limits.max_output_dimension"),
    ("/wide/tiny.png", "h={n}&enlarge=1&fm=webp", "limits.max_output_pixels"),
    ("/wide/strip.png", "w=1638{d}&enlarge=1&fm=webp", "webp is at most 16383 pixels a side"),
    ("/wide/tiny.png", "w=65536&h=1&fit=fill&enlarge=1&fm=gif", "gif is at most 65535"),
    ("/media/anim.gif", "w={n}&h={n}&fit=fill&enlarge=1", "limits.max_source_pixels"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, psutil.Process]]:
    root = tmp_path_factory.mktemp("output-bounds")
    media = root / "media"
    media.mkdir()
    (media / "tiny.png").write_bytes(images.png((10, 1)))
    (media / "strip.png").write_bytes(images.png((100, 1)))
    (media / "anim.gif").write_bytes(images.gif(4, (10, 10)))
    config = root / "imgproxy.toml"
    config.write_text("[limits]\nrender_concurrency = 2\n" + STORES)
    with served(config) as running:
        yield running.url, psutil.Process(running.process.pid)
    assert "Traceback" not in running.stderr, running.stderr[-3000:]


class PeakRss:
    """The process's largest resident size while the block runs, sampled every 5 ms."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.peak = process.memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


def test_outputs_past_the_limits_are_400s_from_many_clients_at_once(
    server: tuple[str, psutil.Process],
) -> None:
    url, process = server
    with httpx.Client(base_url=url, timeout=60) as http:
        assert http.get("/media/tiny.png?fm=json").status_code == 200  # facts known, warmed up
        assert http.get("/media/tiny.png?h=400&enlarge=1&fm=webp").status_code == 200
        before = process.memory_info().rss
        asks = [
            (path, query.format(n=4096 - i, d=4 + i % 6), named)
            for i in range(CLIENTS)
            for path, query, named in HOSTILE
        ]

        def ask(case: tuple[str, str, str]) -> tuple[str, str, int, str]:
            path, query, named = case
            response = http.get(f"{path}?{query}", headers={"accept": "image/webp"})
            return f"{path}?{query}", named, response.status_code, response.text

        with PeakRss(process) as rss, ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(ask, asks))
        for asked, named, status, text in answers:
            assert status == 400, (asked, text[:300])
            assert '"bad_request"' in text and named in text, (asked, text[:300])
        # One 40960x4096 render alone was 670 MB; the answers are a few hundred bytes each.
        assert rss.peak - before < 64 * 2**20, (before, rss.peak)
        assert http.get("/healthz").status_code == 200
        ordinary = http.get("/media/tiny.png?h=409&enlarge=1")
        assert ordinary.status_code == 200
        assert images.decode(ordinary.content).size == (4090, 409)
        edge = http.get("/wide/strip.png?w=16383&h=1&fit=fill&enlarge=1&fm=webp")
        assert edge.status_code == 200  # just within WebP's limit
        assert images.decode(edge.content).size == (16383, 1)
