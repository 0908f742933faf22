"""thumbor URLs through real servers (SPEC §15.2): each answers exactly as the native URL it
means (bytes, ETag, headers) through the ASGI app, the WSGI middleware and `imgproxy serve`;
both spellings of one rendition make one render, however many clients ask at once; hostile
thumbor paths get 403 (signatures) or 400, never a 500.

The URLs are built by libthumbor (thumbor's own library); the native URLs are written out
by hand. Rows needing native parameters of the `ops` branch run once those exist.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
from libthumbor import CryptoURL
from libthumbor.url_signers.base64_hmac_sha1 import UrlSigner
from PIL import Image

from imgproxy import ImageProxy
from imgproxy.server.app import create_app
from imgproxy.wsgi import ImageProxyMiddleware
from tests.support import LiveServer, Serve, images, metric, raw_get, settings_for, write_config
from tests.support.origin import Origin
from tests.support.processes import served

KEY = "thumbor-key"
DIALECT = {"thumbor": {"store": "media", "security_key": KEY}}
SAME_HEADERS = ("etag", "content-type", "cache-control", "vary", "content-length")


def thumbor(**options: Any) -> str:
    options.setdefault("image_url", "photo.jpg")
    return "/thumbor" + str(CryptoURL(key=KEY).generate(**options))


def sign(rest: str) -> str:
    """Any path signed by thumbor's own signer (libthumbor's), malformed or not."""
    return f"/thumbor/{UrlSigner(security_key=KEY).signature(rest).decode()}/{rest}"


EQUIVALENTS: list[Any] = [
    ({}, "/media/photo.jpg?fit=contain"),
    ({"width": 320, "height": 200}, "/media/photo.jpg?w=320&h=200&fit=cover"),
    ({"width": 200, "height": 200, "fit_in": True}, "/media/photo.jpg?w=200&h=200"),
    ({"width": 300}, "/media/photo.jpg?w=300"),
    ({"height": 90, "image_url": "wide.png"}, "/media/wide.png?h=90"),
    (
        {"width": 150, "height": 150, "halign": "left", "valign": "top"},
        "/media/photo.jpg?w=150&h=150&fit=cover&g=nw",
    ),
    (
        {"width": 100, "height": 200, "smart": True},
        "/media/photo.jpg?w=100&h=200&fit=cover&g=smart",
    ),
    (
        {"width": 120, "filters": ["quality(60)", "format(webp)"]},
        "/media/photo.jpg?w=120&q=60&fm=webp",
    ),
    (
        {"width": 200, "height": 200, "fit_in": True, "filters": ["fill(red)"]},
        "/media/photo.jpg?w=200&h=200&fit=pad&bg=ff0000",
    ),
    (
        {"width": 900, "height": 900, "fit_in": True, "filters": ["upscale()", "strip_exif()"]},
        "/media/photo.jpg?w=900&h=900&enlarge=1",
    ),
    (
        {"image_url": "me%20now.jpg", "width": 20, "filters": ["format(png)"]},
        "/media/me%20now.jpg?w=20&fm=png",
    ),
    pytest.param(
        {"crop": ((10, 20), (330, 260)), "width": 160},
        "/media/photo.jpg?crop=10,20,320,240&w=160",
    ),
    pytest.param(
        {"width": 160, "height": 100, "flip": True},
        "/media/photo.jpg?w=160&h=100&fit=cover&flip=h",
    ),
    pytest.param(
        {"width": 160, "height": 100, "filters": ["rotate(90)"]},
        "/media/photo.jpg?w=100&h=160&fit=cover&rot=270",
    ),
    pytest.param({"trim": True, "width": 50}, "/media/photo.jpg?trim=0&w=50"),
    # a crop box wholly outside the 640x480 source: thumbor ignores it (natively a 400)
    ({"crop": ((700, 500), (900, 600)), "width": 100}, "/media/photo.jpg?w=100"),
    ({"crop": ((600, 400), (900, 600)), "width": 20}, "/media/photo.jpg?crop=600,400,40,80&w=20"),
    # focal() without a crop box: fractions of the 640x480 source, once it is read
    (
        {"width": 100, "height": 100, "filters": ["focal(100x200:140x280)"]},
        "/media/photo.jpg?w=100&h=100&fit=cover&g=focal&fx=0.1875&fy=0.5",
    ),
    (
        {"width": 160, "height": 100, "filters": ["focal(100x200:140x280)", "rotate(90)"]},
        "/media/photo.jpg?w=100&h=160&fit=cover&g=focal&fx=0.1875&fy=0.5&rot=270",
    ),
    (
        {"width": 100, "height": 100, "filters": ["focal(900x10:1000x20)"]},
        "/media/photo.jpg?w=100&h=100&fit=cover&g=focal&fx=1&fy=0.03125",
    ),
    # sized as thumbor sizes them once the 640x480 source is read
    (
        {"width": 300, "height": 100, "full_fit_in": True},
        "/media/photo.jpg?w=300&h=225&fit=fill&enlarge=1",
    ),
    (
        {"width": 100, "height": 300, "adaptive_fit_in": True},
        "/media/photo.jpg?w=133&h=100&fit=fill&enlarge=1",
    ),
    # fit-in rounds the fitted side's half up, as thumbor does: 150x112.5 is 150x113
    (
        {"width": 150, "height": 203, "fit_in": True},
        "/media/photo.jpg?w=150&h=113&fit=fill&enlarge=1",
    ),
    (
        {"width": 900, "height": 100, "filters": ["no_upscale()"]},
        "/media/photo.jpg?w=640&h=100&fit=cover",
    ),
    (
        {"width": 900, "fit_in": True, "filters": ["fill(red)"]},
        "/media/photo.jpg?w=900&bg=ff0000&pad=0,130,0,130",
    ),
    pytest.param(
        {"width": 80, "filters": ["blur(3)", "sharpen(1,0.5,true)"]},
        "/media/photo.jpg?w=80&blur=1.84&sharpen=0.5",
    ),
]


def same_answer(http: httpx.Client, foreign: str, native: str) -> httpx.Response:
    """Cold through the first URL, then each URL from the rendition and ready response the
    other made, in both orders: every answer the same bytes and headers."""
    theirs, ours = http.get(foreign), http.get(native)
    assert ours.status_code == 200, (native, ours.text[:200])
    assert theirs.status_code == 200, (foreign, theirs.text[:200])
    for again in (http.get(foreign), http.get(native)):
        assert again.status_code == 200 and again.content == ours.content, foreign
        for name in SAME_HEADERS:
            assert again.headers.get(name) == ours.headers.get(name), (foreign, name)
    assert theirs.content == ours.content, foreign
    for name in SAME_HEADERS:
        assert theirs.headers.get(name) == ours.headers.get(name), (foreign, name)
    return theirs


@pytest.mark.parametrize("first", ["thumbor", "native"])
@pytest.mark.parametrize(("options", "native"), EQUIVALENTS)
def test_a_thumbor_url_answers_as_its_native_url(
    media: Path, serve: Serve, options: dict[str, Any], native: str, first: str
) -> None:
    server = serve(create_app(settings_for(media, dialects=DIALECT)))
    with httpx.Client(base_url=server.url, timeout=30) as http:
        pair = (thumbor(**options), native)
        answer = same_answer(http, *(pair if first == "thumbor" else pair[::-1]))
        again = http.get(thumbor(**options), headers={"if-none-match": answer.headers["etag"]})
        assert again.status_code == 304


def test_urls_placed_once_the_source_is_read_agree_under_many_clients_at_once(
    media: Path, serve: Serve
) -> None:
    """thumbor URLs whose native meaning needs the source's size (a focal() without a crop
    box, a crop box outside it, full-fit-in, no_upscale(), fit-in at a half pixel) and their
    native URLs, 48 clients at once on a cold server, interleaved, then once more warm: one
    answer per rendition, the same bytes and ETag whichever URL made it, and no other status
    than 200."""
    pairs = [
        (
            thumbor(width=100, height=100, filters=["focal(100x200:140x280)"]),
            "/media/photo.jpg?w=100&h=100&fit=cover&g=focal&fx=0.1875&fy=0.5",
        ),
        (
            thumbor(crop=((700, 500), (900, 600)), width=100),
            "/media/photo.jpg?w=100",
        ),
        (
            thumbor(width=300, height=100, full_fit_in=True),
            "/media/photo.jpg?w=300&h=225&fit=fill&enlarge=1",
        ),
        (
            thumbor(width=900, height=100, filters=["no_upscale()"]),
            "/media/photo.jpg?w=640&h=100&fit=cover",
        ),
        (
            thumbor(width=150, height=203, fit_in=True),
            "/media/photo.jpg?w=150&h=113&fit=fill&enlarge=1",
        ),
    ]
    urls = [url for pair in pairs for url in pair] * 6
    server = serve(create_app(settings_for(media, dialects=DIALECT)))

    def get_all() -> list[httpx.Response]:
        with httpx.Client(base_url=server.url, timeout=60) as http, ThreadPoolExecutor(48) as pool:
            return list(pool.map(http.get, urls))

    for answers in (get_all(), get_all()):
        assert {answer.status_code for answer in answers} == {200}
        for foreign, native in pairs:
            same = {
                (answer.headers["etag"], answer.content)
                for url, answer in zip(urls, answers, strict=True)
                if url in (foreign, native)
            }
            assert len(same) == 1, foreign


def test_sized_urls_past_the_limits_many_at_once(media: Path, serve: Serve) -> None:
    """full-fit-in enlarges past the box, and past limits.max_output_dimension (4096) and
    max_output_pixels when the box asks: 48 such URLs at once get their answer within the
    limits or a 400, never a 500, and the server answers on."""
    options: list[dict[str, Any]] = [
        {"width": 9000, "height": 10, "full_fit_in": True},
        {"width": 4096, "height": 1, "full_fit_in": True},
        {"width": 10, "height": 4000, "adaptive_full_fit_in": True},
        {"width": 4096, "height": 4096, "filters": ["no_upscale()", "upscale()"]},
        {"width": 4096, "fit_in": True, "filters": ["fill(red)", "upscale()"]},
        {"width": 3000, "height": 3000, "adaptive_fit_in": True, "filters": ["upscale()"]},
    ]
    urls = [thumbor(**o) for o in options] * 8
    server = serve(create_app(settings_for(media, dialects=DIALECT)))
    with httpx.Client(base_url=server.url, timeout=60) as http, ThreadPoolExecutor(48) as pool:
        answers = list(pool.map(http.get, urls))
        assert http.get("/healthz").status_code == 200
    assert {a.status_code for a in answers} <= {200, 400}
    assert {a.status_code for a in answers} == {200, 400}
    for answer in answers:
        if answer.status_code == 200:
            size = Image.open(io.BytesIO(answer.content)).size
            assert max(size) <= 4096 and size[0] * size[1] <= 16_777_216, size


@pytest.mark.parametrize(
    "options", [{}, {"filters": ["strip_exif()"]}, {"filters": ["strip_icc()", "no_upscale()"]}]
)
def test_a_thumbor_url_never_serves_the_exif_it_strips(
    media: Path, serve: Serve, options: dict[str, Any]
) -> None:
    """thumbor re-encodes every answer: a URL without geometry (strip_exif() above all) is
    the source turned upright, with no EXIF (no GPS), never the stored bytes."""
    (media / "gps.jpg").write_bytes(images.jpeg_with_exif((64, 40), 6))
    server = serve(create_app(settings_for(media, dialects=DIALECT)))
    response = httpx.get(server.url + thumbor(image_url="gps.jpg", **options), timeout=30)
    assert response.status_code == 200, response.text
    answer = Image.open(io.BytesIO(response.content))
    assert answer.size == (40, 64)
    assert not answer.getexif()


@pytest.fixture
def wsgi_url(media: Path) -> Iterator[str]:
    """The WSGI middleware under wsgiref: PATH_INFO decoded, no raw URI (the canonical
    re-encoding must keep thumbor's `:(),=` as sent)."""

    def site(_: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("404 Not Found", [("content-type", "text/plain")])
        return [b"site"]

    class Quiet(WSGIRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

    app = ImageProxyMiddleware(
        site, ImageProxy(settings_for(media, dialects=DIALECT)), prefix="/img"
    )
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/img"
    server.shutdown()
    server.server_close()


def test_through_the_wsgi_middleware(wsgi_url: str) -> None:
    with httpx.Client(base_url=wsgi_url, timeout=30) as http:
        options = {"width": 120, "height": 90, "filters": ["quality(70)", "fill(abc)"]}
        native = "/media/photo.jpg?w=120&h=90&fit=cover&q=70&bg=aabbcc"
        same_answer(http, thumbor(**options), native)
        assert http.get(thumbor(width=121).replace("121x", "122x")).status_code == 403


@pytest.fixture(scope="module")
def process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`imgproxy serve` with the dialect (its /metrics count renders)."""
    folder = tmp_path_factory.mktemp("thumbor-serve")
    media = folder / "media"
    media.mkdir()
    (media / "photo.jpg").write_bytes(images.jpeg((640, 480)))
    (media / "other.jpg").write_bytes(images.jpeg((300, 200)))
    config = write_config(
        folder, media, **{"dialects.thumbor": {"store": "media", "security_key": KEY}}
    )
    with served(config) as server:
        yield server.url
    assert "Traceback" not in server.stderr, server.stderr[-3000:]


def test_both_spellings_at_once_make_one_render(process: str) -> None:
    """24 clients ask for the thumbor URL and 24 for its native URL, all at once: one
    render, one ETag, the same bytes for all."""
    foreign = process + thumbor(width=333, height=222, halign="right")
    native = process + "/media/photo.jpg?w=333&h=222&fit=cover&g=e"
    before = metric(process, "imgproxy_renders_total")
    with ThreadPoolExecutor(48) as pool:
        answers = list(pool.map(lambda url: httpx.get(url, timeout=60), [foreign, native] * 24))
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert len({a.headers["etag"] for a in answers}) == 1
    assert metric(process, "imgproxy_renders_total") - before == 1


def hostile() -> list[tuple[str, int]]:
    good = CryptoURL(key=KEY).generate(width=300, height=200, image_url="photo.jpg")
    signature, rest = good[1:].split("/", 1)
    standard = signature.replace("-", "+").replace("_", "%2F")
    standard = standard if standard != signature else "+" + signature[1:]
    signatures = [
        signature.rstrip("="), signature[:-1], signature + "=", signature.swapcase(), "A" * 28,
        "A" * 2000, standard, "%", "%ff%fe%00", "%2F",
        "unsafe",  # not allowed on this server
        "=" * 28, "....", "%2e%2e", "%0d%0aX-Evil:%201",
    ]  # fmt: skip
    cases = [(f"/thumbor/{s}/{rest}", 403) for s in signatures]
    cases += [
        (f"/thumbor/{signature}/{r}", 403) for r in ("300x201/photo.jpg", "300x200/other.jpg")
    ]
    bad = [
        "origx100/photo.jpg", "99999x99999/photo.jpg", "-99999x-1/photo.jpg",
        "9999999999999999999999x1/photo.jpg", "1x2:3x99999999999999999/photo.jpg",
        "full-fit-in/100x0/photo.jpg", "adaptive-fit-in/x100/photo.jpg",
        "trim:bottom-right/photo.jpg", "trim:999999/photo.jpg", "meta/photo.jpg", "debug/photo.jpg",
        "filters:brightness(10)/photo.jpg", "filters:fill(auto)/photo.jpg", "filters:()/photo.jpg",
        "filters:quality(0)/photo.jpg", "filters:quality(101)/photo.jpg",
        "filters:format(tiff)/photo.jpg", "filters:rotate(45)/photo.jpg",
        "filters:blur(99999999999)/photo.jpg", "filters:watermark(x.png,0,0,0)/photo.jpg",
        "trim/filters:focal(1x1:5x5)/photo.jpg",
        "..%2F..%2Fetc%2Fpasswd", "%2e%2e/%2e%2e/etc/passwd", "sub%2F..%2F..%2Fx.jpg",
        "photo.jpg%00.png", "a%0a.jpg", "%5c..%5cwin.ini", "%ff%fe.jpg", "300x200/",
        "https://evil.example/x.jpg", "http%3A%2F%2F127.0.0.1%2Fx.jpg", "sub//a.jpg",
    ]  # fmt: skip
    cases += [(sign(r), 400) for r in bad] + [("/thumbor", 400), ("/thumbor/", 400)]
    cases += [(sign("300x200x/photo.jpg"), 404)]  # thumbor: not an option, so part of IMAGE
    cases += [(sign("x" * 3000 + ".jpg"), 404)]  # as /media/xxx…: no such file
    return cases


def test_hostile_thumbor_paths_many_clients_at_once(process: str) -> None:
    """Every case 4 times over 32 clients: each its exact status, never a 500; raw request
    lines, so no client library tidies `..` or `//` away."""
    cases = hostile() * 4
    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(lambda case: raw_get(process, case[0])[0], cases))
    wrong = [
        (path[:90], got, want)
        for (path, want), got in zip(cases, statuses, strict=True)
        if got != want
    ]
    assert wrong == []
    assert httpx.get(process + thumbor(width=40)).status_code == 200  # still healthy


def test_a_full_url_resolves_in_its_http_store(media: Path, serve: Serve) -> None:
    """thumbor's `.../http://host/path` form, under an http store's base_url: the same
    answer as that store's native URL; outside every base_url: 400, the origin never asked."""
    origin = Origin()
    origin.put("a b.jpg", images.jpeg((200, 150)))
    with LiveServer(origin, host="127.0.0.2") as remote:
        base = remote.url + "/files/"
        web = {"kind": "http", "base_url": base, "approved": True}
        web["allowed_networks"] = ["127.0.0.2/32"]
        settings = settings_for(media, dialects=DIALECT, stores={"web": web})
        with httpx.Client(base_url=serve(create_app(settings)).url, timeout=30) as http:
            foreign = thumbor(width=50, image_url=base + "a%20b.jpg")
            same_answer(http, foreign, "/web/a%20b.jpg?w=50")
            asked = len(origin.log)
            outside = thumbor(width=50, image_url=remote.url + "/other/a.jpg")
            assert http.get(outside).status_code == 400
            assert len(origin.log) == asked


def test_an_unapproved_source_is_the_same_403(media: Path, serve: Serve) -> None:
    """Approval holds whatever dialect asks: an unapproved TIFF, the native 403 answer."""
    (media / "scan.tif").write_bytes(images.encode(images.photo((80, 60)), "TIFF"))
    settings = settings_for(media, dialects=DIALECT, store={"approved": False})
    with httpx.Client(base_url=serve(create_app(settings)).url, timeout=30) as http:
        theirs = http.get(thumbor(width=40, image_url="scan.tif"))
        ours = http.get("/media/scan.tif?w=40")
        assert (theirs.status_code, theirs.json()) == (ours.status_code, ours.json())
        assert ours.status_code == 403
