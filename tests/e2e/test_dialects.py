"""The same source through all three dialects at once (SPEC §15): URLs made by what we did
not write (libthumbor for thumbor's, the PyPI imgproxy builder for imgproxy's) and the native
URL, many clients at once against `imgproxy serve`: one render per distinct transform, one
ETag and the same bytes for every spelling of it, and a purge of the source removes the
renditions whichever dialect asked for them."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from libthumbor import CryptoURL

from imgproxy.urls import sign_url
from tests.support import images, metric, write_config
from tests.support.foreign_builder import build_urls
from tests.support.processes import served

NATIVE_KEY = "native-key"
THUMBOR_KEY = "thumbor-key"
KEY, SALT = "736563726574", "68656C6C6F"
CLIENTS = 24


def spellings() -> dict[str, list[str]]:
    """Each transform (by its native query) -> its native, thumbor and imgproxy URLs."""
    thumbor = CryptoURL(key=THUMBOR_KEY)
    built = build_urls(
        KEY,
        SALT,
        [
            {"source": "photo.jpg", "fields": {"width": 100, "height": 100,
                                               "resizing_type": "fill"}, "advanced": []},
            {"source": "photo.jpg", "fields": {"width": 200, "resizing_type": "fit"},
             "advanced": []},
            {"source": "photo.jpg", "fields": {"width": 120, "resizing_type": "fit",
                                               "extension": "webp"}, "advanced": []},
            {"source": "photo.jpg", "fields": {"width": 90, "resizing_type": "fit"},
             "advanced": ["rot:90", "bl:2"]},
        ],
    )  # fmt: skip
    thumbors = [
        thumbor.generate(width=100, height=100, image_url="photo.jpg"),
        thumbor.generate(width=200, height=0, fit_in=True, image_url="photo.jpg"),
        thumbor.generate(
            width=120, height=0, fit_in=True, filters=["format(webp)"], image_url="photo.jpg"
        ),
        None,  # thumbor rotates counter-clockwise after fitting: not this rendition
    ]
    natives = ["w=100&h=100&fit=cover", "w=200", "w=120&fm=webp", "w=90&rot=90&blur=2"]
    found: dict[str, list[str]] = {}
    for native, imgproxy_url, thumbor_url in zip(natives, built, thumbors, strict=True):
        urls = [sign_url(f"/media/photo.jpg?{native}", NATIVE_KEY), "/imgproxy" + imgproxy_url]
        if thumbor_url is not None:
            urls.append("/thumbor" + thumbor_url)
        found[native] = urls
    return found


def test_three_dialects_at_once_make_one_render_per_transform_and_purge_together(
    media: Path, tmp_path: Path
) -> None:
    (media / "photo.jpg").write_bytes(images.jpeg((640, 480)))
    dialects: dict[str, dict[str, Any]] = {
        "dialects.thumbor": {"store": "media", "security_key": THUMBOR_KEY},
        "dialects.imgproxy": {"store": "media", "keys": [KEY], "salts": [SALT]},
    }
    config = write_config(
        tmp_path,
        media,
        security={"keys": [NATIVE_KEY]},
        cache={"disk_path": str(tmp_path / "disk")},
        **dialects,
    )
    urls = spellings()
    asks = [(native, url) for native, some in urls.items() for url in some] * 6

    def ask(pair: tuple[str, str]) -> tuple[str, str, int, str, bytes]:
        native, url = pair
        answer = httpx.get(base + url, timeout=60)
        return native, url, answer.status_code, answer.headers.get("etag", ""), answer.content

    with served(config) as server:
        base = server.url
        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(ask, asks))
        assert metric(base, "imgproxy_renders_total") == len(urls)
        seen: dict[str, set[tuple[str, bytes]]] = defaultdict(set)
        for native, url, status, etag, body in answers:
            assert status == 200, (url, body[:200])
            seen[native].add((etag, body))
        assert all(len(kinds) == 1 for kinds in seen.values()), {k: len(v) for k, v in seen.items()}
        assert images.decode(next(iter(seen["w=90&rot=90&blur=2"]))[1]).size == (90, 120)

        purged = subprocess.run(
            [sys.executable, "-m", "imgproxy", "purge", "media/photo.jpg", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert purged.returncode == 0, purged.stderr
        for native, some in urls.items():
            assert httpx.get(base + some[-1], timeout=60).status_code == 200, native
        assert metric(base, "imgproxy_renders_total") == 2 * len(urls)
    assert "Traceback" not in server.stderr, server.stderr[-3000:]
