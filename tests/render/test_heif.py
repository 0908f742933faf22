"""HEIC/HEIF sources (SPEC §4, §13): sniffed, sized before decoding, approved-only by
default, decoded upright and in sRGB through pi-heif, served as originals in their type.

The files are real: encoded by libheif's heif-enc (x265), then given an `irot` property or
hostile sizes by tests/support.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageCms, ImageStat

from imgproxy import ImageProxy
from imgproxy.formats import sniff
from imgproxy.headers import declared_size
from imgproxy.render import probe
from imgproxy.render.color import ORIENTATION_TAG, orientation
from imgproxy.render.heif import open_heif
from imgproxy.settings import PolicySettings
from tests.support import Serve, hostile, images, need_binary, settings_for

UPRIGHT = (64, 48)
P3_GREEN = (50, 200, 80)  # in Display P3: (0, 204, 58) or so in sRGB, far from itself


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    brands = b"".join(compatible)
    return struct.pack(">I4s4sI", 16 + len(brands), b"ftyp", major, 0) + brands + b"\0" * 16


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (ftyp(b"heic", b"mif1", b"heic", b"miaf"), "HEIF"),  # heif-enc, iPhones
        (ftyp(b"heix", b"mif1"), "HEIF"),
        (ftyp(b"hevc", b"msf1"), "HEIF"),  # an image sequence
        (ftyp(b"mif1", b"heic"), "HEIF"),
        (ftyp(b"mif1"), "HEIF"),
        (ftyp(b"mif1", b"mif1", b"avif"), "AVIF"),  # the structural brand is shared
        (ftyp(b"msf1", b"avis"), "AVIF"),
        (ftyp(b"avif", b"mif1", b"miaf"), "AVIF"),
        (ftyp(b"heic", b"avif"), "HEIF"),  # the major brand decides
        (ftyp(b"crx ", b"isom"), None),  # Canon raw: ISOBMFF, not an image we read
        (ftyp(b"isom", b"mp41"), None),  # MP4 video
    ],
)
def test_sniff_reads_the_brands(head: bytes, expected: str | None) -> None:
    assert sniff(head[:32]) == expected


@pytest.fixture(scope="module")
def encoder() -> None:
    need_binary("heif-enc")


def upright_heic() -> bytes:
    """UPRIGHT photo (red top-left) stored turned a quarter clockwise, with an `irot` of one
    quarter anticlockwise to stand it up again: what a phone held in portrait writes."""
    stored = images.photo(UPRIGHT).transpose(Image.Transpose.ROTATE_270)
    return images.with_irot(images.heif(stored), 1)


def flat_p3_heic() -> bytes:
    return images.heif(Image.new("RGB", UPRIGHT, P3_GREEN), icc=images.display_p3_icc())


def in_srgb(p3: tuple[int, int, int]) -> tuple[int, int, int]:
    source = ImageCms.ImageCmsProfile(io.BytesIO(images.display_p3_icc()))
    srgb = ImageCms.createProfile("sRGB")
    converted = ImageCms.profileToProfile(Image.new("RGB", (1, 1), p3), source, srgb)
    assert converted is not None
    return images.rgb(converted, (0, 0))


@pytest.mark.usefixtures("encoder")
def test_declared_sizes_cover_ispe_and_canvases() -> None:
    data = images.heif(images.photo(UPRIGHT))
    assert sniff(data[:32]) == "HEIF"
    # heif-enc writes a grid of one 64x64 tile cropped to the image: the tile is the largest.
    assert declared_size("HEIF", data) == (64, 64)
    assert declared_size("HEIF", hostile.heif_ispe_bomb(data)) == (60_000, 60_000)
    assert declared_size("HEIF", hostile.heif_canvas_bomb(data, 30_000)) == (30_000, 30_000)


@pytest.mark.usefixtures("encoder")
def test_probe_gives_the_displayed_size() -> None:
    info = probe(upright_heic(), ("HEIF",), 50_000_000)
    assert (info.format, info.media_type) == ("HEIF", "image/heif")
    assert (info.width, info.height, info.frames, info.has_alpha) == (64, 48, 1, False)


@pytest.mark.usefixtures("encoder")
def test_exif_orientation_is_not_applied_a_second_time() -> None:
    """HEIF's rule: irot/imir place the pixels; an EXIF orientation only records them."""
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    tagged = images.heif(images.photo(UPRIGHT), exif=exif.tobytes())
    with open_heif(io.BytesIO(tagged)) as opened:
        assert opened.info["original_orientation"] == 6  # heif-enc kept the EXIF tag
        opened.getexif()[ORIENTATION_TAG] = 6  # pi-heif resets it to 1: ours must not care
        assert orientation(opened) == 1
    info = probe(tagged, ("HEIF",), 50_000_000)
    assert (info.width, info.height) == UPRIGHT


def test_approved_only_where_the_extra_is_installed() -> None:
    pytest.importorskip("pi_heif")
    assert "HEIF" in PolicySettings().approved_image_formats
    assert "HEIF" not in PolicySettings().image_formats


@pytest.fixture
def heif_media(tmp_path: Path, encoder: None) -> Path:
    folder = tmp_path / "media"
    (folder / "pending").mkdir(parents=True)
    (folder / "photo.heic").write_bytes(upright_heic())
    (folder / "p3.heic").write_bytes(flat_p3_heic())
    (folder / "pending" / "photo.heic").write_bytes(upright_heic())
    (folder / "pending" / "photo.heic.meta.json").write_text('{"approved": false}')
    data = images.heif(images.photo(UPRIGHT))
    (folder / "ispe-bomb.heic").write_bytes(hostile.heif_ispe_bomb(data))
    (folder / "canvas-bomb.heic").write_bytes(hostile.heif_canvas_bomb(data, 30_000))
    return folder


@pytest.fixture
def http(heif_media: Path, serve: Serve) -> Iterator[httpx.Client]:
    pytest.importorskip("pi_heif")
    url = serve(ImageProxy(settings_for(heif_media))).url
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client


def test_unapproved_heic_is_403(http: httpx.Client) -> None:
    for url in ("/media/pending/photo.heic?w=32", "/media/pending/photo.heic"):
        refused = http.get(url)
        assert refused.status_code == 403
        assert refused.json()["error"] == "not_approved"


def test_rendition_is_upright(http: httpx.Client) -> None:
    response = http.get("/media/photo.heic?w=32")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"  # HEIF is no output format
    image = images.decode(response.content)
    assert image.size == (32, 24)
    red, _, blue = images.rgb(image, (2, 2))
    assert red > 200 and blue < 60  # the red marker, top-left
    assert images.rgb(image, (29, 2))[0] < 100  # and nowhere else along the top


def test_rendition_is_in_srgb(http: httpx.Client) -> None:
    """The Display P3 pixels converted, not passed on with their profile: the rendition
    has none, and its colour is the P3 colour's sRGB value, not the P3 numbers."""
    expected = in_srgb(P3_GREEN)
    assert max(abs(a - b) for a, b in zip(expected, P3_GREEN, strict=True)) > 20
    for output in ("jpeg", "png", "webp"):
        response = http.get(f"/media/p3.heic?w=32&fm={output}")
        assert response.status_code == 200
        image = images.decode(response.content)
        assert "icc_profile" not in image.info
        mean = ImageStat.Stat(image.convert("RGB")).mean
        assert max(abs(m - e) for m, e in zip(mean, expected, strict=True)) < 4, (output, mean)


def test_metadata_gives_the_displayed_size(http: httpx.Client) -> None:
    facts = http.get("/media/photo.heic?fm=json").json()
    assert (facts["format"], facts["width"], facts["height"]) == ("heif", 64, 48)
    assert (facts["frames"], facts["approved"]) == (1, True)


def test_original_is_served_as_heif(http: httpx.Client, heif_media: Path) -> None:
    response = http.get("/media/photo.heic")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/heif"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == (heif_media / "photo.heic").read_bytes()


@pytest.mark.parametrize("name", ["ispe-bomb.heic", "canvas-bomb.heic"])
def test_bombs_are_413_before_decoding(http: httpx.Client, name: str) -> None:
    for url in (f"/media/{name}?w=32", f"/media/{name}?fm=json", f"/media/{name}"):
        response = http.get(url)
        assert response.status_code == 413, url
        assert response.json()["error"] == "too_large"


def test_not_allowed_is_415(heif_media: Path, serve: Serve) -> None:
    settings = settings_for(heif_media, policy={"approved_image_formats": ["AVIF"]})
    with httpx.Client(base_url=serve(ImageProxy(settings)).url) as http:
        refused = http.get("/media/photo.heic?w=32")
        assert refused.status_code == 415
        assert refused.json()["error"] == "unsupported_format"
