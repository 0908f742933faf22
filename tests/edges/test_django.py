"""The Django storage adapter inside a real Django project (examples/django_site), served by
a real uvicorn process: Django's FileSystemStorage behind imgproxy's contract."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import images
from tests.support.processes import free_port, running

SITE = Path(__file__).resolve().parents[2] / "examples" / "django_site"


@pytest.fixture(scope="module")
def django_asgi() -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "django_site.asgi:application",
        "--port",
        str(port),
        "--app-dir",
        str(SITE),
        "--log-level",
        "warning",
        "--lifespan",
        "off",
    ]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "django_site.settings"}
    with running(command, port, "django asgi", env=env):
        yield f"http://127.0.0.1:{port}"


def test_django_storage_files_are_served(django_asgi: str) -> None:
    page = httpx.get(django_asgi + "/")
    assert page.status_code == 200
    assert "/media/photos/chelsea.png?p=thumb" in page.text  # Django itself still answers
    thumb = httpx.get(
        django_asgi + "/media/photos/chelsea.png?p=thumb", headers={"accept": "image/webp"}
    )
    assert thumb.status_code == 200
    assert thumb.headers["content-type"] == "image/webp"
    assert images.decode(thumb.content).size == (240, 240)
    original = httpx.get(django_asgi + "/media/photos/rocket.jpg")
    assert original.content == (SITE.parent / "media" / "rocket.jpg").read_bytes()
    again = httpx.get(
        django_asgi + "/media/photos/rocket.jpg",
        headers={"if-none-match": original.headers["etag"]},
    )
    assert again.status_code == 304


def test_django_storage_refusals(django_asgi: str) -> None:
    assert httpx.get(django_asgi + "/media/photos/nope.jpg").status_code == 404
    assert httpx.get(django_asgi + "/media/photos/SOURCES.md").status_code == 415
    assert httpx.get(django_asgi + "/media/photos/rocket.jpg?w=10").status_code == 403  # unsigned
    assert httpx.get(django_asgi + "/mediax").status_code == 404  # Django's, not ours
    assert "application/json" not in httpx.get(django_asgi + "/mediax").headers.get(
        "content-type", ""
    )
