"""The demo's URL builder over HTTP: it signs URLs with the server's key, so only for the
images the page lists; anything else gets an error JSON and no URL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from imgproxy.server import StandaloneApp
from tests.support import images, settings_for


def _ask(folder: Path, **query: str) -> tuple[int, dict[str, str]]:
    settings = settings_for(folder, security={"keys": ["k1"]}, server={"demo": True})
    app = StandaloneApp(settings)

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            return await client.get("/_demo/url", params=query)

    response = asyncio.run(get())
    return response.status_code, response.json()


@pytest.fixture
def media(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(images.jpeg((40, 30)))
    (folder / "scan.tif").write_bytes(images.jpeg((40, 30)))  # the grid lists no .tif
    (folder / "notes.txt").write_text("secret")
    return folder


def test_a_listed_image_gets_a_signed_url(media: Path) -> None:
    status, body = _ask(media, image=json.dumps(["media", "a.jpg"]), w="20", q="")
    assert status == 200
    assert body["url"].startswith("/media/a.jpg?w=20&s=") and "error" not in body


@pytest.mark.parametrize(
    "image",
    [
        ["media", "scan.tif"],
        ["media", "notes.txt"],
        ["media", "../media/a.jpg"],
        ["media", "missing.jpg"],
        ["other", "a.jpg"],
        "media/a.jpg",
        ["media"],
    ],
)
def test_an_unlisted_file_gets_an_error_and_no_url(media: Path, image: object) -> None:
    status, body = _ask(media, image=json.dumps(image), w="20")
    assert status == 200  # the page reads the JSON either way
    assert "url" not in body
    assert body["error"] == "image: pick one of the listed images"


def test_a_bad_parameter_is_left_for_the_server_to_explain(media: Path) -> None:
    """The builder only signs; the image request answers 400 with the detail (shown by the
    page), so the playground teaches the real error."""
    status, body = _ask(media, image=json.dumps(["media", "a.jpg"]), q="0")
    assert status == 200 and body["url"].startswith("/media/a.jpg?q=0&s=")


def test_a_deeply_nested_image_field_is_an_error_not_a_500(media: Path) -> None:
    status, body = _ask(media, image="[" * 5_000 + "]" * 5_000, w="20")  # past the recursion limit
    assert status == 200 and "error" in body and "url" not in body
