"""Each guide under examples/guides/ followed to the letter in a fresh folder (tests/support/
guides.py), then what it promises checked against the real server it started."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from libthumbor import CryptoURL

from tests.support import images, need_binary
from tests.support.foreign_builder import build_urls
from tests.support.guides import ROOT, blocks, follow
from tests.support.processes import free_port, running, served

GUIDES = ROOT / "examples/guides"


def test_django_guide_from_pip_install_to_a_signed_thumbnail(tmp_path: Path) -> None:
    shutil.copy(ROOT / "examples/media/rocket.jpg", tmp_path / "cat.jpg")
    with follow(GUIDES / "django.md", tmp_path) as project:
        assert project.base is not None
        page = httpx.get(project.base + "/photos/")
        assert page.status_code == 200, page.text
        page_text = html.unescape(page.text)
        thumb = re.findall(r'<img src="([^"]+)"', page_text)[0]
        (full,) = re.findall(r'<a href="([^"]+)"', page_text)
        assert thumb == "/img/uploads/photos/cat.jpg?p=thumb"  # a preset: unsigned by default
        answer = httpx.get(project.base + thumb, headers={"accept": "image/webp"})
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "image/webp"
        assert images.decode(answer.content).size == (240, 240)
        assert full.startswith("/img/uploads/photos/cat.jpg?") and "&s=" in full
        signed = httpx.get(project.base + full, headers={"accept": "image/webp"})
        assert signed.status_code == 200
        assert images.decode(signed.content).width == 600
        tampered = full.replace("w=600", "w=601")
        assert httpx.get(project.base + tampered).status_code == 403
        assert httpx.get(project.base + full.split("&s=")[0]).status_code == 403
        assert "srcset=" in page.text  # imgproxy_picture
    # the lifecycle warmed the preset when the photo was saved: imgproxy_warm found it cached
    (warmed,) = [out for out in project.outputs if out.startswith("warm uploads")]
    assert warmed.startswith("warm uploads: made 0, failed 0")
    refused = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", BMP_UPLOAD],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 0, refused.stderr
    assert refused.stdout.strip().splitlines()[-1] == "not_approved"


BMP_UPLOAD = """
from io import BytesIO
from django.core.exceptions import ValidationError
from django.core.files import File
from PIL import Image
from photos.models import Photo
data = BytesIO()
Image.new("RGB", (32, 32)).save(data, "BMP")
try:
    Photo(title="bmp", image=File(data, name="a.bmp")).full_clean()
except ValidationError as error:
    print(error.error_dict["image"][0].code)
"""


def _photo(folder: Path) -> None:
    (folder / "photos").mkdir()
    shutil.copy(ROOT / "examples/media/rocket.jpg", folder / "photos/cat.jpg")


def test_flask_guide(tmp_path: Path) -> None:
    _photo(tmp_path)
    with follow(GUIDES / "flask.md", tmp_path) as project:
        assert project.base is not None
        page = html.unescape(httpx.get(project.base + "/").text)
        (src,) = re.findall(r'src="([^"]+)"', page)
        assert src.startswith("/img/photos/cat.jpg?") and "&s=" in src
        assert images.decode(httpx.get(project.base + src).content).size == (300, 200)
        assert httpx.get(project.base + src.replace("w=300", "w=301")).status_code == 403


def test_fastapi_guide(tmp_path: Path) -> None:
    _photo(tmp_path)
    with follow(GUIDES / "fastapi.md", tmp_path) as project:
        assert project.base is not None
        cat = httpx.get(project.base + "/api/cat").json()
        assert "&s=" in cat["src"]
        assert images.decode(httpx.get(project.base + cat["src"]).content).width == 300
        for candidate in cat["srcset"].split(", "):
            url, width = candidate.rsplit(" ", 1)
            out = images.decode(httpx.get(project.base + url).content)
            assert out.width == int(width[:-1])


def test_the_guides_toml_is_a_valid_configuration(tmp_path: Path) -> None:
    """Every ```toml block of the production and migration guides passes `imgproxy check`."""
    checked = 0
    for name in ("production.md", "migrating.md"):
        for block in blocks(GUIDES / name):
            if block.language != "toml":
                continue
            config = tmp_path / f"{checked}.toml"
            config.write_text(block.text.replace('"/srv/media"', f'"{tmp_path}"'))
            done = subprocess.run(
                [sys.executable, "-m", "imgproxy", "check", "--config", str(config)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, (name, done.stdout, done.stderr)
            checked += 1
    assert checked == 2


def test_the_migration_guide_answers_the_old_hosts_urls_through_its_nginx_blocks(
    tmp_path: Path,
) -> None:
    """The guide's config and nginx server blocks as written (paths and ports aside): a URL
    libthumbor signs and one the PyPI imgproxy builder signs, sent to the old host names,
    come back as the native URL they mean, with its ETag."""
    nginx = need_binary("nginx")
    media = tmp_path / "media"
    media.mkdir()
    (media / "my photo.jpg").write_bytes(images.jpeg((640, 480)))
    toml, site = (
        b.text for b in blocks(GUIDES / "migrating.md") if b.language in ("toml", "nginx")
    )
    config = tmp_path / "imgproxy.toml"
    config.write_text(toml.replace('"/srv/media"', f'"{media}"'))
    with served(config) as server:
        upstream = server.url.removeprefix("http://")
        port = free_port()
        site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
        site = site.replace("127.0.0.1:8080", upstream)
        (tmp_path / "logs").mkdir()
        (tmp_path / "nginx.conf").write_text(
            f"worker_processes 1;\ndaemon off;\nerror_log {tmp_path}/logs/error.log;\n"
            f"pid {tmp_path}/nginx.pid;\nevents {{ worker_connections 64; }}\n"
            f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path}/b;\n"
            f"  proxy_temp_path {tmp_path}/p;\n  fastcgi_temp_path {tmp_path}/f;\n"
            f"  uwsgi_temp_path {tmp_path}/u;\n  scgi_temp_path {tmp_path}/s;\n{site}\n}}\n"
        )
        command = [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
        with running(command, port, "nginx"):
            edge = f"http://127.0.0.1:{port}"
            thumbor = CryptoURL(key="MY_SECURE_KEY").generate(
                width=200, height=100, image_url="my%20photo.jpg"
            )
            (imgproxy,) = build_urls(
                "736563726574",
                "68656C6C6F",
                [{"source": "my photo.jpg", "fields": {"width": 200, "height": 100,
                  "resizing_type": "fill"}, "advanced": []}],
            )  # fmt: skip
            native = httpx.get(f"{server.url}/media/my%20photo.jpg?w=200&h=100&fit=cover")
            assert native.status_code == 200
            for host, path in (("thumbs.example.com", thumbor), ("img.example.com", imgproxy)):
                answer = httpx.get(edge + path, headers={"host": host}, timeout=30)
                assert answer.status_code == 200, (host, path, answer.text)
                assert answer.headers["etag"] == native.headers["etag"], host
                assert answer.content == native.content
                forged = httpx.get(edge + path[:-3] + "png", headers={"host": host})
                assert forged.status_code == 403, (host, forged.status_code)
