"""Rendering through the server: each fit's geometry (±1 px), EXIF, CMYK, animation."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.support import Serve, images


@pytest.mark.parametrize(
    ("query", "size"),
    [
        ("w=320", (320, 240)),
        ("h=120", (160, 120)),
        ("w=300&h=300", (300, 225)),
        ("w=300&h=300&fit=contain", (300, 225)),
        ("w=300&h=300&fit=cover", (300, 300)),
        ("w=300&h=100&fit=cover", (300, 100)),
        ("w=300&h=300&fit=fill", (300, 300)),
        ("w=300&h=300&fit=pad", (300, 300)),
        ("w=1000&h=1000", (640, 480)),  # enlarge=0
        ("w=1000&h=1000&enlarge=1", (1000, 750)),
        ("w=1000&h=1000&fit=cover", (480, 480)),  # smaller than the box, same shape
        ("w=2000&h=500&fit=cover", (640, 160)),
        ("w=1000&h=1000&fit=cover&enlarge=1", (1000, 1000)),
        ("w=1000&h=100&fit=fill", (640, 100)),
        ("w=1000&h=1000&fit=pad", (1000, 1000)),
        ("w=100&dpr=2", (200, 150)),
        ("w=160&h=120&dpr=1.5", (240, 180)),
    ],
)
def test_fit_geometry(client: httpx.Client, query: str, size: tuple[int, int]) -> None:
    response = client.get(f"/media/photo.jpg?{query}&fm=png")
    assert response.status_code == 200
    width, height = images.decode(response.content).size
    assert abs(width - size[0]) <= 1 and abs(height - size[1]) <= 1


def test_exif_orientation_and_gps_over_http(client: httpx.Client, media: Path) -> None:
    (media / "rotated.jpg").write_bytes(images.jpeg_with_exif((400, 200), 6))
    response = client.get("/media/rotated.jpg?w=100")
    out = images.decode(response.content)
    assert out.size == (100, 200)
    assert not out.getexif() and b"Exif" not in response.content
    meta = client.get("/media/rotated.jpg?fm=json").json()
    assert (meta["width"], meta["height"]) == (200, 400)


def test_cmyk_jpeg_over_http(client: httpx.Client, media: Path) -> None:
    (media / "cmyk.jpg").write_bytes(images.cmyk_jpeg((200, 100)))
    out = images.decode(client.get("/media/cmyk.jpg?w=100&fm=png").content)
    assert out.mode == "RGB" and out.size == (100, 50)
    r, g, b = images.rgb(out, (50, 25))
    assert r > 220 and g < 40 and b < 40


def test_animated_gif_over_http(client: httpx.Client) -> None:
    kept = client.get("/media/anim.gif?w=60")
    assert kept.headers["content-type"] == "image/gif"
    animated = Image.open(io.BytesIO(kept.content))
    assert images.frames(animated) == 3 and animated.size == (60, 40)
    webp = Image.open(io.BytesIO(client.get("/media/anim.gif?w=60&fm=webp").content))
    assert images.frames(webp) == 3
    still = images.decode(client.get("/media/anim.gif?w=60&fm=png").content)
    assert images.frames(still) == 1


def test_too_many_frames_for_animated_output(media: Path, serve: Serve) -> None:
    from imgproxy.server.app import create_app
    from tests.support import settings_for

    (media / "long.gif").write_bytes(images.gif(12, (20, 20)))
    app = create_app(settings_for(media, limits={"max_frames": 10}))
    with httpx.Client(base_url=serve(app).url) as http:
        assert http.get("/media/long.gif?w=10").status_code == 413
        assert http.get("/media/long.gif").status_code == 413
        assert http.get("/media/long.gif?w=10&fm=png").status_code == 200  # first frame only


def test_max_output_dimension(client: httpx.Client) -> None:
    assert client.get("/media/photo.jpg?w=4097").status_code == 400
    response = client.get("/media/photo.jpg?w=4096&h=4096&dpr=4&enlarge=1&fm=jpeg")
    assert response.status_code == 200
    assert max(images.decode(response.content).size) <= 4096
