"""SPEC §5 over a real uvicorn server: each header rule, each 304 rule, HEAD and Range."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from imgproxy.conditional import http_date
from tests.support import Serve, assert_healthy, images

SECURITY = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; sandbox",
}


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY.items():
        assert response.headers[name] == value


def test_original_headers(client: httpx.Client, media: Path) -> None:
    response = client.get("/media/photo.jpg")
    assert response.status_code == 200
    assert response.content == (media / "photo.jpg").read_bytes()
    h = response.headers
    assert h["content-type"] == "image/jpeg"
    assert h["content-length"] == str(len(response.content))
    assert h["etag"].startswith('"') and h["etag"].endswith('"')
    assert h["last-modified"] == http_date((media / "photo.jpg").stat().st_mtime)
    assert h["cache-control"] == "public, max-age=86400"
    assert h["accept-ranges"] == "bytes"
    assert "vary" not in h
    assert h["surrogate-key"]
    assert_security_headers(response)


def test_rendition_headers(client: httpx.Client) -> None:
    response = client.get("/media/photo.jpg?w=100&fm=webp")
    h = response.headers
    assert response.status_code == 200
    assert h["content-type"] == "image/webp"
    assert images.decode(response.content).format == "WEBP"
    assert h["content-length"] == str(len(response.content))
    assert "vary" not in h
    assert 'filename="photo.webp"' in h["content-disposition"]
    assert_security_headers(response)


def test_content_type_comes_from_the_bytes_not_the_name(client: httpx.Client, media: Path) -> None:
    (media / "really-a-png.jpg").write_bytes(images.png((10, 10)))
    response = client.get("/media/really-a-png.jpg")
    assert response.headers["content-type"] == "image/png"
    assert client.get("/media/really-a-png.jpg?w=5").headers["content-type"] == "image/png"


def test_etags_differ_per_variant_and_match_per_spelling(client: httpx.Client) -> None:
    def tag(query: str) -> str:
        return client.get(f"/media/photo.jpg?{query}").headers["etag"]

    original = client.get("/media/photo.jpg").headers["etag"]
    assert len({original, tag("w=100"), tag("w=100&fm=png"), tag("w=101")}) == 4
    assert tag("w=64&h=64&fit=cover") == tag("p=small") == tag("h=64&fit=cover&w=64&enlarge=0")
    assert tag("w=50&h=40&dpr=2") == tag("w=100&h=80")
    assert tag("w=100&fm=png&q=10") == tag("w=100&fm=png")  # q means nothing for png
    assert tag("w=100&fm=jpeg&q=82") == tag("w=100&fm=jpeg")  # the default quality, explicit


def test_changed_source_changes_the_etag_and_is_never_served_stale(
    client: httpx.Client, media: Path
) -> None:
    first = client.get("/media/photo.jpg?w=100")
    path = media / "photo.jpg"
    path.write_bytes(images.jpeg((300, 600)))
    os.utime(path, (1_800_000_000, 1_800_000_000))
    second = client.get("/media/photo.jpg?w=100")
    assert second.headers["etag"] != first.headers["etag"]
    assert images.decode(second.content).size == (100, 200)
    third = client.get("/media/photo.jpg?w=100", headers={"if-none-match": first.headers["etag"]})
    assert third.status_code == 200


def test_v_makes_the_response_immutable(client: httpx.Client) -> None:
    for url in ("/media/photo.jpg?v=abc", "/media/photo.jpg?w=10&v=1.2_3-x"):
        response = client.get(url)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    original = client.get("/media/photo.jpg?v=abc")
    assert original.content == client.get("/media/photo.jpg").content


@pytest.mark.parametrize(
    ("query", "accept", "vary", "media_type"),
    [
        ("w=50&fm=auto", "image/avif,image/webp,*/*", True, "image/avif"),
        ("w=50&fm=auto", "image/webp,*/*", True, "image/webp"),
        ("w=50&fm=auto", "*/*", True, "image/jpeg"),
        ("w=50&fm=auto", None, True, "image/jpeg"),
        ("w=50&fm=webp", "image/avif", False, "image/webp"),
        ("w=50", "image/webp", False, "image/jpeg"),
    ],
)
def test_vary_accept_exactly_with_fm_auto(
    client: httpx.Client, query: str, accept: str | None, vary: bool, media_type: str
) -> None:
    headers = {"accept": accept} if accept else {}
    response = client.get(f"/media/photo.jpg?{query}", headers=headers)
    assert response.headers["content-type"] == media_type
    assert ("vary" in response.headers) is vary
    if vary:
        assert response.headers["vary"] == "Accept"


def test_fm_auto_from_a_preset_varies_too(media: Path, serve: Serve) -> None:
    from imgproxy.server.app import create_app
    from tests.support import settings_for

    settings = settings_for(media, presets={"auto": "w=40&fm=auto"})
    with httpx.Client(base_url=serve(create_app(settings)).url) as http:
        response = http.get("/media/photo.jpg?p=auto", headers={"accept": "image/webp"})
    assert response.headers["vary"] == "Accept"
    assert response.headers["content-type"] == "image/webp"


def test_alpha_sources_default_to_png(client: httpx.Client) -> None:
    assert client.get("/media/alpha.png?w=50&fm=auto").headers["content-type"] == "image/png"


def test_head_has_the_same_headers_and_no_body(client: httpx.Client) -> None:
    for url in (
        "/media/photo.jpg",
        "/media/photo.jpg?w=80",
        "/media/photo.jpg?fm=json",
        "/media/nope",
    ):
        get, head = client.get(url), client.head(url)
        assert head.status_code == get.status_code
        assert head.content == b""
        drop = {"date"}
        assert {k: v for k, v in head.headers.items() if k not in drop} == {
            k: v for k, v in get.headers.items() if k not in drop
        }


def etag_and_date(client: httpx.Client, url: str) -> tuple[str, str]:
    response = client.get(url)
    return response.headers["etag"], response.headers["last-modified"]


@pytest.mark.parametrize(
    "url", ["/media/photo.jpg", "/media/photo.jpg?w=60&fm=auto", "/media/photo.jpg?fm=json"]
)
def test_304_rules(client: httpx.Client, url: str) -> None:
    etag, modified = etag_and_date(client, url)
    later = http_date(1_900_000_000)
    earlier = http_date(1_000_000_000)
    cases = [
        ({"if-none-match": etag}, 304),
        ({"if-none-match": "W/" + etag}, 304),
        ({"if-none-match": f'"other", {etag}'}, 304),
        ({"if-none-match": "*"}, 304),
        ({"if-none-match": '"other"'}, 200),
        ({"if-none-match": '"other"', "if-modified-since": later}, 200),  # INM wins
        ({"if-none-match": etag, "if-modified-since": earlier}, 304),
        ({"if-modified-since": modified}, 304),
        ({"if-modified-since": later}, 304),
        ({"if-modified-since": earlier}, 200),
        ({"if-modified-since": "garbage"}, 200),
    ]
    for headers, status in cases:
        response = client.get(url, headers=headers)
        assert response.status_code == status, headers
        if status == 304:
            assert response.content == b""
            assert response.headers["etag"] == etag
            assert response.headers["last-modified"] == modified
            assert response.headers["cache-control"] == "public, max-age=86400"
            assert ("vary" in response.headers) is ("fm=auto" in url)
            assert "content-type" not in response.headers
        head = client.head(url, headers=headers)
        assert head.status_code == status


def test_range_on_originals(client: httpx.Client, media: Path) -> None:
    data = (media / "photo.jpg").read_bytes()
    part = client.get("/media/photo.jpg", headers={"range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert part.headers["content-length"] == "10"
    tail = client.get("/media/photo.jpg", headers={"range": "bytes=-5"})
    assert tail.status_code == 206 and tail.content == data[-5:]
    bad = client.get("/media/photo.jpg", headers={"range": f"bytes={len(data)}-"})
    assert bad.status_code == 416
    assert bad.headers["content-range"] == f"bytes */{len(data)}"
    several = client.get("/media/photo.jpg", headers={"range": "bytes=0-1,4-5"})
    assert several.status_code == 200 and several.content == data
    etag = part.headers["etag"]
    stale = client.get("/media/photo.jpg", headers={"range": "bytes=0-1", "if-range": '"old"'})
    assert stale.status_code == 200
    fresh = client.get("/media/photo.jpg", headers={"range": "bytes=0-1", "if-range": etag})
    assert fresh.status_code == 206
    rendition = client.get("/media/photo.jpg?w=50", headers={"range": "bytes=0-1"})
    assert rendition.status_code == 200  # renditions ignore Range


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405(client: httpx.Client, method: str) -> None:
    response = client.request(method, "/media/photo.jpg")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.json()["error"] == "method_not_allowed"
    assert_healthy(client)


def test_errors_are_json_and_never_cached(client: httpx.Client) -> None:
    response = client.get("/media/photo.jpg?w=0")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert set(response.json()) == {"error", "detail"}
    assert_security_headers(response)


def test_metadata(client: httpx.Client, media: Path) -> None:
    response = client.get("/media/photo.jpg?fm=json")
    body = response.json()
    assert response.headers["content-type"] == "application/json"
    assert body["width"] == 640 and body["height"] == 480
    assert body["format"] == "jpeg" and body["frames"] == 1 and body["approved"] is True
    assert body["bytes"] == (media / "photo.jpg").stat().st_size
    assert body["etag"] == client.get("/media/photo.jpg").headers["etag"]
    assert json.loads(client.get("/media/anim.gif?fm=json").content)["frames"] == 3


def test_missing_files(client: httpx.Client) -> None:
    response = client.get("/media/missing.jpg?w=10")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert client.get("/nostore/photo.jpg").status_code == 404
    assert client.get("/media/sub").status_code == 404  # a folder is not a file


def test_placeholder_is_rendered_with_the_params(media: Path, serve: Serve) -> None:
    from imgproxy.server.app import create_app
    from tests.support import settings_for

    placeholder = media.parent / "placeholder.png"
    placeholder.write_bytes(images.png((200, 100)))
    app = create_app(settings_for(media, store={"placeholder": str(placeholder)}))
    with httpx.Client(base_url=serve(app).url) as http:
        response = http.get("/media/nobody.jpg?w=50&fm=webp")
        original = http.get("/media/nobody.jpg")
    assert response.status_code == 404
    assert response.headers["cache-control"] == "public, max-age=60"
    assert response.headers["content-type"] == "image/webp"
    assert images.decode(response.content).size == (50, 25)
    assert original.status_code == 404 and original.content == placeholder.read_bytes()


def test_healthz(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.text == "ok"
