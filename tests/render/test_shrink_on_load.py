"""Shrink on load (SPEC §11): the smallest DCT scale that covers the output, then Lanczos.

The quality property: our rendition differs from a full-size decode + fair Lanczos resize by
no more than the eye can tell (SSIM >= 0.98 on luminance), on photo-like sources made here
the way `make bench` makes its own (a demo photo scaled up, with grain).
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageOps

from imgproxy.formats import OutputFormat
from imgproxy.geometry import plan
from imgproxy.params import Fit, Transform, build_transform
from imgproxy.render import RenderJob, render
from imgproxy.render.crop import place
from imgproxy.render.decoding import decode_still
from tests.support import images

MEDIA = Path(__file__).resolve().parents[2] / "examples" / "media"
DECODERS = ("JPEG",)
SSIM_MIN = 0.98
Floats = npt.NDArray[np.float64]


@cache
def photo_jpeg(name: str, size: tuple[int, int], orientation: int = 1) -> bytes:
    """As benchmarks/__main__.py: a demo photo scaled up (bicubic) with 12 % grain, q=90.
    With an orientation, the pixels are stored turned so that they display upright."""
    base = Image.open(MEDIA / name).convert("RGB")
    image = base.resize(size, Image.Resampling.BICUBIC)
    grain = Image.effect_noise(size, 24).convert("RGB")
    image = Image.blend(image, grain, 0.12)
    if orientation == 1:
        return images.encode(image, "JPEG", quality=90)
    stored = image.transpose(_UNDO[orientation])
    exif = Image.Exif()
    exif[images.ORIENTATION_TAG] = orientation
    return images.encode(stored, "JPEG", quality=90, exif=exif.tobytes())


# How to store upright pixels so that the EXIF orientation turns them upright again.
_UNDO = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def ours(data: bytes, query: dict[str, str]) -> Image.Image:
    job = RenderJob(build_transform(query, 8192), OutputFormat.PNG, None, DECODERS, False, 10**9)
    return images.decode(render(data, job).body).convert("RGB")


def reference(data: bytes, query: dict[str, str]) -> Image.Image:
    """Full-size decode (no draft), upright, then one fair Lanczos resize of the kept region."""
    t = build_transform(query, 8192)
    with Image.open(io.BytesIO(data)) as opened:
        full = ImageOps.exif_transpose(opened).convert("RGB")
    geometry = plan(full.size, (t.width, t.height), t.fit, enlarge=t.enlarge)
    x, y = place(full.size, geometry.crop, t.gravity, t.focal or (0.5, 0.5))
    box = (x, y, x + geometry.crop[0], y + geometry.crop[1])
    out = full.resize(geometry.size, Image.Resampling.LANCZOS, box=box)
    if geometry.canvas != geometry.size:
        canvas = Image.new("RGB", geometry.canvas, t.background[:3])
        canvas.paste(out, geometry.offset)
        out = canvas
    return out


def luma(image: Image.Image) -> Floats:
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    weights = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma
    return np.asarray(rgb @ weights, dtype=np.float64)


def _gaussian_filter(plane: Floats, window: Floats) -> Floats:
    """Separable 'valid' filtering, as MATLAB's filter2(w, x, 'valid') in the reference code."""
    n = len(window)
    rows = sum(w * plane[:, i : plane.shape[1] - n + 1 + i] for i, w in enumerate(window))
    return np.asarray(sum(w * rows[i : rows.shape[0] - n + 1 + i, :] for i, w in enumerate(window)))


def ssim(a: Image.Image, b: Image.Image) -> float:
    """Mean SSIM (Wang, Bovik, Sheikh, Simoncelli 2004): 11x11 Gaussian window, sigma 1.5,
    K1 = 0.01, K2 = 0.03, L = 255, on luminance."""
    assert a.size == b.size
    x, y = luma(a), luma(b)
    taps = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    window = taps / taps.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _gaussian_filter(x, window), _gaussian_filter(y, window)
    sxx = _gaussian_filter(x * x, window) - mx * mx
    syy = _gaussian_filter(y * y, window) - my * my
    sxy = _gaussian_filter(x * y, window) - mx * my
    index = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(index.mean())


def test_ssim_is_one_for_equal_images_and_low_for_unrelated_ones() -> None:
    a = Image.open(MEDIA / "coffee.png").convert("RGB")
    assert ssim(a, a) == pytest.approx(1.0)
    noise = Image.effect_noise(a.size, 64).convert("RGB")
    assert ssim(a, noise) < 0.3
    shifted = a.transform(a.size, Image.Transform.AFFINE, (1, 0, 3, 0, 1, 0))
    assert ssim(a, shifted) < 0.9  # three pixels off is visible, and SSIM sees it


SIX_MP, TWENTY_FOUR_MP = (3000, 2000), (6000, 4000)


@pytest.mark.parametrize(
    ("name", "size", "orientation", "query"),
    [
        ("coffee.png", SIX_MP, 1, {"w": "300", "h": "300"}),
        ("coffee.png", TWENTY_FOUR_MP, 1, {"w": "300", "h": "300"}),
        ("coffee.png", TWENTY_FOUR_MP, 1, {"w": "100"}),
        ("coffee.png", SIX_MP, 1, {"w": "301", "h": "199", "fit": "cover"}),
        ("coffee.png", SIX_MP, 1, {"w": "300", "h": "300", "fit": "cover"}),
        ("coffee.png", SIX_MP, 1, {"w": "240", "h": "240", "fit": "cover", "g": "e"}),
        ("coffee.png", TWENTY_FOUR_MP, 1, {"w": "300", "h": "300", "fit": "cover", "g": "sw"}),
        ("coffee.png", SIX_MP, 1, {"w": "301", "h": "199", "fit": "fill"}),
        ("coffee.png", SIX_MP, 1, {"w": "300", "h": "300", "fit": "pad"}),
        ("coffee.png", (3001, 2003), 1, {"w": "301", "h": "199"}),
        ("coffee.png", (3001, 2003), 6, {"w": "300", "h": "300"}),
        ("coffee.png", (3001, 2003), 8, {"w": "199", "h": "301", "fit": "cover"}),
        ("coffee.png", (3001, 2003), 3, {"w": "301", "h": "199", "fit": "cover", "g": "ne"}),
        ("chelsea.png", SIX_MP, 1, {"w": "300", "h": "300"}),
        ("astronaut.png", (4000, 4000), 6, {"w": "500", "h": "500"}),
        ("rocket.jpg", TWENTY_FOUR_MP, 1, {"w": "640", "h": "480", "fit": "cover"}),
    ],
)
def test_rendition_looks_like_a_full_size_decode_and_lanczos(
    name: str, size: tuple[int, int], orientation: int, query: dict[str, str]
) -> None:
    data = photo_jpeg(name, size, orientation)
    got, want = ours(data, query), reference(data, query)
    assert got.size == want.size
    assert ssim(got, want) >= SSIM_MIN


@pytest.mark.parametrize(
    ("stored", "orientation", "transform", "frame"),
    [
        # 6 MP -> 300 px: 1/8 still covers it (375 x 250 >= 300 x 200).
        (SIX_MP, 1, Transform(width=300, height=300), (375, 250)),
        (TWENTY_FOUR_MP, 1, Transform(width=300, height=300), (750, 500)),
        # The edge: 1/8 gives exactly 375 wide; one more pixel needs 1/4.
        (SIX_MP, 1, Transform(width=375), (375, 250)),
        (SIX_MP, 1, Transform(width=376), (750, 500)),
        # Cover: the kept 2000 x 2000 region must keep 300 px: 1/8 would leave 250.
        (SIX_MP, 1, Transform(width=300, height=300, fit=Fit.COVER), (750, 500)),
        (SIX_MP, 1, Transform(width=250, height=250, fit=Fit.COVER), (375, 250)),
        # Fill takes each axis on its own: 300 of 3000 and 250 of 2000 allow 1/8.
        (SIX_MP, 1, Transform(width=300, height=250, fit=Fit.FILL), (375, 250)),
        (SIX_MP, 1, Transform(width=300, height=260, fit=Fit.FILL), (750, 500)),
        # Pad: the content is what is resized, not the canvas.
        (SIX_MP, 1, Transform(width=300, height=300, fit=Fit.PAD), (375, 250)),
        # EXIF 6: stored 3000 x 2000 shows as 2000 x 3000; 300 px high is a 200 px width.
        (SIX_MP, 6, Transform(width=300, height=300), (250, 375)),
        (SIX_MP, 6, Transform(width=300), (500, 750)),
        # Larger than the source: no shrink, with or without enlarge.
        (SIX_MP, 1, Transform(width=6000, enlarge=True), SIX_MP),
        (SIX_MP, 1, Transform(width=4000), SIX_MP),
        # Not a multiple of 8: the scaled sides round up.
        ((3001, 2003), 1, Transform(width=300, height=300), (376, 251)),
    ],
)
def test_the_smallest_dct_scale_that_covers_the_output_is_decoded(
    stored: tuple[int, int], orientation: int, transform: Transform, frame: tuple[int, int]
) -> None:
    data = _flat_jpeg(stored, orientation)
    with Image.open(io.BytesIO(data)) as image:
        assert decode_still(image, transform).frame.size == frame


def _flat_jpeg(size: tuple[int, int], orientation: int) -> bytes:
    """Cheap to make: only the header's size matters to the choice of scale."""
    exif = Image.Exif()
    exif[images.ORIENTATION_TAG] = orientation
    return images.encode(Image.new("RGB", size, (90, 120, 150)), "JPEG", exif=exif.tobytes())


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_output_size_is_planned_on_the_full_size_source(orientation: int) -> None:
    # 3001 x 2000 decodes to 376 x 250 at 1/8: planning on that would give 300 x 199.
    data = _flat_jpeg((3001, 2000), orientation)
    out = ours(data, {"w": "300", "h": "300"})
    assert out.size == ((300, 200) if orientation in (1, 3) else (200, 300))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_padded_edge_blocks_stay_outside_the_kept_region(orientation: int) -> None:
    """3001 x 2001 decodes to 376 x 251 at 1/8, the last column and row 7/8 padding: wherever
    the orientation puts them, the kept region must start past them (a crop from the corner
    shows it). Measured: about 1.1 grey levels apart; about 6-9 if the padding is kept."""
    data = photo_jpeg("coffee.png", (3001, 2001), orientation)
    query = {"w": "250", "h": "250", "fit": "cover", "g": "nw"}
    got, want = ours(data, query), reference(data, query)
    assert np.abs(luma(got) - luma(want)).mean() < 3.0


def test_draft_scale_is_what_a_render_sees() -> None:
    """The resize step gets the 1/8 frame for 6 MP -> 300 px (a revert to 1/4 fails here)."""
    data = photo_jpeg("coffee.png", SIX_MP)
    with Image.open(io.BytesIO(data)) as image:
        decoded = decode_still(image, Transform(width=300, height=300))
    assert decoded.frame.size == (375, 250)
    assert decoded.source == SIX_MP
    assert decoded.region == (0.0, 0.0, 375.0, 250.0)


def test_an_mpo_is_shrunk_on_load_like_the_jpeg_it_is() -> None:
    """Most phone and camera photos carry a multi-picture index, which Pillow opens as MPO:
    they were decoded at full size (twice the CPU of the plain JPEG for 6 MP -> 300 px)."""
    plain = photo_jpeg("coffee.png", SIX_MP)
    with Image.open(io.BytesIO(plain)) as image:
        preview = image.resize((640, 427))
        buffer = io.BytesIO()
        image.save(buffer, "MPO", save_all=True, append_images=[preview], quality=90)
    mpo = buffer.getvalue()
    with Image.open(io.BytesIO(mpo)) as image:
        assert image.format == "MPO"
        decoded = decode_still(image, Transform(width=300, height=300))
    assert decoded.frame.size == (375, 250)
    t = build_transform({"w": "300"}, 4096)
    job = RenderJob(t, OutputFormat.JPEG, 80, DECODERS, False, 50_000_000)
    with Image.open(io.BytesIO(plain)) as image:
        redone = io.BytesIO()
        image.save(redone, "JPEG", quality=90)  # the MPO's first picture, as a plain JPEG
    assert render(mpo, job).body == render(redone.getvalue(), job).body
