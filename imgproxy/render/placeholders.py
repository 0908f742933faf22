"""Placeholder hashes (SPEC §13): a few dozen bytes a page inlines and paints, blurred, while
the image loads. Both are a handful of low-frequency DCT terms of a small decode.

- ThumbHash (Evan Wallace's format): luminance, two chroma channels and alpha in LPQA
  space, 5 header bytes plus 4-bit AC terms; keeps the aspect ratio. Base64 text.
- BlurHash (Wolt's format): linear-light RGB, `x` by `y` components, base83 text.

Written here with numpy (no maintained, fast Python package exists for either: the pure
Python ports loop per pixel, ~100x slower); tests decode our hashes with the formats'
reference decoders.
"""

from __future__ import annotations

import base64
import math

import numpy as np
from numpy.typing import NDArray
from PIL import Image

THUMBHASH_MAX = 100  # the format's own bound on the encoded image's sides
BLURHASH_SIDE = 32  # enough for 4x3 components; the sum is over every pixel
BLURHASH_COMPONENTS = (4, 3)
BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"

Floats = NDArray[np.float64]
Terms = tuple[float, list[float], float]  # (DC, AC scaled into 0..1, the AC scale)


def thumbhash(image: Image.Image) -> str:
    """The ThumbHash of `image` (any mode), as base64."""
    small = _fit(image.convert("RGBA"), THUMBHASH_MAX)
    rgba = np.asarray(small, dtype=np.float64) / 255.0
    return base64.b64encode(_thumbhash(rgba)).decode("ascii")


def blurhash(image: Image.Image, components: tuple[int, int] = BLURHASH_COMPONENTS) -> str:
    """The BlurHash of `image` flattened to RGB, with `components` (x, y)."""
    small = _fit(image.convert("RGB"), BLURHASH_SIDE)
    rgb = np.asarray(small, dtype=np.float64) / 255.0
    return _blurhash(_to_linear(rgb), *components)


def _fit(image: Image.Image, side: int) -> Image.Image:
    """Within side x side, aspect kept; a box filter averages every source pixel in."""
    if max(image.size) <= side:
        return image
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BOX)


def _basis(count: int, length: int, offset: float = 0.5) -> Floats:
    """cos(pi * k * (i + offset) / length) for k < count: DCT rows. ThumbHash samples pixel
    centres (offset 0.5, a DCT-II); BlurHash's reference samples pixel corners (offset 0)."""
    k = np.arange(count)[:, None]
    i = np.arange(length)[None, :] + offset
    return np.cos(np.pi * k * i / length)


def _thumbhash(rgba: Floats) -> bytes:
    """LPQA channels -> their DCT terms -> the header bytes, then every AC term as a nibble."""
    h, w = rgba.shape[:2]
    channels, has_alpha = _lpqa(rgba)
    l_limit = 5 if has_alpha else 7
    lx = max(1, round(l_limit * w / max(w, h)))
    ly = max(1, round(l_limit * h / max(w, h)))
    lum = _dct_terms(channels["l"], max(3, lx), max(3, ly))
    p = _dct_terms(channels["p"], 3, 3)
    q = _dct_terms(channels["q"], 3, 3)
    out = _header(lum, p, q, has_alpha=has_alpha, lx=lx, ly=ly, landscape=w > h)
    groups = [lum[1], p[1], q[1]]
    if has_alpha:
        a_dc, a_ac, a_scale = _dct_terms(channels["a"], 5, 5)
        out.append(_round(15 * a_dc) | _round(15 * a_scale) << 4)
        groups.append(a_ac)
    return bytes(out + _nibbles(groups))


def _lpqa(rgba: Floats) -> tuple[dict[str, Floats], bool]:
    """The L, P, Q and alpha channels, and whether any pixel is (partly) transparent."""
    h, w = rgba.shape[:2]
    alpha = rgba[..., 3]
    total = alpha.sum()
    # The average colour, weighted by alpha; transparent pixels are composited onto it.
    average = (rgba[..., :3] * alpha[..., None]).sum(axis=(0, 1)) / total if total else np.zeros(3)
    has_alpha = bool(total < w * h)
    rgb = average * (1 - alpha[..., None]) + rgba[..., :3] * alpha[..., None]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    channels = {
        "l": (r + g + b) / 3,
        "p": (r + g) / 2 - b,
        "q": r - g,
        "a": alpha,
    }
    return channels, has_alpha


def _dct_terms(channel: Floats, nx: int, ny: int) -> Terms:
    """The DC and the triangle of low-frequency AC terms of `channel`, the ACs scaled into
    0..1 by their largest magnitude (the scale, which the hash also stores)."""
    h, w = channel.shape
    terms = _basis(ny, h) @ channel @ _basis(nx, w).T / (w * h)  # [cy, cx]
    dc, ac = 0.0, []
    for cy in range(ny):
        cx = 0
        while cx * ny < nx * (ny - cy):  # a triangle of low frequencies
            if cx or cy:
                ac.append(float(terms[cy, cx]))
            else:
                dc = float(terms[0, 0])
            cx += 1
    scale = max((abs(f) for f in ac), default=0.0)
    if scale:
        ac = [0.5 + 0.5 / scale * f for f in ac]
    return dc, ac, scale


def _header(
    lum: Terms, p: Terms, q: Terms, *, has_alpha: bool, lx: int, ly: int, landscape: bool
) -> list[int]:
    """The 5 header bytes: L, P and Q's DCs and scales, the alpha flag, the aspect ratio."""
    header24 = (
        _round(63 * lum[0])
        | _round(31.5 + 31.5 * p[0]) << 6
        | _round(31.5 + 31.5 * q[0]) << 12
        | _round(31 * lum[2]) << 18
        | int(has_alpha) << 23
    )
    header16 = (
        (ly if landscape else lx)
        | _round(63 * p[2]) << 3
        | _round(63 * q[2]) << 9
        | int(landscape) << 15
    )
    return [header24 & 255, (header24 >> 8) & 255, header24 >> 16, header16 & 255, header16 >> 8]


def _nibbles(groups: list[list[float]]) -> list[int]:
    """Every AC term as 4 bits, two to a byte, low nibble first."""
    nibbles = [_round(15 * f) for group in groups for f in group]
    out = []
    for index in range(0, len(nibbles), 2):
        pair = nibbles[index : index + 2]
        out.append(pair[0] | (pair[1] << 4 if len(pair) == 2 else 0))
    return out


def _round(value: float) -> int:
    """JavaScript's Math.round (half up), which the format's reference uses."""
    return math.floor(value + 0.5)


def _to_linear(srgb: Floats) -> Floats:
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _to_srgb(linear: float) -> int:
    v = min(1.0, max(0.0, linear))
    if v <= 0.0031308:
        return math.floor(v * 12.92 * 255 + 0.5)
    return math.floor((1.055 * math.pow(v, 1 / 2.4) - 0.055) * 255 + 0.5)


def _base83(value: int, length: int) -> str:
    return "".join(BASE83[(value // 83**power) % 83] for power in range(length - 1, -1, -1))


def _blurhash(linear: Floats, nx: int, ny: int) -> str:
    h, w = linear.shape[:2]
    # factors[cy, cx, channel] = norm * sum over pixels of basis * colour / pixels
    rows, columns = _basis(ny, h, offset=0.0), _basis(nx, w, offset=0.0)
    factors = np.einsum("yi,ijc,xj->yxc", rows, linear, columns) / (w * h)
    factors[1:] *= 2  # every term but the DC counts twice (the format's normalisation)
    factors[0, 1:] *= 2
    dc = factors[0, 0]
    ac = factors.reshape(-1, 3)[1:]
    text = _base83((nx - 1) + (ny - 1) * 9, 1)
    if len(ac):
        largest = float(np.abs(ac).max())
        quantised = max(0, min(82, math.floor(largest * 166 - 0.5)))
        maximum = (quantised + 1) / 166
        text += _base83(quantised, 1)
    else:
        maximum = 1.0
        text += _base83(0, 1)
    text += _base83((_to_srgb(dc[0]) << 16) + (_to_srgb(dc[1]) << 8) + _to_srgb(dc[2]), 4)
    for r, g, b in ac:
        quantised_ac = [
            max(0, min(18, math.floor(math.copysign(abs(v / maximum) ** 0.5, v) * 9 + 9.5)))
            for v in (r, g, b)
        ]
        text += _base83(quantised_ac[0] * 19 * 19 + quantised_ac[1] * 19 + quantised_ac[2], 2)
    return text
