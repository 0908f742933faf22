"""The hostile corpus against a real `imgproxy serve` process: each file's exact status and
error code, no 500 ever, the server healthy afterwards and its memory bounded (SPEC §4, §10)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.support import hostile
from tests.support.processes import served

OK = (200, None)
REFUSED = {
    415: "unsupported_format",
    413: "too_large",
    422: "undecodable",
    403: "not_approved",
}

# (store, file) -> (original, rendition ?w=50, metadata ?fm=json) statuses
CASES: dict[tuple[str, str], tuple[int, int, int]] = {
    ("pending", "truncated.jpg"): (200, 422, 200),  # header intact: originals are never decoded
    ("pending", "cut-header.jpg"): (422, 422, 422),
    ("pending", "truncated.png"): (200, 422, 200),
    ("pending", "cut-header.png"): (422, 422, 422),
    ("pending", "random.png"): (415, 415, 415),
    ("pending", "empty.jpg"): (415, 415, 415),
    ("pending", "page.png"): (415, 415, 415),
    ("pending", "vector.png"): (415, 415, 415),
    ("pending", "doc.png"): (415, 415, 415),
    ("pending", "polyglot.gif"): (422, 422, 422),
    ("pending", "polyglot.jpg"): (200, 200, 200),  # a real image: sent as image/jpeg, nosniff
    ("pending", "bomb.png"): (413, 413, 413),
    ("pending", "bomb.jpg"): (413, 413, 413),
    ("pending", "bomb.gif"): (413, 413, 413),
    ("pending", "bomb.webp"): (413, 413, 413),
    ("pending", "bomb-lossless.webp"): (413, 413, 413),
    ("pending", "frames.gif"): (413, 413, 200),  # animated output over max_frames
    ("pending", "photo.tif"): (403, 403, 403),
    ("pending", "photo.bmp"): (403, 403, 403),
    ("pending", "icon.ico"): (403, 403, 403),
    ("pending", "photo.avif"): (403, 403, 403),
    ("pending", "blessed.tif"): (200, 200, 200),  # approved by its sidecar
    ("pending", "broken-sidecar.tif"): (403, 403, 403),  # unreadable sidecar: not approved
    ("approved", "photo.tif"): (200, 200, 200),
    ("approved", "photo.bmp"): (200, 200, 200),
    ("approved", "icon.ico"): (200, 200, 200),
    ("approved", "photo.avif"): (200, 200, 200),
    ("approved", "bomb.bmp"): (413, 413, 413),
    ("approved", "random.png"): (415, 415, 415),
    ("approved", "page.png"): (415, 415, 415),
    ("approved", "revoked.jpg"): (200, 200, 200),  # JPEG needs no approval
    ("small", "big.jpg"): (413, 413, 413),
    ("small", "ok.jpg"): (200, 200, 200),
}


@pytest.fixture(scope="module")
def hostile_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, psutil.Process]]:
    root = tmp_path_factory.mktemp("hostile")
    folders = {name: root / name for name in ("pending", "approved", "small")}
    for folder in folders.values():
        folder.mkdir()
    hostile.write_corpus(folders["pending"], folders["approved"], folders["small"])
    config = root / "imgproxy.toml"
    config.write_text(
        "[limits]\nrender_concurrency = 2\n"
        '[stores.pending]\nkind = "fs"\nroot = "pending"\n'
        '[stores.approved]\nkind = "fs"\nroot = "approved"\napproved = true\n'
        '[stores.small]\nkind = "fs"\nroot = "small"\napproved = true\nmax_source_bytes = 100000\n'
    )
    with served(config) as server:
        yield server.url, psutil.Process(server.process.pid)
    assert "Traceback" not in server.stderr, server.stderr[-3000:]


def check(http: httpx.Client, url: str, status: int) -> None:
    response = http.get(url)
    assert response.status_code == status, (url, response.text[:300])
    if status == 200:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-type"].startswith(("image/", "application/json"))
    else:
        assert response.json()["error"] == REFUSED[status], (url, response.text)
        assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("where", "statuses"), list(CASES.items()), ids=[f"{s}/{n}" for s, n in CASES]
)
def test_each_hostile_file_gets_its_exact_answer(
    hostile_server: tuple[str, psutil.Process],
    where: tuple[str, str],
    statuses: tuple[int, int, int],
) -> None:
    url, _ = hostile_server
    store, name = where
    with httpx.Client(base_url=url, timeout=30) as http:
        for query, status in zip(("", "?w=50", "?fm=json"), statuses, strict=True):
            check(http, f"/{store}/{name}{query}", status)
            if query == "?w=50" and status == 413 and name == "frames.gif":
                check(http, f"/{store}/{name}?w=50&fm=png", 200)  # first frame only
        assert http.get("/small/ok.jpg?w=20").status_code == 200  # still healthy


def test_memory_stays_bounded_under_bombs(hostile_server: tuple[str, psutil.Process]) -> None:
    url, process = hostile_server
    bombs = [f"/{s}/{n}" for (s, n), v in CASES.items() if 413 in v or 422 in v]
    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(2):  # warm: allocators and caches reach their working size
            for path in bombs:
                http.get(path + "?w=50")
        before = process.memory_info().rss
        for _ in range(5):
            for path in bombs:
                for query in ("", "?w=50", "?w=60&fm=webp"):
                    assert http.get(path + query).status_code in (200, 413, 422)
        after = process.memory_info().rss
        assert http.get("/small/ok.jpg?w=21").status_code == 200
    print(f"server RSS before bombs {before / 2**20:.1f} MiB, after {after / 2**20:.1f} MiB")
    assert after - before < 48 * 2**20
