"""Each example started for real: a real server process, real requests, real images back."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.support import images
from tests.support.processes import free_port, imgproxy_process, running

ROOT = Path(__file__).resolve().parents[2]


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


def serve_example(command: list[str], port: int, *, cwd: Path = ROOT, **env: str) -> Any:
    return running(command, port, command[-1], cwd=str(cwd), env={**os.environ, **env})


def uvicorn_cmd(app: str, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--port",
        str(port),
        "--log-level",
        "warning",
        *extra,
    ]


def image_urls(page: str) -> list[str]:
    return re.findall(r'src="([^"]+)"', html.unescape(page))


def test_starlette_with_authorize_hook() -> None:
    port = free_port()
    with serve_example(uvicorn_cmd("examples.starlette_app:app", port), port):
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base) as browser:
            public, private = image_urls(browser.get("/").text)
            assert images.decode(browser.get(public).content).size == (200, 133)  # 451x300
            refused = browser.get(private)
            assert refused.status_code == 403
            assert refused.json()["error"] == "forbidden"
            browser.get("/login?user=alice")  # the session cookie is set
            allowed = browser.get(private)
            assert allowed.status_code == 200
            etag = allowed.headers["etag"]
        stranger = httpx.get(base + private, headers={"if-none-match": etag})
        assert stranger.status_code == 403  # no 304 that would confirm the file exists


def test_fastapi_gallery() -> None:
    port = free_port()
    with serve_example(uvicorn_cmd("examples.fastapi_app:app", port), port):
        base = f"http://127.0.0.1:{port}"
        gallery = httpx.get(base + "/api/gallery").json()
        photos = [p for p in (ROOT / "examples/media").iterdir() if p.suffix in (".png", ".jpg")]
        assert len(gallery) == len(photos)
        for item in gallery:
            response = httpx.get(base + item["src"], headers={"accept": "image/webp"})
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/webp"
            for candidate in item["srcset"].split(", "):
                url, width = candidate.rsplit(" ", 1)
                out = images.decode(httpx.get(base + url).content)
                assert out.width <= int(width[:-1])


def test_fastapi_upload_is_checked_by_the_servers_rules(tmp_path: Path) -> None:
    """An UploadFile goes through imgproxy.inspect: accepted files are served, hostile ones
    get the server's own status and code and are never kept."""
    from tests.support import hostile

    port = free_port()
    command = uvicorn_cmd("examples.fastapi_app:app", port)
    with serve_example(command, port, EXAMPLE_UPLOADS=str(tmp_path)):
        base = f"http://127.0.0.1:{port}"
        accepted = httpx.post(
            base + "/api/upload", files={"file": ("cat.jpg", images.jpeg((400, 300)))}
        )
        assert accepted.status_code == 201, accepted.text
        body = accepted.json()
        assert (body["width"], body["height"]) == (400, 300)
        thumb = httpx.get(base + body["thumb"])
        assert thumb.status_code == 200 and images.decode(thumb.content).size == (240, 240)
        for name, data, status, code in (
            ("photo.bmp", images.encode(images.photo((32, 32)), "BMP"), 403, "not_approved"),
            ("page.png", b"<html><script>alert(1)</script></html>", 415, "unsupported_format"),
            ("bomb.png", hostile.png_bomb(), 413, "too_large"),
            ("cut.jpg", images.jpeg((200, 150))[:900], 422, "undecodable"),
        ):
            refused = httpx.post(base + "/api/upload", files={"file": (name, data)})
            assert refused.status_code == status, (name, refused.text)
            assert refused.json()["detail"]["error"] == code
        assert len(list(tmp_path.iterdir())) == 1  # only the accepted file was kept


def test_flask_wsgi_middleware() -> None:
    port = free_port()
    command = [sys.executable, str(ROOT / "examples/flask_app.py"), "--port", str(port)]
    with serve_example(command, port):
        base = f"http://127.0.0.1:{port}"
        page = httpx.get(base + "/")
        assert page.status_code == 200
        (src,) = image_urls(page.text)
        assert "&s=" in src  # signed by the template global
        response = httpx.get(base + src)
        assert response.status_code == 200
        assert images.decode(response.content).size == (300, 200)
        assert (
            httpx.get(base + src, headers={"if-none-match": response.headers["etag"]}).status_code
            == 304
        )
        assert httpx.get(base + src.replace("w=300", "w=301")).status_code == 403
        assert httpx.get(base + "/mediax").status_code == 404  # Flask's own 404
        assert "application/json" not in httpx.get(base + "/mediax").headers["content-type"]


def test_django_wsgi_runserver_with_template_tags(tmp_path: Path) -> None:
    port = free_port()
    site = ROOT / "examples/django_site"
    env = {"DJANGO_SETTINGS_MODULE": "django_site.settings", "DJANGO_SITE_DATA": str(tmp_path)}
    migrate = [sys.executable, "manage.py", "migrate", "--verbosity", "0"]
    subprocess.run(migrate, cwd=site, env={**os.environ, **env}, check=True, timeout=60)
    command = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    with serve_example(command, port, cwd=site, **env):
        base = f"http://127.0.0.1:{port}"
        page = httpx.get(base + "/")
        assert page.status_code == 200
        thumb, rocket = image_urls(page.text)
        assert "&s=" in rocket  # {% imgproxy_url %} signs transform URLs
        assert images.decode(httpx.get(base + thumb).content).size == (240, 240)
        assert images.decode(httpx.get(base + rocket).content).size == (320, 200)
        srcset = re.search(r'srcset="([^"]+)"', html.unescape(page.text))
        assert srcset is not None
        for candidate in srcset.group(1).split(", "):
            url, _ = candidate.rsplit(" ", 1)
            assert httpx.get(base + url).status_code == 200
