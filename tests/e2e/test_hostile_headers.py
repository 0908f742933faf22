"""Arbitrary request-header bytes -> a 2xx, 304, 400 or 416, never a 500 (SPEC §5).

The property test drives the core itself (ImageRequest in, ImageResponse out) with the
header values a server hands over: any bytes, decoded as latin-1. The socket tests send the
raw bytes over the wire to a real uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgproxy import pipeline
from imgproxy.conditional import http_date
from imgproxy.messages import ImageRequest, ImageResponse
from imgproxy.services import Services
from tests.support import LiveServer, assert_healthy, images, raw_get, settings_for

latin1 = st.binary(max_size=200).map(lambda raw: raw.decode("latin-1"))
# Characters that look like digits, separators and spaces to one parser or another.
TRICKY = '0123456789²³¹¼½ \t\xa0\x85-,=;."*/qW\x00\xff'
tricky = st.text(alphabet=TRICKY, max_size=40)
number = st.one_of(
    st.integers(min_value=0, max_value=10**40).map(str),
    st.text(alphabet="0123456789²³¹", min_size=1, max_size=30),  # str.isdigit() says yes
    st.integers(min_value=0, max_value=6000).map(lambda n: "9" * n),  # int() stops at 4300
    tricky,
)
dates = st.one_of(
    st.integers(min_value=0, max_value=253_402_300_799).map(http_date),  # to year 9999
    st.builds(
        "{}, {} {} {} {}:{}:{} GMT".format,
        st.sampled_from(["Mon", "Tue", "xx"]),
        number,
        st.sampled_from(["Jan", "Feb", "jan", "XXX", "²"]),
        number,
        number,
        number,
        number,
    ),
)
etags = st.builds('"{}", W/"{}"'.format, tricky, tricky)
ranges = st.one_of(
    st.builds("bytes={}-{}".format, number, number),
    st.builds("bytes=-{}".format, number),
    st.builds("bytes={}-".format, number),
    st.builds("{}={}-{}".format, tricky, number, number),
)
accepts = st.builds("image/webp;q={},image/avif;q={}".format, number, number)
# Per header: any latin-1 text, or text shaped like the header's grammar with hostile parts.
VALUES = {
    "range": st.one_of(latin1, tricky, ranges),
    "if-range": st.one_of(latin1, tricky, dates, etags),
    "if-none-match": st.one_of(latin1, tricky, etags),
    "if-modified-since": st.one_of(latin1, tricky, dates),
    "accept": st.one_of(latin1, tricky, accepts),
}
PARSED = tuple(VALUES)  # every request header the core parses (asgi.WANTED_HEADERS)
QUERIES = ("", "w=32", "fm=json", "w=16&fm=auto")  # an original, renditions, metadata
ANSWERS = {200, 206, 304, 400, 416}


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    folder = tmp_path_factory.mktemp("hostile-headers") / "media"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(images.jpeg((64, 48)))
    built = Services.build(settings_for(folder))
    yield built
    asyncio.run(built.close())


def serve(services: Services, query: str, sent: dict[str, str]) -> ImageResponse:
    request = ImageRequest("GET", "/media/photo.jpg", query, sent)
    return asyncio.run(pipeline.serve(services, request))


def assert_answered(response: ImageResponse) -> None:
    assert response.status in ANSWERS, (response.status, response.body[:200])
    if response.status == 206:
        size = int(dict(response.headers)["content-range"].rpartition("/")[2])
        assert 0 < len(response.body) <= size


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("name", PARSED)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_value_of_one_header_gets_an_answer(
    services: Services, query: str, name: str, data: st.DataObject
) -> None:
    sent = {name: data.draw(VALUES[name], label=name)}
    if name == "if-range":
        sent["range"] = "bytes=0-9"
    assert_answered(serve(services, query, sent))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=st.sampled_from(QUERIES), sent=st.fixed_dictionaries({}, optional=VALUES))
def test_any_mix_of_headers_gets_an_answer(
    services: Services, query: str, sent: dict[str, str]
) -> None:
    assert_answered(serve(services, query, sent))


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize(
    "sent",
    [
        {"range": "bytes=²-"},  # '²'.isdigit() is True; int('²') raised: 500 before
        {"range": "bytes=-²"},
        {"range": "bytes=0-" + "9" * 5000},  # int() raised past 4300 digits: 500 before
        {"range": "bytes=" + "1" * 5000 + "-"},
        {"range": "bytes=-" + "1" * 5000},
        {"range": "bytes=0-1", "if-range": "Mon, 01 Jan 99999999999 00:00:00 GMT"},
        {"if-modified-since": "Mon, 01 Jan 99999999999 00:00:00 GMT"},
        {"if-none-match": "," * 10_000},
        {"accept": "image/webp;q=1e999,image/avif;q=nan"},
    ],
)
def test_the_reproduced_500s(services: Services, query: str, sent: dict[str, str]) -> None:
    assert serve(services, query, sent).status in {200, 206}


RAW = [
    "Range: bytes=\xb2-\r\n",
    "Range: bytes=-\xb2\xb3\r\n",
    "Range: bytes=0-" + "9" * 5000 + "\r\n",
    "Range: bytes=" + "1" * 5000 + "-\r\n",
    "Range: bytes=0-1\r\nIf-Range: \xff\xfe\x80\r\n",
    "If-None-Match: \xa0*\xa0\r\n",
    "If-Modified-Since: Mon, 01 Jan 99999999999 00:00:00 GMT\r\n",
    "If-Modified-Since: \xe9t\xe9\r\n",
    "Accept: image/webp;q=\xb2,\xff/\xff\r\n",
    "Range: bytes=0-1\r\nRange: bytes=\xb9-\r\n",
]


@pytest.mark.parametrize("query", ["", "?w=32", "?fm=json"])
def test_raw_header_bytes_over_a_socket(
    server: LiveServer, client: httpx.Client, query: str
) -> None:
    for sent in RAW:
        status, data = raw_get(server.url, "/media/photo.jpg" + query, sent)
        assert status in {200, 206}, (sent[:60], data[:300])
    assert_healthy(client)


def test_raw_bytes_still_get_the_range_they_name(server: LiveServer) -> None:
    status, data = raw_get(server.url, "/media/photo.jpg", "Range: bytes=0-3\r\nAccept: \xff\r\n")
    assert status == 206
    assert data.endswith(b"\r\n\r\n\xff\xd8\xff\xe0")
