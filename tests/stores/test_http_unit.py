"""The `http` store's own logic through httpx.MockTransport: status mapping, versions,
redirect rules and failures, with no server. The origin is a public IP literal, so the
real address checks run (getaddrinfo answers a literal without DNS) and pass or refuse
exactly as in production; tests/stores/test_http.py covers the same against a real origin."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate

import httpx
import pytest

from imgproxy.errors import BadRequest, ImageProxyError, NotFound, UpstreamError, UpstreamTimeout
from imgproxy.stores import HTTPStore, StoredFile

HOST = "93.184.215.14"  # public: allowed by the default address policy, never contacted
ORIGIN = f"http://{HOST}/files/"
Handler = Callable[[httpx.Request], httpx.Response]


class Origin:
    """A MockTransport handler that logs every request it is sent."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.log: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.log.append((request.method, str(request.url)))
        return self.handler(request)


def store_for(
    origin: Origin, *, allowed_hosts: tuple[str, ...] = (), timeout: float = 5.0
) -> HTTPStore:
    transport = httpx.MockTransport(origin)
    return HTTPStore(
        ORIGIN, approved=True, allowed_hosts=allowed_hosts, timeout=timeout, transport=transport
    )


async def _fetch(store: HTTPStore, path: str) -> tuple[StoredFile, bytes]:
    try:
        file = await store.stat(path)
        return file, b"".join([chunk async for chunk in store.open(file)])
    finally:
        await store.close()


def fetch(
    origin: Origin,
    path: str = "a.jpg",
    *,
    allowed_hosts: tuple[str, ...] = (),
    timeout: float = 5.0,
) -> tuple[StoredFile, bytes]:
    store = store_for(origin, allowed_hosts=allowed_hosts, timeout=timeout)
    return asyncio.run(_fetch(store, path))


def image(request: httpx.Request, **headers: str) -> httpx.Response:
    return httpx.Response(200, headers={"content-length": "5", **headers}, content=b"bytes")


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (404, NotFound),
        (410, NotFound),
        (414, BadRequest),
        (500, UpstreamError),
        (503, UpstreamError),
        (403, UpstreamError),
        (304, UpstreamError),  # never asked for: not an image
    ],
)
def test_status_mapping(status: int, error: type[ImageProxyError]) -> None:
    origin = Origin(lambda request: httpx.Response(status))
    with pytest.raises(error) as caught:
        fetch(origin)
    assert type(caught.value) is error
    assert origin.log == [("HEAD", ORIGIN + "a.jpg")]  # stat failed: no GET


def test_stat_is_a_head_and_open_a_get_to_the_checked_address() -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.headers["host"])
        return image(request, etag='"v1"')

    origin = Origin(handler)
    file, data = fetch(origin, "sub/a b.jpg")
    assert data == b"bytes"
    assert (file.path, file.size, file.filename, file.approved) == (
        "sub/a b.jpg",
        5,
        "a b.jpg",
        True,
    )
    url = ORIGIN + "sub/a%20b.jpg"
    assert origin.log == [("HEAD", url), ("GET", url)]
    assert hosts == [HOST, HOST]


def test_no_head_falls_back_to_a_get() -> None:
    origin = Origin(
        lambda request: httpx.Response(405) if request.method == "HEAD" else image(request)
    )
    fetch(origin)
    assert [method for method, _ in origin.log] == ["HEAD", "GET", "GET"]


LAST_MODIFIED = formatdate(1_700_000_000, usegmt=True)


@pytest.mark.parametrize(
    ("headers", "version"),
    [
        ({"etag": '"abc"'}, 'etag:"abc"'),
        # The ETag wins; its strength is framing (a front weakens it), not the version.
        ({"etag": 'W/"abc"', "last-modified": LAST_MODIFIED}, 'etag:"abc"'),
        ({"last-modified": LAST_MODIFIED}, "lm:1700000000.0:5"),
    ],
)
def test_version_rules(headers: dict[str, str], version: str) -> None:
    file, _ = fetch(Origin(lambda request: image(request, **headers)))
    assert file.version == version


def test_without_validators_the_version_rolls_over_hourly() -> None:
    file, _ = fetch(Origin(image))
    assert file.version == f"none:5:{int(time.time() // 3600)}"
    assert file.modified is None


def test_a_changed_last_modified_is_a_new_version() -> None:
    stamps = iter([1_700_000_000, 1_700_000_060, 1_700_000_060])

    def handler(request: httpx.Request) -> httpx.Response:
        return image(request, **{"last-modified": formatdate(next(stamps), usegmt=True)})

    store = store_for(Origin(handler))

    async def versions() -> tuple[str, str]:
        try:
            return (await store.stat("a.jpg")).version, (await store.stat("a.jpg")).version
        finally:
            await store.close()

    first, second = asyncio.run(versions())
    assert first != second


def hops(request: httpx.Request) -> httpx.Response:
    """/files/hop/N/... redirects N times (relative Location), then serves an image."""
    parts = request.url.path.split("/")
    if parts[2] == "hop" and int(parts[3]) > 0:
        parts[3] = str(int(parts[3]) - 1)
        return httpx.Response(301, headers={"location": "/".join(parts)})
    return image(request, etag='"v1"')


def test_three_redirects_are_followed() -> None:
    origin = Origin(hops)
    file, data = fetch(origin, "hop/3/final.jpg")
    assert data == b"bytes"
    assert file.filename == "final.jpg"
    chain = [ORIGIN + f"hop/{n}/final.jpg" for n in (3, 2, 1, 0)]
    assert origin.log == [("HEAD", url) for url in chain] + [("GET", url) for url in chain]


def test_a_fourth_redirect_is_refused() -> None:
    origin = Origin(hops)
    with pytest.raises(UpstreamError, match="redirected more than 3 times"):
        fetch(origin, "hop/4/final.jpg")
    assert len(origin.log) == 4  # the fourth redirect is never followed


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "ftp://93.184.215.14/a.jpg",
        "gopher://93.184.215.14/",
        "ws://93.184.215.14/",
    ],
)
def test_a_redirect_to_a_non_http_scheme_is_refused(location: str) -> None:
    origin = Origin(lambda request: httpx.Response(302, headers={"location": location}))
    with pytest.raises(UpstreamError, match="non-HTTP"):
        fetch(origin)
    assert len(origin.log) == 1


@pytest.mark.parametrize(
    "location",
    [
        "data:,x",
        "mailto:a@b.example",
        "http://[::1",
        "http://a b/",
        "http://xn--/x",  # bad Punycode: httpx's host decoding raises idna's error
        "https://xn--a/",
        "http://a:99999/",
        "http://%zz/",
        "http://" + "a" * 64 + ".example/",
    ],
)
def test_a_malformed_redirect_is_an_upstream_error(location: str) -> None:
    """Never an exception that escapes as a 500 (httpx raises InvalidURL for some)."""
    origin = Origin(lambda request: httpx.Response(302, headers={"location": location}))
    with pytest.raises(UpstreamError) as caught:
        fetch(origin)
    assert type(caught.value) is UpstreamError
    assert len(origin.log) == 1


def redirect_to(url: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/files/a.jpg":
            return httpx.Response(302, headers={"location": url})
        return image(request, etag='"v1"')

    return handler


def test_allowed_hosts_refuse_a_hop() -> None:
    origin = Origin(redirect_to("http://images.evil.example/a.jpg"))
    with pytest.raises(UpstreamError, match="not in allowed_hosts"):
        fetch(origin, allowed_hosts=(HOST,))
    assert len(origin.log) == 1  # the refused hop was never requested (nor resolved)


def test_allowed_hosts_let_a_matching_hop_through() -> None:
    origin = Origin(redirect_to(f"http://{HOST}:8080/elsewhere/b.jpg"))
    file, _ = fetch(origin, allowed_hosts=("93.184.*",))
    assert file.filename == "b.jpg"
    assert origin.log[1] == ("HEAD", f"http://{HOST}:8080/elsewhere/b.jpg")


def test_allowed_hosts_refuse_the_origin_itself() -> None:
    origin = Origin(image)
    with pytest.raises(UpstreamError, match="not in allowed_hosts"):
        fetch(origin, allowed_hosts=("*.example.com",))
    assert origin.log == []


@pytest.mark.parametrize("target", ["10.0.0.1", "169.254.169.254", "[::ffff:127.0.0.1]"])
def test_a_redirect_to_a_private_address_is_refused_before_connecting(target: str) -> None:
    origin = Origin(redirect_to(f"http://{target}/latest/meta-data/"))
    with pytest.raises(UpstreamError, match="may not contact"):
        fetch(origin)
    assert len(origin.log) == 1


LATER = formatdate(1_700_000_060, usegmt=True)


@pytest.mark.parametrize(
    ("head", "get", "changed"),
    [
        # Framing is no change: one side's ETag, strength, length or chunking.
        ({"etag": 'W/"v1"'}, {"etag": '"v1"'}, False),
        ({"etag": '"v1"', "content-length": "5"}, {"etag": 'W/"v1"'}, False),
        ({"etag": '"v1"', "last-modified": LAST_MODIFIED}, {"last-modified": LAST_MODIFIED}, False),
        ({"last-modified": LAST_MODIFIED}, {"etag": '"v1"', "last-modified": LAST_MODIFIED}, False),
        (
            {"last-modified": LAST_MODIFIED},
            {"last-modified": LAST_MODIFIED, "content-length": "5"},
            False,
        ),
        ({"content-length": "5"}, {}, False),
        ({}, {"content-length": "5"}, False),
        ({"etag": '"v1"', "content-length": "0"}, {"etag": '"v1"', "content-length": "5"}, False),
        # What both answers say differs: another version.
        ({"etag": '"v1"'}, {"etag": '"v2"'}, True),
        ({"etag": 'W/"v1"'}, {"etag": 'W/"v2"'}, True),
        ({"etag": '"v1"', "last-modified": LAST_MODIFIED}, {"last-modified": LATER}, True),
        ({"last-modified": LAST_MODIFIED}, {"last-modified": LATER}, True),
        (
            {"last-modified": LAST_MODIFIED, "content-length": "9"},
            {"last-modified": LAST_MODIFIED, "content-length": "5"},
            True,
        ),
        ({"content-length": "9"}, {"content-length": "5"}, True),
    ],
)
def test_a_get_is_judged_against_its_head_on_what_both_say(
    head: dict[str, str], get: dict[str, str], changed: bool
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return httpx.Response(200, headers=head)
        return httpx.Response(200, headers=get, stream=httpx.ByteStream(b"bytes"))  # as sent

    if changed:
        with pytest.raises(UpstreamError, match="changed during the request"):
            fetch(Origin(handler))
    else:
        assert fetch(Origin(handler))[1] == b"bytes"


def test_a_changed_etag_between_stat_and_open_is_an_upstream_error() -> None:
    etags = iter(['"v1"', '"v2"'])
    origin = Origin(lambda request: image(request, etag=next(etags)))
    with pytest.raises(UpstreamError, match="changed during the request"):
        fetch(origin)
    assert [method for method, _ in origin.log] == ["HEAD", "GET"]


@pytest.mark.parametrize(
    ("raised", "error"),
    [
        (httpx.ConnectError, UpstreamError),
        (httpx.RemoteProtocolError, UpstreamError),
        (httpx.ConnectTimeout, UpstreamTimeout),
        (httpx.ReadTimeout, UpstreamTimeout),
    ],
)
def test_transport_failures_fail_at_once(
    raised: type[httpx.TransportError], error: type[ImageProxyError]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise raised("failed", request=request)

    origin = Origin(handler)
    began = time.monotonic()
    with pytest.raises(error) as caught:
        fetch(origin, timeout=30.0)
    assert type(caught.value) is error
    assert time.monotonic() - began < 5  # no retries, no waiting out the timeout
    assert len(origin.log) == 1


def test_a_failure_while_reading_the_body_is_an_upstream_error() -> None:
    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"by"
            raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return image(request, etag='"v1"')
        return httpx.Response(200, headers={"etag": '"v1"'}, stream=Broken())

    with pytest.raises(UpstreamError, match="ReadError"):
        fetch(Origin(handler))


def test_a_read_timeout_in_the_body_is_a_timeout() -> None:
    """httpx's own read timeout mid-body is a 504 like the deadline, not a 502."""

    class Stalled(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"by"
            raise httpx.ReadTimeout("no byte within the read timeout")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return image(request, etag='"v1"')
        return httpx.Response(200, headers={"etag": '"v1"'}, stream=Stalled())

    with pytest.raises(UpstreamTimeout):
        fetch(Origin(handler))


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "x-unknown"])
def test_an_encoded_body_is_refused_before_inflating(coding: str) -> None:
    """The store asks for `identity`: a body an HTTP client would inflate is refused unread,
    so nothing bigger than what was sent can pass the byte limits."""
    read: list[bool] = []

    class Bomb(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            read.append(True)
            yield b"\x1f\x8b"

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"etag": '"v1"', "content-encoding": coding}
        if request.method == "HEAD":
            return httpx.Response(200, headers=headers)
        return httpx.Response(200, headers=headers, stream=Bomb())

    with pytest.raises(UpstreamError, match="encoded body"):
        fetch(Origin(handler))
    assert not read


def test_the_store_asks_for_the_bytes_as_stored() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["accept-encoding"])
        return image(request, etag='"v1"')

    fetch(Origin(handler))
    assert seen == ["identity", "identity"]


@pytest.mark.parametrize(
    ("headers", "size", "modified"),
    [
        ({"content-length": "5"}, 5, None),
        ({"last-modified": "Mon, 01 Jan 99999999999 00:00:00 GMT"}, 5, None),
        ({"last-modified": "Tue, 99 Jan 2020 99:99:99 GMT"}, 5, None),
        ({"last-modified": "x" * 5000}, 5, None),
    ],
)
def test_hostile_validators_from_the_origin(
    headers: dict[str, str], size: int | None, modified: float | None
) -> None:
    file, _ = fetch(Origin(lambda request: image(request, **headers)))
    assert (file.size, file.modified) == (size, modified)
