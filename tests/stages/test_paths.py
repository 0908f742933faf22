"""Every traversal spelling is refused before a store sees it."""

from __future__ import annotations

import pytest

from imgproxy.errors import BadRequest, NotFound
from imgproxy.paths import ImagePath, parse_path
from tests.support import TRAVERSALS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/media/a.jpg", ImagePath("media", "a.jpg")),
        ("/media/sub/a.jpg", ImagePath("media", "sub/a.jpg")),
        ("/media/me%20now.jpg", ImagePath("media", "me now.jpg")),
        ("/media/%252e%252e/x", ImagePath("media", "%2e%2e/x")),  # decoded once: a plain name
        ("/media/caf%C3%A9.jpg", ImagePath("media", "café.jpg")),
    ],
)
def test_good_paths(raw: str, expected: ImagePath) -> None:
    assert parse_path(raw) == expected


@pytest.mark.parametrize("raw", TRAVERSALS)
def test_traversal_spellings_are_400(raw: str) -> None:
    with pytest.raises(BadRequest):
        parse_path(raw)


@pytest.mark.parametrize("raw", ["/", "/media", "/media/", "/Media/a.jpg", "/me.dia/a.jpg"])
def test_missing_or_bad_store_is_404(raw: str) -> None:
    with pytest.raises(NotFound):
        parse_path(raw)
