"""Placeholder hashes (SPEC §13) against the formats' reference implementations: ThumbHash
with Evan Wallace's own JavaScript (the `thumbhash` npm package, run by node), BlurHash with
Wolt's C encoder and decoder (`blurhash-python`). Our hashes equal the references' bytes for
the same pixels, and decode to the source's average colour within 8/255."""

from __future__ import annotations

import base64
import io
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from imgproxy import ImageProxy, url_for
from imgproxy.render import placeholders
from tests.support import Serve, images, need_binary, settings_for

REFERENCE = """
import { rgbaToThumbHash, thumbHashToRGBA, thumbHashToAverageRGBA } from "thumbhash";
import { readFileSync } from "node:fs";
const cases = JSON.parse(readFileSync(0, "utf8"));
const decode = (bytes) => Array.from(thumbHashToRGBA(bytes).rgba);
const out = cases.map(({ w, h, rgba, hash }) => {
  const ours = Uint8Array.from(Buffer.from(hash, "base64"));
  const theirs = rgbaToThumbHash(w, h, Uint8Array.from(rgba));
  return {
    encoded: Buffer.from(theirs).toString("base64"),
    average: thumbHashToAverageRGBA(ours),
    decodedOurs: decode(ours),
  };
});
process.stdout.write(JSON.stringify(out));
"""


@pytest.fixture(scope="session")
def thumbhash_js(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """Evan Wallace's reference implementation, installed from the npm registry."""
    node, npm = need_binary("node"), need_binary("npm")
    folder = tmp_path_factory.mktemp("thumbhash-js")
    (folder / "package.json").write_text('{"type": "module", "private": true}')
    subprocess.run(
        [npm, "install", "--silent", "--no-audit", "--no-fund", "thumbhash@0.1.1"],
        cwd=folder,
        check=True,
        timeout=300,
    )
    (folder / "reference.mjs").write_text(REFERENCE)

    def run(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        done = subprocess.run(
            [node, str(folder / "reference.mjs")],
            input=json.dumps(cases),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
            cwd=folder,
        )
        result: list[dict[str, Any]] = json.loads(done.stdout)
        return result

    return run


def samples() -> dict[str, Image.Image]:
    gradient = np.zeros((90, 160, 3), np.uint8)
    gradient[..., 0] = np.linspace(0, 255, 160)[None, :]
    gradient[..., 2] = np.linspace(255, 0, 90)[:, None]
    halo = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    halo.paste((240, 60, 20, 255), (16, 16, 48, 48))
    return {
        "photo": images.photo((640, 480)),
        "portrait": images.photo((300, 500)),
        "gradient": Image.fromarray(gradient),
        "alpha": Image.open(io.BytesIO(images.rgba_png())).convert("RGBA"),
        "halo": halo,
        "flat": Image.new("RGB", (50, 50), (200, 30, 90)),
    }


def test_thumbhash_equals_the_reference_and_decodes_to_the_mean_colour(
    thumbhash_js: Callable[..., Any],
) -> None:
    cases, means = [], []
    for image in samples().values():
        small = placeholders._fit(image.convert("RGBA"), placeholders.THUMBHASH_MAX)
        rgba = np.asarray(small, dtype=np.float64) / 255
        alpha = rgba[..., 3:]
        means.append((rgba[..., :3] * alpha).sum(axis=(0, 1)) / max(alpha.sum(), 1e-9))
        cases.append(
            {
                "w": small.width,
                "h": small.height,
                "rgba": list(small.tobytes()),
                "hash": placeholders.thumbhash(image),
            }
        )
    for name, case, answer, mean in zip(samples(), cases, thumbhash_js(cases), means, strict=True):
        if name in ("photo", "portrait", "alpha"):
            assert answer["encoded"] == case["hash"], name  # byte for byte the reference's
        # The synthetic symmetric images (a linear gradient, a centred square, a flat fill)
        # have DCT terms that are zero in exact arithmetic: 0.5 * 15 = 7.5 +- 1e-16 rounds
        # either way depending on summation order, and a flat channel's "scale" is noise
        # that every decoder multiplies by 0. Their bits can differ from the JavaScript's;
        # what the format promises, the colour, is checked for all.
        painted = np.array(answer["decodedOurs"], dtype=np.float64).reshape(-1, 4) / 255
        if painted[:, 3].min() == 1:  # opaque: the painted placeholder's own mean too
            assert np.abs(painted[:, :3].mean(axis=0) - mean).max() <= 8 / 255, name
        average = np.array([answer["average"][k] for k in ("r", "g", "b")])
        assert np.abs(average - mean).max() <= 8 / 255, (average, mean)


@pytest.mark.filterwarnings("ignore:Image.Image.getdata is deprecated:DeprecationWarning")
def test_blurhash_equals_the_reference_and_decodes_to_the_linear_mean() -> None:
    import blurhash as reference

    for name, image in samples().items():
        small = placeholders._fit(image.convert("RGB"), placeholders.BLURHASH_SIDE)
        ours = placeholders.blurhash(image)
        assert ours == reference.encode(small.copy(), 4, 3), name
        assert reference.is_valid_blurhash(ours)
        decoded = reference.decode(ours, 64, 64)
        linear = placeholders._to_linear(np.asarray(small, dtype=np.float64) / 255)
        back = placeholders._to_linear(np.asarray(decoded, dtype=np.float64) / 255)
        assert np.abs(back.mean(axis=(0, 1)) - linear.mean(axis=(0, 1))).max() <= 8 / 255, name


def test_hashes_are_short_text() -> None:
    photo = images.photo((640, 480))
    assert len(placeholders.blurhash(photo)) == 28  # 4x3 components
    assert len(base64.b64decode(placeholders.thumbhash(photo))) <= 25


def test_the_cost_is_bounded_by_the_small_decode(tmp_path: Path) -> None:
    """The hashes see at most 100 px a side, whatever the source: a 6000 px image is
    reduced first (the transform never reaches the hash at full size)."""
    wide = Image.new("RGB", (6000, 40), (10, 200, 10))
    assert placeholders._fit(wide, placeholders.THUMBHASH_MAX).size == (100, 1)
    assert placeholders.thumbhash(wide) and placeholders.blurhash(wide)


def test_served_like_a_rendition(media: Path, serve: Serve) -> None:
    """Text answers with ETag, 304 and caching like a rendition; geometry does not matter;
    the same approval and signing rules."""
    (media / "held.bmp").write_bytes(images.encode(images.photo((40, 30)), "BMP"))
    settings = settings_for(media, security={"keys": ["k1"]}, store={"approved": False})
    proxy = ImageProxy(settings)
    with httpx.Client(base_url=serve(proxy).url) as http:

        def signed(path: str, **params: Any) -> str:
            return url_for("media", path, settings=settings, **params)

        first = http.get(signed("photo.jpg", fm="thumbhash"))
        assert first.status_code == 200
        assert first.headers["content-type"] == "text/plain; charset=utf-8"
        assert len(base64.b64decode(first.text)) >= 5
        again = http.get(
            signed("photo.jpg", fm="thumbhash"), headers={"if-none-match": first.headers["etag"]}
        )
        assert again.status_code == 304
        sized = http.get(signed("photo.jpg", fm="thumbhash", w=50, h=50, fit="cover"))
        assert sized.headers["etag"] == first.headers["etag"] and sized.text == first.text
        blur = http.get(signed("anim.gif", fm="blurhash"))
        assert blur.status_code == 200 and len(blur.text) == 28
        assert http.get("/media/photo.jpg?fm=thumbhash").status_code == 403  # unsigned
        refused = http.get(signed("held.bmp", fm="blurhash"))
        assert (refused.status_code, refused.json()["error"]) == (403, "not_approved")
        renders = proxy.services.metrics.renders
        assert http.get(signed("photo.jpg", fm="thumbhash")).text == first.text
        assert proxy.services.metrics.renders == renders  # a cache hit


def test_without_numpy_the_hashes_are_a_400_not_a_500(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy is the `placeholders` extra: a server without it refuses fm=thumbhash plainly,
    and the render package never imports numpy unless a hash is made."""
    import subprocess
    import sys

    from imgproxy import params
    from imgproxy.errors import BadRequest

    monkeypatch.setattr(params, "HASHES_AVAILABLE", False)
    with pytest.raises(BadRequest, match="placeholders' extra"):
        params.build_transform({"fm": "thumbhash"}, 4096)
    code = "import imgproxy.render, imgproxy.server.app, sys; print('numpy' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert found.stdout.strip() == "False", found.stderr


def test_many_clients_at_once_hostile_ones_among_them(media: Path, serve: Serve) -> None:
    """24 clients at once on one cold source, asking for both hashes and g=smart crops of
    three sizes, with decompression bombs asked for the same way beside them: every answer
    is whole and the same per URL, each distinct rendition is rendered once, the bombs are
    413 before any decode, and the server is healthy afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.support import assert_healthy, hostile

    (media / "bomb.png").write_bytes(hostile.png_bomb())
    proxy = ImageProxy(settings_for(media))
    urls = [
        "/media/photo.jpg?fm=thumbhash",
        "/media/photo.jpg?fm=blurhash",
        *(
            f"/media/photo.jpg?w={w}&h={h}&fit=cover&g=smart"
            for w, h in ((90, 200), (200, 90), (120, 120))
        ),
    ]
    bombs = ["/media/bomb.png?fm=thumbhash", "/media/bomb.png?w=50&h=50&fit=cover&g=smart"]
    with httpx.Client(base_url=serve(proxy).url, timeout=60) as http:

        def fetch(i: int) -> tuple[str, int, bytes]:
            url = (urls + bombs)[i % (len(urls) + len(bombs))]
            response = http.get(url)
            return url, response.status_code, response.content

        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(fetch, range(96)))
        for url in urls:
            bodies = {body for u, status, body in answers if u == url and status == 200}
            assert len(bodies) == 1 and all(s == 200 for u, s, _ in answers if u == url), url
        assert all(status == 413 for u, status, _ in answers if u in bombs)
        assert proxy.services.metrics.renders == len(urls)  # single flight per rendition
        assert_healthy(http)
