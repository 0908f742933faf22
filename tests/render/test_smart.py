"""`g=smart` (SPEC §13): a planted salient object (a saturated shape, or a skin-toned face-like
ellipse) on a busy, dull background is kept inside the crop, for every crop shape, on a set
of generated images; the centre crop loses it on most of the same images."""

from __future__ import annotations

import io
import random
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from imgproxy import ImageProxy
from imgproxy.formats import OutputFormat
from imgproxy.params import build_transform
from imgproxy.render import RenderJob, render
from tests.support import Serve, images, settings_for

DECODERS = ("JPEG", "PNG")
SHAPES = [("120", "300"), ("300", "100"), ("150", "150")]


def scene(seed: int) -> tuple[bytes, tuple[int, int, int], int]:
    """A dull textured background (grey noise on a soft gradient, little saturation) and
    one planted subject away from the centre; the subject's colour and pixel count."""
    rng = random.Random(seed)
    width, height = (640, 420) if seed % 2 else (420, 640)
    noise = np.random.default_rng(seed).normal(0, 18, (height, width, 1))
    ramp = np.linspace(90, 150, width)[None, :, None]
    pixels = np.clip(ramp + noise + np.array([8, 4, 0]), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(0.6))
    draw = ImageDraw.Draw(image)
    radius = rng.randint(28, 40)
    # Away from the centre: in an outer third of the longer side.
    long_side = max(width, height)
    along = rng.choice(
        [
            rng.randint(radius + 10, long_side // 3),
            rng.randint(2 * long_side // 3, long_side - radius - 10),
        ]
    )
    across = rng.randint(radius + 10, min(width, height) - radius - 10)
    cx, cy = (along, across) if width > height else (across, along)
    if seed % 3 == 0:
        colour = (224, 172, 140)  # a skin tone: an ellipse like a face
        draw.ellipse(
            (cx - radius, cy - int(radius * 1.3), cx + radius, cy + int(radius * 1.3)), fill=colour
        )
    else:
        colour = rng.choice([(230, 30, 30), (30, 200, 60), (40, 80, 230), (240, 200, 20)])
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    area = int(np.all(np.asarray(image) == colour, axis=-1).sum())
    return images.encode(image, "PNG"), colour, area


def kept(body: bytes, colour: tuple[int, int, int]) -> int:
    pixels = np.asarray(images.decode(body).convert("RGB"), dtype=int)
    return int((np.abs(pixels - np.array(colour)).max(axis=-1) < 40).sum())


def crop(data: bytes, w: str, h: str, gravity: str) -> bytes:
    t = build_transform({"w": w, "h": h, "fit": "cover", "g": gravity}, 4096)
    return render(data, RenderJob(t, OutputFormat.PNG, None, DECODERS, False, 50_000_000)).body


@pytest.mark.parametrize("seed", range(12))
def test_the_planted_subject_stays_inside_every_crop(seed: int) -> None:
    data, colour, area = scene(seed)
    source = images.decode(data).size
    for w, h in SHAPES:
        out = crop(data, w, h, "smart")
        # The crop is scaled: expect the subject's area at that scale, mostly there.
        scale = max(int(w) / source[0], int(h) / source[1])
        assert kept(out, colour) >= 0.6 * area * scale * scale, (seed, w, h)


def test_the_centre_crop_would_have_lost_it() -> None:
    """The test is not trivially true: a centre crop misses most planted subjects."""
    lost = 0
    for seed in range(12):
        data, colour, area = scene(seed)
        source = images.decode(data).size
        w, h = SHAPES[0] if source[0] > source[1] else SHAPES[1]
        scale = max(int(w) / source[0], int(h) / source[1])
        lost += kept(crop(data, w, h, "center"), colour) < 0.6 * area * scale * scale
    assert lost >= 8


def test_the_point_is_reported_for_the_next_sizes() -> None:
    data, _, _ = scene(1)
    t = build_transform({"w": "100", "h": "100", "fit": "cover", "g": "smart"}, 4096)
    assert t.focal is None
    rendered = render(data, RenderJob(t, OutputFormat.PNG, None, DECODERS, False, 50_000_000))
    assert rendered.smart is not None and all(0 <= v <= 1 for v in rendered.smart)


def test_the_analysis_runs_once_per_version_and_is_shared_through_the_tiers(
    media: Path, tmp_path: Path, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every crop size of one version reuses one analysis, kept beside the source's facts: a
    second process sharing the disk tier analyses nothing; a new version is analysed again."""
    from imgproxy.render import crop

    calls: list[int] = []

    def counted(image: Image.Image) -> tuple[float, float]:
        calls.append(1)
        return crop.smart_point(image)

    monkeypatch.setattr("imgproxy.render.smart_point", counted)  # where render calls it
    data, colour, _ = scene(2)
    (media / "scene.png").write_bytes(data)
    cache = {"disk_path": str(tmp_path / "cache")}
    first = ImageProxy(settings_for(media, cache=cache))
    with httpx.Client(base_url=serve(first).url) as http:
        for w, h in SHAPES:
            response = http.get(f"/media/scene.png?w={w}&h={h}&fit=cover&g=smart")
            assert response.status_code == 200 and kept(response.content, colour) > 0
    assert len(calls) == 1
    second = ImageProxy(settings_for(media, cache=cache))  # a restarted process
    with httpx.Client(base_url=serve(second).url) as http:
        assert http.get("/media/scene.png?w=90&h=200&fit=cover&g=smart").status_code == 200
        assert len(calls) == 1
        (media / "scene.png").write_bytes(scene(5)[0])  # a new version
        assert http.get("/media/scene.png?w=90&h=200&fit=cover&g=smart").status_code == 200
        assert len(calls) == 2


@pytest.mark.parametrize("fmt", ["JPEG", "MPO"])
def test_the_point_is_the_same_whatever_size_found_it(fmt: str) -> None:
    """The point decides the pixels of every size under ETags that do not name it, so two
    processes first asked for different sizes must find the same one. A JPEG is analysed at
    the DCT scale the analysis needs, not the one the output needs (1/2 and 1/8 decodes put
    it up to 0.006 apart)."""
    for seed in range(4):
        png, _, _ = scene(seed)
        with Image.open(io.BytesIO(png)) as image:
            big = image.convert("RGB").resize((image.width * 4, image.height * 4))
        extra = {"save_all": True, "append_images": [big.resize((64, 64))]} if fmt == "MPO" else {}
        data = images.encode(big, fmt, quality=90, **extra)
        points = set()
        for side in ("1200", "600", "300", "100"):
            t = build_transform({"w": side, "h": side, "fit": "cover", "g": "smart"}, 4096)
            job = RenderJob(t, OutputFormat.JPEG, 80, ("JPEG",), False, 50_000_000)
            points.add(render(data, job).smart)
        assert len(points) == 1, (seed, points)


@pytest.mark.parametrize("fmt", ["JPEG", "MPO"])
def test_many_clients_first_asking_every_size_get_the_sequential_bytes(
    fmt: str, media: Path, serve: Serve
) -> None:
    """24 clients at once on a cold photo (JPEG, and MPO as phones write it), g=smart at
    sizes decoded at 1/8, 1/4 and 1/2, with truncated copies asked the same way beside them:
    each URL's bytes equal what a fresh server asked one size at a time (largest first)
    answers, the broken files are 422, and the server is healthy afterwards. (The points'
    agreement itself is test_the_point_is_the_same_whatever_size_found_it: here a point's
    0.006 rarely moves a crop by a whole output pixel.)"""
    from concurrent.futures import ThreadPoolExecutor

    from tests.support import assert_healthy

    png, _, _ = scene(5)
    with Image.open(io.BytesIO(png)) as image:
        big = image.convert("RGB").resize((image.width * 4, image.height * 4))
    extra = {"save_all": True, "append_images": [big.resize((8, 8))]} if fmt == "MPO" else {}
    data = images.encode(big, fmt, quality=90, **extra)
    (media / "phone.jpg").write_bytes(data)
    (media / "cut.jpg").write_bytes(data[: len(data) // 3])
    sides = ("100", "300", "700", "1200")
    urls = [f"/media/phone.jpg?w={s}&h={s}&fit=cover&g=smart" for s in sides]
    broken = [f"/media/cut.jpg?w={s}&h={s}&fit=cover&g=smart" for s in sides[:2]]
    with httpx.Client(base_url=serve(ImageProxy(settings_for(media))).url, timeout=60) as http:

        def fetch(i: int) -> tuple[str, int, bytes]:
            url = (urls + broken)[i % (len(urls) + len(broken))]
            response = http.get(url)
            return url, response.status_code, response.content

        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(fetch, range(72)))
        assert_healthy(http)
    with httpx.Client(base_url=serve(ImageProxy(settings_for(media))).url, timeout=60) as http:
        wanted = {url: http.get(url).content for url in reversed(urls)}
    for url, status, body in answers:
        if url in broken:
            assert status == 422, (url, status)
        else:
            assert status == 200 and body == wanted[url], url
