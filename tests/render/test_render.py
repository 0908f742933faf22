"""Pillow rendering: orientation, metadata stripping, colour modes, animation, gravity."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from imgproxy.errors import ConfigError, Undecodable
from imgproxy.formats import OutputFormat
from imgproxy.params import Transform, build_transform
from imgproxy.render import RenderJob, probe, render
from imgproxy.render.decoding import decode_still
from tests.support import Serve, images, settings_for

DECODERS = ("GIF", "JPEG", "PNG", "WEBP")


def job(
    query: dict[str, str], output: OutputFormat = OutputFormat.PNG, *, animate: bool = False
) -> RenderJob:
    t = build_transform(query, 4096)
    quality = 90 if output.has_quality else None
    return RenderJob(t, output, quality, DECODERS, animate, 50_000_000)


def encoded(data: bytes, job: RenderJob) -> bytes:
    return render(data, job).body


def run(
    data: bytes, query: dict[str, str], output: OutputFormat = OutputFormat.PNG, **kw: bool
) -> Image.Image:
    return images.decode(encoded(data, job(query, output, **kw)))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_before_geometry(orientation: int) -> None:
    data = images.jpeg_with_exif((200, 100), orientation)
    out = run(data, {"w": "1000", "h": "1000"})
    assert out.size == ((100, 200) if orientation >= 5 else (200, 100))
    info = probe(data, DECODERS, 50_000_000)
    assert (info.width, info.height) == out.size
    # The red marker was stored top-left; where it ends up depends on the orientation.
    corners = {
        "tl": images.rgb(out, (5, 5)),
        "tr": images.rgb(out, (out.width - 6, 5)),
        "bl": images.rgb(out, (5, out.height - 6)),
        "br": images.rgb(out, (out.width - 6, out.height - 6)),
    }
    expected = {1: "tl", 2: "tr", 3: "br", 4: "bl", 5: "tl", 6: "tr", 7: "br", 8: "bl"}[orientation]
    red = [name for name, (r, g, b) in corners.items() if r > 200 and g < 60 and b < 60]
    assert red == [expected]


@pytest.mark.parametrize(
    "output", [OutputFormat.JPEG, OutputFormat.WEBP, OutputFormat.PNG, OutputFormat.AVIF]
)
def test_exif_and_gps_are_stripped(output: OutputFormat) -> None:
    source = images.jpeg_with_exif((120, 80), 6)
    assert images.decode(source).getexif().get(images.GPS_TAG)
    body = encoded(source, job({"w": "60"}, output))
    out = images.decode(body)
    assert not out.getexif()
    assert "exif" not in out.info and "xmp" not in out.info and "comment" not in out.info
    assert b"Exif" not in body


def test_cmyk_jpeg_comes_out_as_correct_rgb() -> None:
    out = run(images.cmyk_jpeg(), {"w": "100"}, OutputFormat.JPEG)
    assert out.mode == "RGB"
    r, g, b = images.rgb(out, (50, 25))
    assert r > 220 and g < 40 and b < 40


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    out = run(images.png16(), {"w": "32"})
    assert out.mode in ("RGB", "L")
    value = images.rgb(out, (10, 10))[0]
    assert 120 <= value <= 136  # 0x8000 of 0xffff is mid-grey, not white


def test_palette_png_keeps_its_colours() -> None:
    out = run(images.palette_png(), {"w": "32"}, OutputFormat.JPEG)
    r, g, b = images.rgb(out, (10, 10))
    assert b > 220 and r < 30 and g < 30


def test_alpha_is_kept_in_png_and_flattened_on_bg_in_jpeg() -> None:
    source = images.rgba_png()
    png = run(source, {"w": "100"}, OutputFormat.PNG)
    assert png.mode == "RGBA"
    assert png.getchannel("A").getextrema()[0] == 0
    jpeg = run(source, {"w": "100", "bg": "f00"}, OutputFormat.JPEG)
    r, g, b = images.rgb(jpeg, (1, 1))
    assert r > 220 and g < 40 and b < 40


def test_icc_profile_is_kept() -> None:
    icc = images.srgb_icc()
    source = images.encode(images.photo((100, 100)), "JPEG", icc_profile=icc)
    out = run(source, {"w": "50"}, OutputFormat.JPEG)
    assert out.info.get("icc_profile") == icc


def test_animated_gif_stays_animated_frame_by_frame() -> None:
    source = images.gif(3, (120, 80))
    body = encoded(source, job({"w": "60"}, OutputFormat.GIF, animate=True))
    out = Image.open(io.BytesIO(body))
    assert images.frames(out) == 3 and out.size == (60, 40)
    colours = []
    for index in range(3):
        out.seek(index)
        colours.append(images.rgb(out, (30, 20)))
    assert colours == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    assert out.info.get("duration") == 70


def test_animated_gif_to_webp_keeps_animation_and_other_formats_take_frame_one() -> None:
    source = images.gif(3)
    webp = Image.open(
        io.BytesIO(encoded(source, job({"w": "60"}, OutputFormat.WEBP, animate=True)))
    )
    assert images.frames(webp) == 3
    jpeg = run(source, {"w": "60"}, OutputFormat.JPEG)
    r, g, _b = images.rgb(jpeg, (30, 20))
    assert r > 220 and g < 40


def test_big_jpeg_is_never_decoded_at_full_size_for_a_thumbnail() -> None:
    source = images.jpeg((4000, 3000))
    with Image.open(io.BytesIO(source)) as image:
        decoded = decode_still(image, Transform(width=300, height=300)).frame
        assert decoded.size == (500, 375)  # DCT-scaled by 1/8: the smallest that covers 300x225


@pytest.mark.parametrize(
    ("gravity", "marker_kept"),
    [("w", True), ("nw", True), ("e", False), ("center", False)],
)
def test_cover_gravity_chooses_the_kept_region(gravity: str, marker_kept: bool) -> None:
    # photo() has a red block top-left spanning a quarter of each side.
    out = run(images.png((800, 200)), {"w": "100", "h": "100", "fit": "cover", "g": gravity})
    r, g, _b = images.rgb(out, (2, 2))
    assert (r > 200 and g < 60) is marker_kept


def test_focal_point_centres_the_crop() -> None:
    left = run(
        images.png((800, 200)), {"w": "100", "h": "100", "fit": "cover", "g": "focal", "fx": "0.05"}
    )
    right = run(
        images.png((800, 200)), {"w": "100", "h": "100", "fit": "cover", "g": "focal", "fx": "0.95"}
    )
    assert images.rgb(left, (2, 2))[0] > 200
    assert images.rgb(right, (2, 2))[0] < 200


def test_entropy_gravity_keeps_the_busy_part() -> None:
    flat = Image.new("RGB", (800, 200), (128, 128, 128))
    busy = Image.effect_noise((200, 200), 80).convert("RGB")
    flat.paste(busy, (600, 0))
    out = run(images.encode(flat, "PNG"), {"w": "100", "h": "100", "fit": "cover", "g": "entropy"})
    assert sum(1 for n in out.convert("L").histogram() if n) > 20  # noise, not flat grey


def test_pad_fills_the_box_with_bg() -> None:
    out = run(images.png((400, 200)), {"w": "200", "h": "200", "fit": "pad", "bg": "00ff00"})
    assert out.size == (200, 200)
    assert images.rgb(out, (100, 5)) == (0, 255, 0)


def test_truncated_jpeg_is_undecodable() -> None:
    data = images.jpeg((400, 300))
    with pytest.raises(Undecodable):
        encoded(data[: len(data) // 2], job({"w": "100"}))


def test_a_format_outside_the_allowed_decoders_is_never_opened() -> None:
    bmp = images.encode(images.photo((50, 50)), "BMP")
    with pytest.raises(Undecodable):
        probe(bmp, DECODERS, 50_000_000)
    assert probe(bmp, (*DECODERS, "BMP"), 50_000_000).format == "BMP"


@pytest.mark.parametrize(
    ("setting", "output", "shipped", "other"),
    [("avif_speed", OutputFormat.AVIF, 8, 4), ("webp_effort", OutputFormat.WEBP, 4, 2)],
)
def test_an_encoder_setting_reaches_the_encoder_and_the_etag(
    media: Path, serve: Serve, setting: str, output: OutputFormat, shipped: int, other: int
) -> None:
    """render.avif_speed (libavif's speed, default 8) and render.webp_effort (libwebp's
    method, default 4 as Pillow's) are what the encoder is given: another value gives other
    bytes and another ETag, so a cache never mixes them; one out of range is refused."""
    import dataclasses

    from imgproxy import ImageProxy

    data = images.jpeg((320, 240))
    default = job({"w": "200"}, output)
    assert getattr(default, setting) == shipped
    one = encoded(data, default)
    changed: dict[str, Any] = {setting: other}
    another = encoded(data, dataclasses.replace(default, **changed))
    assert one != another
    assert images.decode(one).size == images.decode(another).size == (200, 150)
    etags = []
    for value in (shipped, other):
        proxy = ImageProxy(settings_for(media, render={setting: value}))
        with httpx.Client(base_url=serve(proxy).url) as http:
            response = http.get(f"/media/photo.jpg?w=100&fm={output.value}")
            assert response.headers["content-type"] == output.media_type
            etags.append(response.headers["etag"])
    assert etags[0] != etags[1]
    with pytest.raises(ConfigError, match=setting):
        settings_for(media, render={setting: 11})
