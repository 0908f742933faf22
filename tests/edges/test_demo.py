"""The demo over HTTP. Its URL builder signs URLs with the server's key, so only for the images
the page lists; anything else gets an error JSON and no URL. Its page inlines what the server
itself answers: each image's size and ThumbHash, around `<picture>` markup."""

from __future__ import annotations

import asyncio
import json
import re
from html import unescape
from pathlib import Path

import httpx
import pytest

from imgproxy.server.app import StandaloneApp
from imgproxy.settings import Settings
from imgproxy.urls import url_for
from tests.support import images, settings_for


def _get(folder: Path, *urls: str, **query: str) -> list[httpx.Response]:
    """GET each URL in turn from one demo server (signing on), with `query` on the first."""
    return _get_from(
        settings_for(folder, security={"keys": ["k1"]}, server={"demo": True}), *urls, **query
    )


def _get_from(settings: Settings, *urls: str, **query: str) -> list[httpx.Response]:
    app = StandaloneApp(settings)

    async def get() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            first = await client.get(urls[0], params=query)
            return [first, *[await client.get(url) for url in urls[1:]]]

    return asyncio.run(get())


def _ask(folder: Path, **query: str) -> tuple[int, dict[str, str]]:
    response = _get(folder, "/_demo/url", **query)[0]
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


def test_the_focal_picker_gets_signed_crops_around_its_point(media: Path) -> None:
    image = json.dumps(["media", "a.jpg"])
    point = {"w": "16", "h": "9", "fit": "cover", "g": "focal", "fx": "0.25", "fy": "0.75"}
    status, body = _ask(media, image=image, **point)
    assert status == 200 and "&fx=0.25&fy=0.75&" in body["url"] and "&s=" in body["url"]
    crop = _get(media, body["url"])[0]
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"


def test_the_page_inlines_each_images_size_and_thumbhash(media: Path) -> None:
    """Both come from the server's own signed answers (fm=json, fm=thumbhash)."""
    (media / "b.png").write_bytes(images.png((30, 60)))
    settings = settings_for(media, security={"keys": ["k1"]})
    page, hashed = _get(media, "/", url_for("media", "b.png", settings=settings, fm="thumbhash"))
    cards = re.findall(r"<figure>.*?</figure>", page.text)
    assert len(cards) == 2
    card = next(c for c in cards if "media/b.png" in c)
    assert card.count("<source ") == 2 and 'type="image/avif"' in card
    assert 'width="30" height="60"' in card  # the source's own size: no candidate is larger
    assert "&amp;s=" in card  # signed, as the server requires
    placeholder = re.search(r'data-thumbhash="([^"]+)"', card)
    assert placeholder is not None and hashed.status_code == 200
    assert unescape(placeholder.group(1)) == hashed.text


def test_a_card_the_server_cannot_describe_shows_without_size_or_placeholder(
    media: Path,
) -> None:
    (media / "broken.jpg").write_bytes(b"not an image at all")
    page = _get(media, "/")[0]
    assert page.status_code == 200
    card = next(c for c in re.findall(r"<figure>.*?</figure>", page.text) if "broken" in c)
    assert "<picture>" in card and "data-thumbhash" not in card and " width=" not in card


def test_the_playground_offers_the_operations_and_signs_them(media: Path) -> None:
    page = _get(media, "/")[0].text
    for name in ("crop", "trim", "rot", "flip", "blur", "sharpen", "pixelate", "pad"):
        assert f'name="{name}"' in page, name
    operations = {"crop": "0,0,20,15", "rot": "90", "flip": "h", "blur": "1.5", "pad": "2"}
    status, body = _ask(media, image=json.dumps(["media", "a.jpg"]), w="10", **operations)
    assert status == 200 and "error" not in body
    rendition = _get(media, "/", unescape(body["url"]))[1]
    assert rendition.status_code == 200, rendition.text
    assert images.decode(rendition.content).size == (10 + 4, 13 + 4)  # 20x15 turned, padded


def test_the_playground_offers_the_configured_watermarks(media: Path) -> None:
    assert 'name="wm"' not in _get(media, "/")[0].text  # none configured: no field
    marks = {"logo": {"store": "media", "path": "a.jpg"}}
    page = _get_from(settings_for(media, server={"demo": True}, watermarks=marks), "/")[0]
    assert '<select name="wm"><option value="">none</option><option>logo</option>' in page.text
