"""`wm=NAME` through a real `imgproxy serve` with 2 workers and through the ASGI app (SPEC
§15.1): rewriting the mark's file changes every marked rendition's ETag and pixels (and no
unmarked one's); an unknown name is a 400 listing the known ones; a mark its store may not
serve fails as that file would as a source; many marked renditions at once, a huge mark
among them, are never a 500 and stay within the in-flight budget."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imgproxy import ImageProxy
from tests.e2e.test_imgproxy_urls import KEY, SALT, sign
from tests.support import images, settings_for
from tests.support.processes import Served, served

RED, GREEN = (255, 0, 0), (0, 255, 0)
MARKED = "/media/photo.jpg?w=200&wm=logo"  # 200x150, the mark 4 px in from the se corner
CORNER = (200 - 4 - 5, 150 - 4 - 5)
CLIENTS = 16
INFLIGHT = 128 * 1024 * 1024
HUGE_MARK_MB = 4000 * 4000 * 12 / 2**20  # its decode as render/memory.py counts it: > INFLIGHT
# A worker warm measured ~42 MB; the rest is slack for the freed blocks that glibc keeps in
# each render thread's malloc arena (peaks seen with the fix: 165-300 MB; without: 600-800).
BASE_MB = 200


def _mark(colour: tuple[int, int, int], size: tuple[int, int] = (30, 20)) -> bytes:
    return images.encode(Image.new("RGBA", size, (*colour, 255)), "PNG")


def _rewrite(path: Path, data: bytes) -> None:
    """In place, as an editor or a deploy would, with a visibly later mtime."""
    path.write_bytes(data)
    later = time.time() + 2
    os.utime(path, (later, later))


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("watermarks")
    media, brand = root / "media", root / "brand"
    media.mkdir()
    brand.mkdir()
    (media / "photo.jpg").write_bytes(images.jpeg((640, 480)))
    (brand / "logo.png").write_bytes(_mark(RED))
    (brand / "mark.tiff").write_bytes(images.encode(Image.new("RGB", (20, 20), RED), "TIFF"))
    # 4000x4000: its decode (64 MB) is far larger than any output it is drawn on
    (brand / "huge.png").write_bytes(_mark(RED, (4000, 4000)))
    return media, brand


@pytest.fixture(scope="module")
def server(folders: tuple[Path, Path]) -> Iterator[Served]:
    root = folders[0].parent
    config = root / "imgproxy.toml"
    config.write_text(
        f"[limits]\nrender_concurrency = 6\ninflight_bytes = {INFLIGHT}\n"
        '[stores.media]\nkind = "fs"\nroot = "media"\napproved = true\n'
        '[stores.brand]\nkind = "fs"\nroot = "brand"\n'
        '[watermarks.logo]\nstore = "brand"\npath = "logo.png"\nmargin = 4\n'
        '[watermarks.tiff]\nstore = "brand"\npath = "mark.tiff"\n'
        '[watermarks.huge]\nstore = "brand"\npath = "huge.png"\nscale = 0.25\n'
        '[watermarks.gone]\nstore = "brand"\npath = "missing.png"\n'
    )
    with served(config, "--workers", "2") as running:
        yield running
    assert "Traceback" not in running.stderr, running.stderr[-3000:]


def _many(url: str, headers: dict[str, str] | None = None) -> list[httpx.Response]:
    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(lambda _: httpx.get(url, headers=headers, timeout=60), range(CLIENTS)))


def test_rewriting_the_mark_changes_every_marked_etag_on_every_worker(
    server: Served, folders: tuple[Path, Path]
) -> None:
    plain = httpx.get(server.url + "/media/photo.jpg?w=200").headers["etag"]
    before = _many(server.url + MARKED)
    assert {r.status_code for r in before} == {200}
    (etag,) = {r.headers["etag"] for r in before}
    assert etag != plain
    assert images.rgb(images.decode(before[0].content), CORNER)[0] > 200  # red

    _rewrite(folders[1] / "logo.png", _mark(GREEN))
    after = _many(server.url + MARKED, {"if-none-match": etag})
    assert {r.status_code for r in after} == {200}  # never a 304 for the old mark
    (new_etag,) = {r.headers["etag"] for r in after}
    assert new_etag != etag
    r, g, _ = images.rgb(images.decode(after[0].content), CORNER)
    assert g > 200 and r < 60  # green now, from every worker
    assert {httpx.get(server.url + "/media/photo.jpg?w=200").headers["etag"]} == {plain}


def test_an_unknown_watermark_is_400_listing_the_known_ones(server: Served) -> None:
    answer = httpx.get(server.url + "/media/photo.jpg?w=200&wm=nope")
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith("wm: unknown watermark 'nope' (known: gone, huge")


def test_a_mark_its_store_may_not_serve_fails_as_that_source_would(server: Served) -> None:
    as_source = httpx.get(server.url + "/brand/mark.tiff?w=20")
    as_mark = httpx.get(server.url + "/media/photo.jpg?w=200&wm=tiff")
    assert as_source.status_code == as_mark.status_code == 403
    assert as_source.json()["error"] == as_mark.json()["error"]
    missing = httpx.get(server.url + "/media/photo.jpg?w=200&wm=gone")
    assert missing.status_code == 404 and "watermark 'gone'" in missing.json()["detail"]


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _workers(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def test_many_marked_renditions_at_once_a_huge_mark_among_them(server: Served) -> None:
    """Each huge-marked render counts the mark's whole decode in the in-flight budget: more
    than all of it, so each runs alone (SPEC §11.1's "a share larger than the budget")
    rather than 6 at once: no worker's peak passes a base plus that one render."""
    workers = _workers(server.process.pid)  # the 2 workers (and a resource tracker)
    assert len(workers) >= 2
    urls = [f"{server.url}/media/photo.jpg?w={100 + i}&wm=logo" for i in range(CLIENTS)]
    urls += [f"{server.url}/media/photo.jpg?w={300 + i}&wm=huge" for i in range(12)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(lambda url: httpx.get(url, timeout=120), urls))
    assert {a.status_code for a in answers} <= {200, 503}, {a.text for a in answers}
    assert sum(a.status_code == 200 for a in answers) >= len(urls) // 2
    huge = images.decode(next(a for a in answers[CLIENTS:] if a.status_code == 200).content)
    side = huge.width // 4  # scale = 0.25: a square mark that wide, 16 px in from the corner
    row = [images.rgb(huge, (x, huge.height - 16 - side // 2)) for x in range(huge.width)]
    assert abs(sum(px[0] > 200 and px[1] < 60 for px in row) - side) <= 2
    peaks = [_peak_rss_mb(pid) for pid in workers]
    print("worker peak RSS (MB):", peaks)
    assert max(peaks) < BASE_MB + max(INFLIGHT / 2**20, HUGE_MARK_MB), peaks


def test_through_the_asgi_app_and_the_imgproxy_dialect(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (media / "photo.jpg").write_bytes(images.jpeg((640, 480)))
    (media / "logo.png").write_bytes(_mark(RED))
    settings = settings_for(
        media,
        watermarks={"logo": {"store": "media", "path": "logo.png", "margin": 4}},
        dialects={
            "imgproxy": {"store": "media", "keys": [KEY], "salts": [SALT], "watermark": "logo"}
        },
    )
    foreign = sign("/rs:fit:200:0/wm:1/plain/photo.jpg@jpg")

    async def etags(client: httpx.AsyncClient, colour: int) -> tuple[str, str]:
        native = await client.get("/media/photo.jpg?w=200&wm=logo&fm=jpeg")
        dialect = await client.get(foreign)
        plain = await client.get("/media/photo.jpg?w=200&fm=jpeg")
        for answer in (native, dialect, plain):
            assert answer.status_code == 200, answer.text
        assert images.rgb(images.decode(dialect.content), CORNER)[colour] > 200
        assert dialect.headers["etag"] == native.headers["etag"] != plain.headers["etag"]
        return native.headers["etag"], plain.headers["etag"]

    async def run() -> None:
        transport = httpx.ASGITransport(app=ImageProxy(settings))  # one app, before and after
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            marked, plain = await etags(client, 0)  # red
            _rewrite(media / "logo.png", _mark(GREEN))
            changed, same = await etags(client, 1)  # green
            assert changed != marked and same == plain

    asyncio.run(run())
