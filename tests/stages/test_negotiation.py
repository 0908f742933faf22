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


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("image/webp;q=0.000", JPEG),
        ("image/webp;q=0.", JPEG),
        ("image/webp;q=00", JPEG),
        ("image/webp;q=.0", JPEG),
        ("image/webp;q=0.001", WEBP),
        ("image/webp;q=1e999", WEBP),  # not a qvalue: excludes nothing
        ("image/webp;q=-0", WEBP),
        ("image/webp;q=nan", WEBP),
        ("image/webp;q=inf", WEBP),
        ("image/webp;q=\u0660", WEBP),  # Arabic-Indic zero: float() reads it, RFC 9110 does not
        ("image/webp;q=0_0", WEBP),  # float() reads '0_0' too
        ("image/webp;q=" + "0" * 5000, JPEG),  # past MAX_ACCEPT: the cut item is dropped
        ("image/webp;q=" + "1" * 5000, JPEG),
        ("image/webp;q=0\xa0", WEBP),  # NBSP is not OWS
        ("\x00,\xff,image/webp", WEBP),
        (",\t" * 5000 + "image/webp", JPEG),  # past MAX_ACCEPT
        ("image/webp," + "x" * 5000, WEBP),
        ("image/webp," + "x" * 5000 + ",image/avif", WEBP),
    ],
)
def test_negotiate_takes_any_text(accept: str, expected: OutputFormat) -> None:
    assert negotiate(accept, has_alpha=False, avif=True) is expected
