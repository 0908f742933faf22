"""RFC 9110 conditional requests, Range and validators as pure tables."""

from __future__ import annotations

import pytest

from imgproxy.conditional import (
    IMMUTABLE,
    ByteRange,
    RangeNotSatisfiable,
    cache_control,
    http_date,
    is_not_modified,
    make_etag,
    parse_range,
)

ETAG = '"abc"'
MODIFIED = 1_700_000_000.5
DATE = http_date(MODIFIED)
EARLIER = http_date(MODIFIED - 3600)
LATER = http_date(MODIFIED + 3600)


@pytest.mark.parametrize(
    ("inm", "ims", "expected"),
    [
        (None, None, False),
        ('"abc"', None, True),
        ('W/"abc"', None, True),  # weak comparison
        ('"x", "abc"', None, True),  # lists
        ('"x",W/"abc"', None, True),
        ("*", None, True),
        ('"x"', None, False),
        ('"abc', None, False),
        ('"x"', DATE, False),  # If-None-Match present: If-Modified-Since is ignored
        ('"x"', LATER, False),
        ('"abc"', EARLIER, True),
        (None, DATE, True),  # same second
        (None, LATER, True),
        (None, EARLIER, False),
        (None, "not a date", False),
        (None, "", False),
    ],
)
def test_is_not_modified(inm: str | None, ims: str | None, expected: bool) -> None:
    assert (
        is_not_modified(etag=ETAG, last_modified=MODIFIED, if_none_match=inm, if_modified_since=ims)
        is expected
    )


def test_ims_without_last_modified_never_matches() -> None:
    assert not is_not_modified(
        etag=ETAG, last_modified=None, if_none_match=None, if_modified_since=LATER
    )


def test_etags_are_strong_quoted_and_depend_on_every_part() -> None:
    tag = make_etag("media", "a.jpg", "v1", "w=1")
    assert tag.startswith('"') and tag.endswith('"') and not tag.startswith("W/")
    assert tag == make_etag("media", "a.jpg", "v1", "w=1")
    assert tag != make_etag("media", "a.jpg", "v2", "w=1")
    assert tag != make_etag("media", "a.jpgv1", "", "w=1")


def test_cache_control() -> None:
    assert cache_control("public, max-age=60", immutable=False) == "public, max-age=60"
    assert cache_control("public, max-age=60", immutable=True) == IMMUTABLE


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", ByteRange(0, 9)),
        ("bytes=10-", ByteRange(10, 99)),
        ("bytes=-10", ByteRange(90, 99)),
        ("bytes=-1000", ByteRange(0, 99)),
        ("bytes=90-1000", ByteRange(90, 99)),
        ("BYTES=0-0", ByteRange(0, 0)),
        ("bytes=0-1,5-6", None),  # several ranges: send it all
        ("items=0-1", None),
        ("bytes=5-1", None),
        ("bytes=a-b", None),
        ("bytes=-", None),
        ("bytes", None),
    ],
)
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 100, if_range=None, etag=ETAG, last_modified=MODIFIED) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=200-300", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100, if_range=None, etag=ETAG, last_modified=MODIFIED)


@pytest.mark.parametrize(
    ("if_range", "honoured"),
    [('"abc"', True), ('W/"abc"', False), ('"x"', False), (DATE, True), (EARLIER, False)],
)
def test_if_range(if_range: str, honoured: bool) -> None:
    result = parse_range("bytes=0-9", 100, if_range=if_range, etag=ETAG, last_modified=MODIFIED)
    assert (result is not None) is honoured
