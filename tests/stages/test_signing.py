"""Signatures (SPEC §3): an implementation written here from the SPEC text alone, checked
against the server, the Python helpers and the CLI; rotation, truncation, and properties."""

from __future__ import annotations

import hmac
import string
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgproxy import Settings, sign_url, srcset, url_for
from imgproxy.errors import BadSignature
from imgproxy.query_string import query_pairs
from imgproxy.server.app import create_app
from imgproxy.signing import Signer, message
from tests.support import KEY, LiveServer, Serve, settings_for, spec_signature

OLD_KEY = "old-key"


def signed_settings(media: Path, **security: Any) -> Settings:
    return settings_for(media, security={"keys": [KEY, OLD_KEY], **security})


@pytest.fixture
def signed(media: Path, serve: Serve) -> LiveServer:
    return serve(create_app(signed_settings(media)))


def get(server: LiveServer, target: str) -> httpx.Response:
    return httpx.get(server.url + target, timeout=30)


def test_the_spec_examples() -> None:
    assert message("/avatars/me%20now.jpg", {}) == "/avatars/me%20now.jpg?"
    assert message("/a/b.jpg", {"w": "1 2", "s": "x", "fm": "é"}) == "/a/b.jpg?fm=%C3%A9&w=1%202"
    url = sign_url("/avatars/a.jpg", KEY)
    assert url == "/avatars/a.jpg?s=" + spec_signature(KEY, "/avatars/a.jpg", {})


def test_server_accepts_an_independently_signed_url(signed: LiveServer) -> None:
    params = {"w": "100", "h": "80", "fit": "cover"}
    s = spec_signature(KEY, "/media/photo.jpg", params)
    response = get(signed, f"/media/photo.jpg?fit=cover&w=100&h=80&s={s}")
    assert response.status_code == 200
    assert get(signed, "/media/photo.jpg?fit=cover&w=100&h=80").status_code == 403


def test_path_is_signed_exactly_as_sent(signed: LiveServer) -> None:
    s = spec_signature(KEY, "/media/me%20now.jpg", {"w": "20"})
    assert get(signed, f"/media/me%20now.jpg?w=20&s={s}").status_code == 200
    wrong = spec_signature(KEY, "/media/me now.jpg", {"w": "20"})
    assert get(signed, f"/media/me%20now.jpg?w=20&s={wrong}").status_code == 403


def test_values_are_canonically_encoded(media: Path, serve: Serve) -> None:
    server = serve(create_app(signed_settings(media, sign_originals=True)))
    s = spec_signature(KEY, "/media/photo.jpg", {"v": "a.b_c-1"})
    assert get(server, f"/media/photo.jpg?v=a.b_c-1&s={s}").status_code == 200
    assert get(server, f"/media/photo.jpg?v=a%2Eb%5Fc%2D1&s={s}").status_code == 200


def test_helpers_match_the_spec_and_the_server(media: Path, signed: LiveServer) -> None:
    settings = signed_settings(media)
    url = url_for("media", "photo.jpg", settings=settings, w=100, fit="cover", h=50)
    expected = spec_signature(KEY, "/media/photo.jpg", {"w": "100", "fit": "cover", "h": "50"})
    assert url == f"/media/photo.jpg?fit=cover&h=50&w=100&s={expected}"
    assert get(signed, url).status_code == 200
    assert sign_url("/media/photo.jpg?w=100&h=50&fit=cover", KEY) == url
    mounted = url_for("media", "me now.jpg", settings=settings, mount="/img/", w=20)
    assert mounted.startswith("/img/media/me%20now.jpg?w=20&s=")
    assert get(signed, mounted.removeprefix("/img")).status_code == 200


def test_srcset(media: Path, signed: LiveServer) -> None:
    settings = signed_settings(media)
    candidates = srcset("media", "photo.jpg", [100, 200], settings=settings, fm="webp")
    urls = [item.rsplit(" ", 1) for item in candidates.split(", ")]
    assert [width for _, width in urls] == ["100w", "200w"]
    for url, width in urls:
        response = get(signed, url)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/webp"
        assert url.count("&s=") == 1 and f"w={width[:-1]}" in url


def test_helpers_without_keys_do_not_sign(media: Path) -> None:
    assert url_for("media", "a.jpg", settings=settings_for(media), w=5) == "/media/a.jpg?w=5"
    assert url_for("media", "a.jpg", settings=settings_for(media)) == "/media/a.jpg"


def test_cli_sign_agrees(tmp_path: Path, signed: LiveServer) -> None:
    config = tmp_path / "sign.toml"
    config.write_text(f'[security]\nkeys = ["{KEY}"]\nsignature_length = 20\n')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "imgproxy",
            "sign",
            "--config",
            str(config),
            "/media/photo.jpg?w=64&fm=png",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    url = result.stdout.strip()
    expected = spec_signature(KEY, "/media/photo.jpg", {"w": "64", "fm": "png"}, 20)
    assert url == f"/media/photo.jpg?fm=png&w=64&s={expected}"


def test_key_rotation_and_truncation(media: Path, serve: Serve) -> None:
    server = serve(create_app(signed_settings(media, signature_length=16)))
    for key in (KEY, OLD_KEY):
        s = spec_signature(key, "/media/photo.jpg", {"w": "30"}, 16)
        assert get(server, f"/media/photo.jpg?w=30&s={s}").status_code == 200
    full = spec_signature(KEY, "/media/photo.jpg", {"w": "30"}, 43)
    assert get(server, f"/media/photo.jpg?w=30&s={full}").status_code == 403  # only exact length
    other = spec_signature("another", "/media/photo.jpg", {"w": "30"}, 16)
    assert get(server, f"/media/photo.jpg?w=30&s={other}").status_code == 403


def test_signature_rules(media: Path, serve: Serve) -> None:
    server = serve(create_app(signed_settings(media)))
    assert get(server, "/media/photo.jpg").status_code == 200  # originals unsigned by default
    assert get(server, "/media/photo.jpg?v=2").status_code == 200  # v alone is no transform
    assert get(server, "/media/photo.jpg?p=small").status_code == 200  # unsigned preset
    assert get(server, "/media/photo.jpg?p=small&v=3").status_code == 200
    assert get(server, "/media/photo.jpg?p=small&w=10").status_code == 403  # override needs s
    s = spec_signature(KEY, "/media/photo.jpg", {"p": "small", "w": "10"})
    overridden = get(server, f"/media/photo.jpg?p=small&w=10&s={s}")
    assert overridden.status_code == 200
    assert overridden.headers["etag"] != get(server, "/media/photo.jpg?p=small").headers["etag"]
    bad = get(server, "/media/photo.jpg?s=" + "A" * 32)  # verified when present
    assert bad.status_code == 403
    assert bad.json() == {"error": "bad_signature", "detail": "the signature does not match"}
    strict = serve(
        create_app(signed_settings(media, sign_originals=True, allow_unsigned_presets=False))
    )
    assert get(strict, "/media/photo.jpg").status_code == 403
    assert get(strict, "/media/photo.jpg?v=1").status_code == 403
    assert get(strict, "/media/photo.jpg?p=small").status_code == 403
    s = spec_signature(KEY, "/media/photo.jpg", {})
    assert get(strict, f"/media/photo.jpg?s={s}").status_code == 200


def test_no_keys_ignores_s_and_combines_presets(media: Path, serve: Serve) -> None:
    server = serve(create_app(settings_for(media)))
    assert get(server, "/media/photo.jpg?w=10&s=garbage").status_code == 200
    assert get(server, "/media/photo.jpg?p=small&w=10").status_code == 200


def test_debug_shows_the_expected_message(media: Path, serve: Serve) -> None:
    server = serve(create_app(signed_settings(media, debug=True)))
    detail = get(server, "/media/photo.jpg?w=10&s=" + "x" * 32).json()["detail"]
    assert "'/media/photo.jpg?w=10'" in detail


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("imgproxy.signing.hmac.compare_digest", spy)
    signer = Signer(Settings.from_mapping({"security": {"keys": ["a", "b"]}}, env={}).security)
    with pytest.raises(BadSignature):
        signer.check("/m/x.jpg", [("w", "1"), ("s", "y" * 32)])
    assert len(calls) == 2  # every key, through compare_digest


SIGNER = Signer(Settings.from_mapping({"security": {"keys": [KEY]}}, env={}).security)
NAME = st.sampled_from(["w", "h", "fit", "fm", "q", "p", "v", "bg", "zz"])
VALUE = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=10)
PATH = st.text(alphabet=string.ascii_letters + string.digits + "._-/ é%", min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(PATH, st.dictionaries(NAME, VALUE, max_size=5))
def test_a_signed_url_always_verifies(path: str, params: dict[str, str]) -> None:
    url = sign_url(f"/media/{urllib.parse.quote(path)}?{urllib.parse.urlencode(params)}", KEY)
    parts = urllib.parse.urlsplit(url)
    SIGNER.check(parts.path, query_pairs(parts.query))


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        NAME,
        st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=6),
        min_size=1,
        max_size=4,
    ),
    st.data(),
)
def test_any_one_character_change_never_verifies(
    params: dict[str, str], data: st.DataObject
) -> None:
    url = sign_url("/media/photo.jpg?" + "&".join(f"{k}={v}" for k, v in params.items()), KEY)
    index = data.draw(st.integers(0, len(url) - 1))
    if url[index] in "?&=":
        return  # structure, not content: changing it makes another (unparsable) URL
    replacement = data.draw(
        st.sampled_from(string.ascii_letters + string.digits).filter(lambda c: c != url[index])
    )
    changed = url[:index] + replacement + url[index + 1 :]
    parts = urllib.parse.urlsplit(changed)
    pairs = query_pairs(parts.query)
    names = {name for name, _ in pairs}
    if "s" not in names and names <= {"p", "v"}:
        return  # the change made an unsigned preset URL or an original's, which need none
    with pytest.raises(BadSignature):  # a repeated name too: the signature is judged first
        SIGNER.check(parts.path, pairs)
