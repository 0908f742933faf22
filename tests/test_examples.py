"""Each example started for real: a real server process, real requests, real images back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests import images
from tests.services import imgproxy_process

ROOT = Path(__file__).resolve().parent.parent


def test_db_images(tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    seeded = subprocess.run(
        [sys.executable, str(ROOT / "examples/db_images/seed.py"), "--db", str(database)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "users 1-4" in seeded.stdout
    config = ROOT / "examples/db_images/imgproxy.toml"
    with imgproxy_process(config, IMGPROXY_STORES__AVATARS__URL=f"sqlite:///{database}") as base:
        picture = httpx.get(base + "/avatars/1?p=avatar", headers={"accept": "image/webp"})
        assert picture.status_code == 200
        assert picture.headers["content-type"] == "image/webp"
        assert images.decode(picture.content).size == (128, 128)
        modified = picture.headers["last-modified"]
        again = httpx.get(
            base + "/avatars/1?p=avatar",
            headers={"accept": "image/webp", "if-modified-since": modified},
        )
        assert again.status_code == 304
        original = httpx.get(base + "/avatars/2")
        assert original.headers["content-type"] == "image/jpeg"  # sniffed, not the mime column
        missing = httpx.get(base + "/avatars/99?w=64")
        assert missing.status_code == 404
        assert images.decode(missing.content).size == (64, 64)  # the placeholder, rendered
        assert missing.headers["cache-control"] == "public, max-age=60"
        pending = httpx.get(base + "/avatars/4?w=64")
        assert pending.status_code == 403
        assert pending.json()["error"] == "not_approved"
        assert httpx.get(base + "/avatars/3?w=64").status_code == 200  # PNG needs no approval
        assert httpx.get(base + "/avatars/1%20OR%201=1").status_code == 404
