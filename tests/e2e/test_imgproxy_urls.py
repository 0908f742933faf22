"""imgproxy (Go) URLs against a real `imgproxy serve` (SPEC §15.3): URLs made by an independent
builder (the PyPI `imgproxy` package, in a venv of its own) are answered with the size they
ask for; an imgproxy URL and its native equivalent are one rendition; hostile URLs, many at
once, get 403 (signatures) or 400 (everything else), never a 500."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.support import images, metric, raw_get, write_config
from tests.support.foreign_builder import build_urls
from tests.support.processes import Served, served

KEY, SALT = "736563726574", "68656C6C6F"  # imgproxy's documented example: "secret", "hello"
KEY2, SALT2 = "c0ffee" * 8, "facade" * 8


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("imgproxy-urls")
    media = root / "media"
    (media / "sub").mkdir(parents=True)
    (media / "photo.jpg").write_bytes(images.jpeg((640, 480)))
    (media / "small.jpg").write_bytes(images.jpeg((64, 48)))
    (media / "sub" / "me now.png").write_bytes(images.png((300, 200)))
    for index in range(3):
        (media / f"fresh{index}.jpg").write_bytes(images.jpeg((500, 400)))
    config = write_config(
        root,
        media,
        limits={"render_concurrency": 2},
        presets={"thumb": "w=64&h=64&fit=cover"},
        **{"dialects.imgproxy": {"store": "media", "keys": [KEY, KEY2], "salts": [SALT, SALT2]}},
    )
    with served(config) as running:
        yield running
    assert "Traceback" not in running.stderr, running.stderr[-3000:]


def sign(path: str, key: str = KEY, salt: str = SALT) -> str:
    mac = hmac.new(bytes.fromhex(key), bytes.fromhex(salt) + path.encode(), hashlib.sha256)
    return "/imgproxy/" + base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=") + path


def case(source: str, *advanced: str, **fields: Any) -> dict[str, Any]:
    return {"source": source, "fields": fields, "advanced": list(advanced)}


BUILT = [
    # (the builder's case, the output size, the media type)
    (case("local:///photo.jpg", width=100, resizing_type="fit"), (100, 75), "image/jpeg"),
    (case("photo.jpg", width=120, height=120, resizing_type="fill"), (120, 120), "image/jpeg"),
    (case("photo.jpg", "f:png", "q:50", height=60), (80, 60), "image/png"),
    (case("photo.jpg", width=50, resizing_type="fit", extension="webp"), (50, 38), "image/webp"),
    (case("photo.jpg", "dpr:2", width=50, resizing_type="fit"), (100, 75), "image/jpeg"),
    (case("small.jpg", width=200, height=200, resizing_type="fit", enlarge=True), (200, 150),
     "image/jpeg"),
    (case("small.jpg", width=200, height=200, resizing_type="fit"), (64, 48), "image/jpeg"),
    (case("photo.jpg", "ex:1", "bg:255:0:0", width=100, height=100, resizing_type="fit"),
     (100, 100), "image/jpeg"),
    (case("photo.jpg", "pr:thumb"), (64, 64), "image/jpeg"),
    (case("photo.jpg", width=90, height=30, resizing_type="fill", gravity="sm"), (90, 30),
     "image/jpeg"),
    (case("photo.jpg", "g:fp:0.2:0.8", width=90, height=30, resizing_type="fill"), (90, 30),
     "image/jpeg"),
    (case("/sub/me%20now.png", "f:jpg", width=150, resizing_type="fit"), (150, 100), "image/jpeg"),
    (case("photo.jpg"), (640, 480), "image/jpeg"),  # no options: re-encoded, as imgproxy does
    # The builder's default type is auto: fill for a box shaped like the source, else fit.
    (case("photo.jpg", width=100, height=100), (100, 100), "image/jpeg"),
    (case("photo.jpg", width=60, height=100), (60, 45), "image/jpeg"),
]  # fmt: skip
OPS_BUILT = [
    (case("photo.jpg", "pd:10", width=100, resizing_type="fit"), (120, 95), "image/jpeg"),
    (case("photo.jpg", "rot:90", width=60, resizing_type="fit"), (60, 80), "image/jpeg"),
    (case("photo.jpg", "c:0.5:0.5:nowe", width=160, resizing_type="fit"), (160, 120),
     "image/jpeg"),
    (case("photo.jpg", "c:320:120:nowe", width=160, resizing_type="fit"), (160, 60),
     "image/jpeg"),
    (case("photo.jpg", "fl:1:1", "bl:2", "sh:0.5", width=64, resizing_type="fit"), (64, 48),
     "image/jpeg"),
    (case("photo.jpg", "pix:8", "t:0", width=64, resizing_type="fit"), (64, 48), "image/jpeg"),
]  # fmt: skip


def check_built(server: Served, built: list[tuple[dict[str, Any], tuple[int, int], str]]) -> None:
    cases = [entry[0] for entry in built]
    urls = build_urls(KEY, SALT, cases) + build_urls(KEY2, SALT2, cases)  # both key pairs
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for url, (_, size, media_type) in zip(urls, built * 2, strict=True):
            response = http.get("/imgproxy" + url)
            assert response.status_code == 200, (url, response.text)
            assert response.headers["content-type"] == media_type, url
            assert Image.open(io.BytesIO(response.content)).size == size, url
            forged = url.replace(url.split("/")[1], "A" * 43, 1)
            assert http.get("/imgproxy" + forged).status_code == 403


def test_urls_from_the_pypi_builder_are_answered(server: Served) -> None:
    check_built(server, BUILT)


def test_builder_urls_with_the_operations_are_answered(server: Served) -> None:
    check_built(server, OPS_BUILT)


def test_the_cachebuster_is_the_native_version(server: Served) -> None:
    response = httpx.get(server.url + sign("/cb:r2/w:40/plain/photo.jpg"))
    assert response.status_code == 200
    assert "immutable" in response.headers["cache-control"]


def test_same_rendition_as_the_native_url_rendered_once(server: Served) -> None:
    """Many clients at once, half through each dialect, so each URL is answered both from
    its own kept response and from the other's: one render, and every answer the same
    bytes, ETag, Cache-Control, Vary and type."""
    pairs = [
        (sign("/rs:fill:120:90:0/g:soea/q:70/plain/fresh0.jpg@webp"),
         "/media/fresh0.jpg?w=120&h=90&fit=cover&g=se&q=70&fm=webp"),
        (sign("/s:100:0/bg:00ff00/plain/local:///fresh1.jpg"),
         "/media/fresh1.jpg?w=100&bg=00ff00"),
        (sign("/pr:thumb/cb:7/" + base64.urlsafe_b64encode(b"fresh2.jpg").decode() + ".png"),
         "/media/fresh2.jpg?p=thumb&v=7&fm=png"),
    ]  # fmt: skip

    async def both(foreign: str, native: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            return await asyncio.gather(*(http.get(u) for u in [foreign, native] * 12))

    for foreign, native in pairs:
        before = metric(server.url, "imgproxy_renders_total")
        answers = asyncio.run(both(foreign, native))
        assert {a.status_code for a in answers} == {200}, answers[0].text
        assert len({a.content for a in answers}) == 1
        kept = ("etag", "cache-control", "vary", "content-type", "last-modified")
        assert len({tuple(a.headers.get(name) for name in kept) for a in answers}) == 1
        assert metric(server.url, "imgproxy_renders_total") - before == 1


def hostile_urls() -> list[tuple[str, int]]:
    good = sign("/w:50/plain/photo.jpg")
    signature = good.split("/")[2]
    bad_signatures = [
        signature + "=", signature[:-1], signature + "A", signature.swapcase(), "insecure",
        "unsafe", "_", "%3D" * 20, "A" * 43, "%C3%A9", "..",
        sign("/w:50/plain/photo.jpg", KEY, SALT2).split("/")[2],
    ]  # fmt: skip
    cases = [(f"/imgproxy/{s}/w:50/plain/photo.jpg", 403) for s in bad_signatures]
    cases += [("/imgproxy/", 403), ("/imgproxy//w:50/plain/photo.jpg", 403)]
    bad_options = [
        "zoom:2", "w:-5", "w:99999999", "h:1e9", "dpr:100", "dpr:0", "rs:auto:10:10:0:1:no",
        "rs:fit:10:10:0:1:no", "g:fp:9:9", "c:50:50", "t:1:abc", "rot:45", "fl:maybe",
        "bl:1e308", "sh:-1", "pix:99999", "pd:99999", "bg:1:2", "q:1000", "f:exe", "wm:1",
        "pr:nope", "pr:a:b", "cb:" + "x" * 200, "w:" + "9" * 5000, "a:" * 300, ":::::",
        "rs:fill:" + ":" * 50,
    ]  # fmt: skip
    cases += [(sign(f"/{options}/plain/photo.jpg"), 400) for options in bad_options]
    bad_sources = [
        "plain/../media/photo.jpg", "plain/%2e%2e/photo.jpg", "plain/a/%252e%252e/photo.jpg",
        "plain/local:///../etc/passwd", "plain/%00.jpg",
        "plain/http://evil.example.net/x.jpg", "plain/https://127.0.0.1:1/x.jpg",
        "plain/gs://b/x.jpg", "plain/photo.jpg@bmp", "plain/photo.jpg@png@png",
        "!!notbase64!!", "bm90IHV0Zi04_w", "Li4vZXRjL3Bhc3N3ZA", "a", "x.y.z",
        "plain/photo.jpg%3Fa=1",
    ]  # fmt: skip
    cases += [(sign(f"/w:50/{source}"), 400) for source in bad_sources]
    # A leading slash is imgproxy's join to its base URL: still inside the store.
    cases += [(sign("/w:50/plain//etc/passwd"), 404), (sign("/w:50/plain/nope.jpg"), 404)]
    many = sign("/" + "w:9/" * 400 + "w:1/plain/photo.jpg")  # the last one wins, as there
    return [*cases, (good, 200), (many, 200)]


def test_hostile_urls_many_at_once_never_500(server: Served) -> None:
    cases = hostile_urls()
    with ThreadPoolExecutor(16) as pool:  # as written: `..` and `//` reach the server
        statuses = list(pool.map(lambda c: raw_get(server.url, c[0])[0], cases * 3))
    got = dict(zip([target for target, _ in cases * 3], statuses, strict=True))
    assert got == dict(cases)
    assert 500 not in statuses
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_the_builder_runs_in_its_own_venv() -> None:
    """Its `imgproxy` is the builder, not this package (whose name it shares)."""
    url = build_urls(KEY, SALT, [case("http://example.com/images/curiosity.jpg")])[0]
    assert url.endswith("/aHR0cDovL2V4YW1wbGUuY29tL2ltYWdlcy9jdXJpb3NpdHkuanBn")
    assert url.split("/")[1] == sign(url[url.index("/", 1) :]).split("/")[2]
