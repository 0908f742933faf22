from __future__ import annotations

import pytest

from imgproxy.formats import OutputFormat
from imgproxy.negotiation import negotiate

AVIF, WEBP, JPEG, PNG = OutputFormat.AVIF, OutputFormat.WEBP, OutputFormat.JPEG, OutputFormat.PNG


@pytest.mark.parametrize(
    ("accept", "alpha", "expected"),
    [
        ("", False, JPEG),
        ("*/*", False, JPEG),
        ("*/*", True, PNG),
        ("image/*", False, JPEG),
        ("image/webp,*/*", False, WEBP),
        ("image/avif,image/webp,*/*", False, AVIF),
        ("image/avif;q=0,image/webp", False, WEBP),
        ("image/avif;q=0.0,image/webp;q=0", True, PNG),
        ("image/webp;q=0.1,image/avif;q=0.2", False, AVIF),  # q does not reorder our preference
        ("image/webp;q=0.9,image/jpeg", False, WEBP),
        ("IMAGE/WEBP", False, WEBP),
        ("image/webp ; q=0.5", False, WEBP),
        ("text/html,application/xhtml+xml", False, JPEG),
        (",,;;q=,image/webp;q=abc", False, WEBP),
    ],
)
def test_negotiate(accept: str, alpha: bool, expected: OutputFormat) -> None:
    assert negotiate(accept, has_alpha=alpha, avif=True) is expected


def test_no_avif_encoder_means_no_avif() -> None:
    assert negotiate("image/avif,image/webp", has_alpha=False, avif=False) is WEBP
