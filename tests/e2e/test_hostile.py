"""The hostile corpus against a real `imgproxy serve` process: each file's exact status and
error code, no 500 ever, the server healthy afterwards and its memory bounded (SPEC §4, §10)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.support import hostile
from tests.support.hostile import CASES, REFUSED
from tests.support.processes import served


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
    config.write_text("[limits]\nrender_concurrency = 2\n" + hostile.CORPUS_STORES)
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
