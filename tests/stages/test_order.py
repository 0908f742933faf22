"""SPEC §10: the order of checks, the authorize hook, and approval judged on every request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from imgproxy import ImageProxy, StoredFile
from tests.support import KEY, Serve, hostile, images, settings_for, spec_signature


@pytest.fixture
def ordered(media: Path, serve: Serve) -> Iterator[httpx.Client]:
    """Signing on, files unapproved by default, at most 2 frames, and an authorize hook that
    lets only the owner see `private/`."""
    (media / "private").mkdir()
    (media / "private" / "secret.jpg").write_bytes(images.jpeg((64, 48)))
    (media / "photo.tif").write_bytes(images.encode(images.photo((64, 48)), "TIFF"))
    (media / "random.png").write_bytes(b"\x00" * 100)
    (media / "bomb.png").write_bytes(hostile.png_bomb())
    (media / "cut.jpg").write_bytes(images.jpeg((400, 300))[:1500])

    async def authorize(request: Any, file: StoredFile) -> bool:
        return not file.path.startswith("private/") or request.headers.get("x-user") == "owner"

    settings = settings_for(
        media, security={"keys": [KEY]}, store={"approved": False}, limits={"max_frames": 2}
    )
    proxy = ImageProxy(settings, authorize=authorize)
    with httpx.Client(base_url=serve(proxy).url, timeout=30) as client:
        yield client


def signed(path: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    s = spec_signature(KEY, path, params)
    return f"{path}?{query}&s={s}" if query else f"{path}?s={s}"


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        ("/media/x%00.jpg?w=0&s=bad", 400, "bad_request"),  # path before everything
        ("/nostore/x.jpg?w=0&s=bad", 404, "not_found"),  # store before signature
        ("/media/missing.jpg?w=0&s=bad", 403, "bad_signature"),  # signature before params
        ("/media/missing.jpg?w=0", 403, "bad_signature"),
        (signed("/media/missing.jpg", w="0"), 400, "bad_request"),  # params before the file
        (signed("/media/private/secret.jpg", w="0"), 400, "bad_request"),
        (signed("/media/missing.jpg", w="10"), 404, "not_found"),  # file before authorize
        (signed("/media/private/secret.jpg", w="10"), 403, "forbidden"),
        (signed("/media/photo.tif", w="10"), 403, "not_approved"),
        (signed("/media/random.png", w="10"), 415, "unsupported_format"),
        (signed("/media/bomb.png", w="10"), 413, "too_large"),
        (signed("/media/anim.gif", w="10"), 413, "too_large"),  # 3 frames animated, max 2
        (signed("/media/cut.jpg", w="10"), 422, "undecodable"),
    ],
)
def test_first_failure_answers(ordered: httpx.Client, url: str, status: int, code: str) -> None:
    response = ordered.get(url)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code


def test_authorize_runs_before_the_304(ordered: httpx.Client) -> None:
    url = signed("/media/private/secret.jpg", w="10")
    allowed = ordered.get(url, headers={"x-user": "owner"})
    assert allowed.status_code == 200
    etag = allowed.headers["etag"]
    assert ordered.get(url, headers={"x-user": "owner", "if-none-match": etag}).status_code == 304
    stranger = ordered.get(url, headers={"if-none-match": etag})
    assert stranger.status_code == 403  # a 304 would confirm the file exists


def test_limits_come_before_the_304_and_the_304_before_decoding(ordered: httpx.Client) -> None:
    cut = signed("/media/cut.jpg", w="10")
    first = ordered.get(signed("/media/cut.jpg", fm="json"))
    assert first.status_code == 200  # the header is whole: metadata works
    assert ordered.get(cut).status_code == 422
    etag = ordered.get(cut, headers={"if-none-match": "*"})
    assert etag.status_code == 304  # nothing is decoded for a 304


def test_revoking_approval_takes_effect_at_once_even_for_304s(
    ordered: httpx.Client, media: Path
) -> None:
    sidecar = media / "photo.tif.meta.json"
    sidecar.write_text('{"approved": true}')
    url = signed("/media/photo.tif", w="10")
    response = ordered.get(url)
    assert response.status_code == 200
    etag = response.headers["etag"]
    assert ordered.get(url, headers={"if-none-match": etag}).status_code == 304
    sidecar.write_text('{"approved": false} ')
    revoked = ordered.get(url, headers={"if-none-match": etag})
    assert revoked.status_code == 403
    assert revoked.json()["error"] == "not_approved"
    assert ordered.get("/media/photo.tif").status_code == 403  # originals too


def test_store_policy_overrides(media: Path, serve: Serve) -> None:
    (media / "photo.bmp").write_bytes(images.encode(images.photo((64, 48)), "BMP"))
    settings = settings_for(
        media,
        store={"approved": False, "image_formats": ["JPEG", "BMP"], "max_output_dimension": 100},
    )
    with httpx.Client(base_url=serve(ImageProxy(settings)).url) as http:
        assert http.get("/media/photo.bmp?w=20").status_code == 200  # BMP allowed unapproved here
        assert http.get("/media/wide.png?w=20").json()["error"] == "unsupported_format"
        assert http.get("/media/photo.jpg?w=101").status_code == 400


def test_star_allows_every_pillow_format_once_approved(media: Path, serve: Serve) -> None:
    (media / "photo.pcx").write_bytes(images.encode(images.photo((64, 48)), "PCX"))
    (media / "pending").mkdir()
    (media / "pending" / "photo.pcx").write_bytes(images.encode(images.photo((64, 48)), "PCX"))
    (media / "pending" / "photo.pcx.meta.json").write_text('{"approved": false}')
    settings = settings_for(media, policy={"approved_image_formats": ["*"]})
    with httpx.Client(base_url=serve(ImageProxy(settings)).url) as http:
        ok = http.get("/media/photo.pcx?w=32")
        assert ok.status_code == 200
        assert ok.headers["content-type"] == "image/jpeg"
        original = http.get("/media/photo.pcx")
        assert original.headers["content-type"].startswith("image/")
        assert http.get("/media/pending/photo.pcx?w=32").json()["error"] == "not_approved"


def test_star_opens_a_file_only_as_the_format_its_bytes_claim(media: Path, serve: Serve) -> None:
    """ICO magic on a header only TGA parses: under "*" it was opened as TGA once every plugin
    was loaded, and every later read (which sniffs ICO) then saw a changed source: 503s for a
    file that can never render (found by a red-team pass). It is the ICO it claims to be, and
    undecodable as one, whatever plugins the worker has loaded."""
    from PIL import Image

    from tests.support import hostile

    Image.init()  # every plugin loaded, as in a worker that has seen an unknown format
    (media / "fake.ico").write_bytes(hostile.ico_magic_tga())
    settings = settings_for(media, policy={"approved_image_formats": ["*"]})
    with httpx.Client(base_url=serve(ImageProxy(settings)).url) as http:
        for query in ("w=32", "", "fm=json"):
            answer = http.get(f"/media/fake.ico?{query}")
            assert answer.status_code == 422, (query, answer.text)
            assert answer.json()["error"] == "undecodable"
