"""`imgproxy.fetch`: saving an image from a URL under the `http` store's rules (SPEC §14, §7),
against a real origin on 127.0.0.2 and an "internal" service on 127.0.0.1 whose own log
proves what was never requested."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from imgproxy import ImageProxyError, Settings, fetch, fetch_async
from imgproxy.errors import BadRequest, UpstreamError
from imgproxy.fetching import safe_filename
from tests.support import LiveServer, images
from tests.support.origin import Internal, Origin


@pytest.fixture
def origin() -> Iterator[tuple[Origin, str]]:
    app = Origin()
    app.put("cat photo.png", images.jpeg((200, 150)))  # a JPEG named .png
    app.put("real name.jpg", images.jpeg((40, 30)))
    app.put("page.jpg", b"<html>not an image</html>")
    with LiveServer(app, host="127.0.0.2") as server:
        yield app, server.url


@pytest.fixture
def internal() -> Iterator[tuple[Internal, str]]:
    app = Internal()
    with LiveServer(app, host="127.0.0.1") as server:
        yield app, server.url


def settings(**web: Any) -> Settings:
    """A `web` http store whose rules allow the test origin (127.0.0.2) and nothing else."""
    store = {
        "kind": "http",
        "base_url": "http://unused.invalid/",
        "allowed_networks": ["127.0.0.2/32"],
        "timeout": 1.5,
        "max_source_bytes": 200_000,
        **web,
    }
    return Settings.from_mapping({"stores": {"web": store}}, env={})


def test_fetch_inspects_and_names_the_file_from_the_final_url(origin: tuple[Origin, str]) -> None:
    _, url = origin
    fetched = fetch(f"{url}/files/cat%20photo.png", settings=settings(), store="web")
    assert (fetched.info.format, fetched.info.width, fetched.info.height) == ("JPEG", 200, 150)
    assert fetched.filename == "cat photo.jpg"  # the detected format's extension
    moved = fetch(f"{url}/moved/x", settings=settings(), store="web")  # a 308 to real name.jpg
    assert moved.filename == "real name.jpg"
    hopped = fetch(f"{url}/hop/2/real%20name.jpg", settings=settings(), store="web")
    assert hopped.info.width == 40  # three redirects are allowed


def test_fetch_from_async_code(origin: tuple[Origin, str]) -> None:
    _, url = origin
    fetched = asyncio.run(
        fetch_async(f"{url}/files/real%20name.jpg", settings=settings(), store="web")
    )
    assert fetched.info.width == 40


def test_loopback_and_private_targets_are_refused_first_hop_and_redirects(
    origin: tuple[Origin, str], internal: tuple[Internal, str]
) -> None:
    _, url = origin
    service, internal_url = internal
    port = internal_url.rsplit(":", 1)[1]
    for target in (
        f"{internal_url}/latest/meta-data",  # the first hop
        f"{url}/to/127.0.0.1/{port}/latest/meta-data",  # a redirect hop
        f"http://[::ffff:127.0.0.1]:{port}/x",  # IPv4 hidden in IPv6
    ):
        with pytest.raises(ImageProxyError) as caught:
            fetch(target, settings=settings(), store="web")
        assert caught.value.code == "upstream_error", target
    with pytest.raises(ImageProxyError):  # with no store: the defaults allow no loopback
        fetch(f"{url}/files/real%20name.jpg", settings=settings())
    assert service.log == []  # nothing ever reached the internal service
    allowed = settings(allowed_networks=["127.0.0.0/8"])
    assert fetch(f"{url}/files/real%20name.jpg", settings=allowed, store="web").info.width == 40


def test_the_byte_cap_cuts_the_stream_and_the_deadline_holds(origin: tuple[Origin, str]) -> None:
    _, url = origin
    began = time.monotonic()
    with pytest.raises(ImageProxyError) as large:
        fetch(f"{url}/huge.jpg", settings=settings(), store="web")  # 6.5 GB offered
    assert large.value.code == "too_large"
    assert time.monotonic() - began < 5
    began = time.monotonic()
    with pytest.raises(ImageProxyError) as slow:
        fetch(f"{url}/drip.jpg", settings=settings(), store="web")  # a byte every 0.1 s
    assert slow.value.code == "upstream_timeout"
    assert time.monotonic() - began < 4  # the 1.5 s total deadline, not per read


def test_redirect_limits_and_non_images(origin: tuple[Origin, str]) -> None:
    _, url = origin
    for target, code in (
        (f"{url}/loop/0", "upstream_error"),  # more than 3 redirects
        (f"{url}/scheme/x", "upstream_error"),  # to file://
        (f"{url}/files/page.jpg", "unsupported_format"),
        (f"{url}/files/missing.jpg", "not_found"),
    ):
        with pytest.raises(ImageProxyError) as caught:
            fetch(target, settings=settings(), store="web")
        assert caught.value.code == code, target
    with pytest.raises(ImageProxyError):
        fetch("file:///etc/passwd", settings=settings(), store="web")
    hosts = settings(allowed_hosts=["images.example.com"])
    with pytest.raises(ImageProxyError) as other_host:
        fetch(f"{url}/files/real%20name.jpg", settings=hosts, store="web")
    assert other_host.value.code == "upstream_error"


MALFORMED = [
    "",
    "http://",
    "http://xn--/x",  # bad Punycode
    "https://xn--a/",
    "http://[::1",
    "http://[zz]/",
    "http://a b/",
    "ftp://x/",
    "file:///etc/passwd",
    "http://exa mple.com",
    "http://%zz/",
    "http://\u0000/",
    "http://a/\u0000",
    "http://\ud800/",
    "http://" + "a" * 64 + ".example/",  # a label over 63 characters
    "http://" + "a." * 127 + "example/",  # a name over 253
    "http://a..b/",
    "http://.",
    "http://-/",
    "http:///x",
    "http://user@/",
    "http://a:99999/",
    "http://a:-1/",
    "http://a:b/",
    "//a/x",
    "\u0000",
]


@pytest.mark.parametrize("url", MALFORMED)
def test_a_malformed_url_is_a_bad_request(url: str) -> None:
    with pytest.raises(BadRequest) as caught:
        fetch(url, settings=settings(), store="web")
    assert caught.value.detail.startswith("url: ")


@examples(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.builds(
            "".join,
            st.tuples(
                st.sampled_from(["http://", "https://", "HTTP://", "http:", "ftp://", ""]),
                st.text(),
                st.sampled_from(["", "/", ":80/", ":99999/", "]/", "@/"]),
                st.text(),
            ),
        ),
    )
)
def test_any_string_gives_only_imgproxy_errors(url: str) -> None:
    """No URL string escapes as httpx's, idna's or a ValueError. allowed_hosts names no
    host, so a valid URL is refused before any DNS query or connection (no network)."""
    with pytest.raises(ImageProxyError) as caught:
        fetch(url, settings=settings(allowed_hosts=["none.invalid"]), store="web")
    assert type(caught.value) in (BadRequest, UpstreamError)


@pytest.mark.parametrize(
    ("url", "format", "name"),
    [
        ("http://h/a/b/photo.JPG?x=1", "JPEG", "photo.jpg"),
        ("http://h/..%2F..%2Fetc%2Fpasswd", "PNG", "passwd.png"),
        ("http://h/a%00b%0A.gif", "GIF", "a-b.gif"),
        ("http://h/", "WEBP", "image.webp"),
        ("http://h/" + "x" * 300 + ".png", "PNG", "x" * 96 + ".png"),
        ("http://h/C%3A%5Cwin%5Cevil.exe", "TIFF", "C-win-evil.tif"),
        ("http://h/.hidden", "PNG", "hidden.png"),
        ("http://h/a%C2%85b%C2%9B%E2%80%AEgpj.exe", "JPEG", "a-b--gpj.jpg"),  # C1, bidi
    ],
)
def test_safe_filenames(url: str, format: str, name: str) -> None:
    assert safe_filename(url, format) == name


def test_content_file_for_django(origin: tuple[Origin, str]) -> None:
    from django.conf import settings as django_settings

    if not django_settings.configured:
        django_settings.configure(USE_TZ=True)
    _, url = origin
    content = fetch(f"{url}/files/real%20name.jpg", settings=settings(), store="web").content_file()
    assert content.name == "real name.jpg" and content.read()[:3] == b"\xff\xd8\xff"
