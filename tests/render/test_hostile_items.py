"""Issue 21 (decoders) against a real `imgproxy serve`: what a HEIF or AVIF file's items make
libheif and libavif do, read from the boxes before either opens the file. An overlay tree
that multiplies one tile's decode, an overlay of many references to one large image, an AV1
frame larger than the `ispe` and the track header that declare it: each refused at once
(413/422), sent many at a time, while a JPEG queued behind them on the one render thread
is answered promptly and the server's peak RSS barely moves.

The files are real: heif-enc's HEVC tile and Pillow's AV1 frames, with boxes written
around them by tests/support/hostile.py (no wall clock decides what is refused: the
thresholds below only tell a refusal from decoding; before the fix the JPEG waited 82 to
114 s behind the trees here).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest
from PIL import Image

from imgproxy import headers, inspect, render
from imgproxy.errors import TooLarge, Undecodable
from imgproxy.settings import Settings
from tests.support import hostile, images, need_binary
from tests.support.processes import peak_rss, served

MAX_PIXELS = 16_000_000  # the server's max_source_pixels: a 4096x4096 frame is over it
FLAT = (10, 100, 200)
CLIENTS = 6  # requests of each hostile file at once, each for another rendition
PROMPT = 5.0  # seconds: a refusal, or a JPEG not queued behind decodes (before: 82..114 s)
RSS_GROWTH = 40 * 2**20  # peak RSS: before the fix the hidden frames took 35..140 MB more


def _avif(size: tuple[int, int], frames: int = 1) -> bytes:
    pictures = [Image.new("RGB", size, (60 * i, 100, 200)) for i in range(frames)]
    extra = {"save_all": True, "append_images": pictures[1:]} if frames > 1 else {}
    return images.encode(pictures[0], "AVIF", speed=10, quality=30, **extra)


@pytest.fixture(scope="module")
def corpus() -> dict[str, bytes]:
    need_binary("heif-enc")
    pytest.importorskip("pi_heif")
    tile = images.heif(Image.new("RGB", (64, 64), FLAT), quality=30)
    large = images.heif(Image.new("RGB", (1024, 1024), FLAT), quality=30)
    return {
        "large.heic": large,
        "tree.heic": hostile.heif_overlay_tree(tile, 5, 10),  # 100,000 decodes of 64x64
        "wide.heic": hostile.heif_overlay_tree(large, 1, 20),  # 20 x 1 MP: 21 MP decoded
        "hidden.avif": hostile.avif_hidden_frame(_avif((4096, 4096))),  # 16.8 MP: over
        "hidden-small.avif": hostile.avif_hidden_frame(_avif((2048, 2048))),
        "hidden-sequence.avif": hostile.avif_hidden_frame(_avif((2048, 2048), 4)),
        # Served as before: an overlay of three tiles, the AVIFs as Pillow wrote them.
        "overlay.heic": hostile.heif_overlay_tree(tile, 1, 3),
        "small.avif": _avif((2048, 2048)),
        "sequence.avif": _avif((2048, 2048), 4),
        "alpha.heic": images.heif(images.photo((301, 203), "RGBA"), thumbnail=64),
        "ok.jpg": images.jpeg((640, 480)),
        "ok.heic": tile,
    }


@pytest.fixture(scope="module")
def server(
    corpus: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, psutil.Process]]:
    root = tmp_path_factory.mktemp("items")
    (root / "media").mkdir()
    for name, data in corpus.items():
        (root / "media" / name).write_bytes(data)
    config = root / "imgproxy.toml"
    config.write_text(
        f"[limits]\nrender_concurrency = 1\nmax_source_pixels = {MAX_PIXELS}\n"
        "[cache]\nmemory_bytes = 0\n"
        '[stores.media]\nkind = "fs"\nroot = "media"\napproved = true\n'
    )
    with served(config) as server, httpx.Client(base_url=server.url, timeout=120) as http:
        for name in ("ok.jpg", "ok.heic", "small.avif"):  # the decoders loaded, once
            assert http.get(f"/media/{name}?w=40").status_code == 200
        yield server.url, psutil.Process(server.process.pid)
    assert "Traceback" not in server.stderr, server.stderr[-3000:]


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("tree.heic", 422),  # overlays of overlays
        ("wide.heic", 413),  # more pixels decoded than max_source_pixels
        ("hidden.avif", 413),  # the AV1 frame is over max_source_pixels
        ("hidden-small.avif", 422),  # under it, but larger than the `ispe`
        ("hidden-sequence.avif", 422),  # the first sample's frame, larger than the track's
    ],
)
def test_refused_at_once_while_a_jpeg_behind_is_served(
    server: tuple[str, psutil.Process], name: str, status: int
) -> None:
    url, process = server
    before = peak_rss(process)
    answers: list[tuple[int, float, str]] = []

    def fetch(query: str) -> None:
        started = time.monotonic()
        with httpx.Client(base_url=url, timeout=120) as http:
            response = http.get(f"/media/{name}{query}")
        answers.append((response.status_code, time.monotonic() - started, query))

    queries = [f"?w={40 + i}" for i in range(CLIENTS - 2)] + ["?fm=json", ""]
    clients = [threading.Thread(target=fetch, args=(query,)) for query in queries]
    for client in clients:
        client.start()
    time.sleep(0.2)  # the hostile requests first; the JPEG queues behind them
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=120) as http:
        jpeg = http.get("/media/ok.jpg?w=33")
    behind = time.monotonic() - started
    for client in clients:
        client.join()
    assert jpeg.status_code == 200
    assert behind < PROMPT, f"the JPEG behind {name} waited {behind:.1f} s"
    assert sorted(code for code, _, _ in answers) == [status] * CLIENTS, answers
    assert max(seconds for _, seconds, _ in answers) < PROMPT, answers
    assert peak_rss(process) - before < RSS_GROWTH


@pytest.mark.parametrize(
    "name", ["overlay.heic", "large.heic", "alpha.heic", "small.avif", "sequence.avif"]
)
def test_honest_files_are_served(server: tuple[str, psutil.Process], name: str) -> None:
    url, _ = server
    with httpx.Client(base_url=url, timeout=60) as http:
        assert http.get(f"/media/{name}?w=40").status_code == 200
        facts = http.get(f"/media/{name}?fm=json").json()
        assert facts["width"] in (64, 301, 1024, 2048)


def test_item_work_reads_the_tree(corpus: dict[str, bytes]) -> None:
    tree = headers.item_work(corpus["tree.heic"])
    assert tree is not None and tree.depth > headers.MAX_DERIVED_DEPTH
    wide = headers.item_work(corpus["wide.heic"])
    assert wide == headers.ItemWork(1, 20, 20 * 1024 * 1024, None)
    assert headers.item_work(corpus["overlay.heic"]) == headers.ItemWork(1, 3, 3 * 64 * 64, None)
    grid = images.heif(images.photo((64, 48)))  # heif-enc: one 64x64 tile cropped to 64x48
    assert headers.item_work(grid) == headers.ItemWork(1, 1, 64 * 48, None)
    # A grid of one 302x204 tile, its alpha (an auxiliary grid) and thumbnail: the photo.
    assert headers.item_work(corpus["alpha.heic"]) == headers.ItemWork(1, 1, 301 * 203, None)
    assert headers.item_work(images.jpeg((64, 48))) is None


def test_av1_frames_behind_the_declared_size(corpus: dict[str, bytes]) -> None:
    for name in ("hidden.avif", "hidden-small.avif", "hidden-sequence.avif"):
        work = headers.item_work(corpus[name])
        assert work is not None and work.hidden is not None, name
        assert work.hidden in ((4096, 4096), (2048, 2048))
    assert headers.declared_size("AVIF", corpus["hidden.avif"]) == (4096, 4096)
    for name in ("small.avif", "sequence.avif"):
        assert headers.item_work(corpus[name]) == headers.ItemWork(
            0, 1 + (name == "sequence.avif"), 2048 * 2048, None
        )


def test_inspect_refuses_before_decoding(corpus: dict[str, bytes]) -> None:
    """`inspect(approved=True)` spent 5.5 to 13 s decoding a 30-reference overlay."""
    settings = Settings()  # max_source_pixels 50 MP
    assert inspect(corpus["overlay.heic"], settings=settings, approved=True).width == 64
    wide = hostile.heif_overlay_tree(corpus["large.heic"], 1, 60)  # 60 x 1 MP
    with pytest.raises(TooLarge):
        inspect(wide, settings=settings, approved=True)
    for name in ("tree.heic", "hidden-small.avif"):
        with pytest.raises(Undecodable):
            inspect(corpus[name], settings=settings, approved=True)


def test_an_item_flood_is_refused_after_a_bounded_walk() -> None:
    """A million items: the walk (in the event loop, before a thread is taken) reads no more
    than ENTRIES_READ of them, and such a file is one no decoder should walk either."""
    flood = hostile.heif_item_flood(1_000_000)
    started = time.monotonic()
    work = headers.item_work(flood)
    assert headers.declared_size("HEIF", flood) is None
    assert time.monotonic() - started < 1.0  # the whole of it: 2.5 s
    assert work is not None and work.decodes > headers.MAX_DECODES
    with pytest.raises(TooLarge):
        render.check_items(flood, MAX_PIXELS)
