"""Hostile requests over a real server: traversal spellings, bad params, symlinks out of the
root. Each gets its 4xx and the server keeps serving afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.support import BAD, TRAVERSALS, LiveServer, assert_healthy, raw_get

SECRET = b"TOP-SECRET-BYTES"


@pytest.fixture
def secret(media: Path) -> Path:
    """A file beside the root (and the process's own /etc/passwd) that must never leak."""
    path = media.parent / "secret.jpg"
    path.write_bytes(b"\xff\xd8\xff" + SECRET)
    return path


EXTRA = [
    "/media/../secret.jpg",
    "/media/%2e%2e/secret.jpg",
    "/media/%2e%2e%2fsecret.jpg",
    "/media/..%2fsecret.jpg",
    "/media/..%5csecret.jpg",
    "/media/%252e%252e%252fsecret.jpg",
    "/media/sub/..%2f..%2fsecret.jpg",
    "/media/%c0%ae%c0%ae/secret.jpg",  # overlong UTF-8 dots
    "/media/.%00./secret.jpg",
    "/media/%2Fetc%2Fpasswd",
    "/media/" + "%2e%2e/" * 20 + "etc/passwd",
]


@pytest.mark.parametrize("target", TRAVERSALS + EXTRA)
def test_traversal_spellings_never_leak(
    server: LiveServer, client: httpx.Client, secret: Path, target: str
) -> None:
    for query in ("", "?w=10"):
        status, data = raw_get(server.url, target + query)
        assert status in (400, 404), data[:200]
        assert SECRET not in data and b"root:" not in data
    assert_healthy(client)


def test_symlinks_pointing_outside_the_root_are_not_found(
    client: httpx.Client, media: Path, secret: Path
) -> None:
    os.symlink(secret, media / "link.jpg")
    os.symlink(media.parent, media / "up")
    os.symlink(media / "photo.jpg", media / "inside.jpg")
    for url in ("/media/link.jpg", "/media/up/secret.jpg", "/media/link.jpg?w=10"):
        response = client.get(url)
        assert response.status_code == 404
        assert SECRET not in response.content
    assert client.get("/media/inside.jpg").status_code == 200  # links inside the root are fine


def test_sidecars_are_not_served(client: httpx.Client, media: Path) -> None:
    (media / "photo.jpg.meta.json").write_text('{"approved": true}')
    assert client.get("/media/photo.jpg.meta.json").status_code == 404


@pytest.mark.parametrize(("query", "name"), BAD)
def test_each_bad_param_is_a_400_naming_it(client: httpx.Client, query: str, name: str) -> None:
    response = client.get(f"/media/photo.jpg?{query}")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "bad_request"
    assert name in body["detail"]
    assert_healthy(client)


def test_unicode_and_huge_queries(server: LiveServer, client: httpx.Client) -> None:
    for query in ("w=%F0%9F%98%80", "w=%ff", "%00=1", "w=1" + "&x" * 2000, "fm=" + "a" * 5000):
        response = client.get(f"/media/photo.jpg?{query}")
        assert response.status_code == 400, query
        assert len(response.content) < 2000  # the message quotes a cut value
    assert_healthy(client)
