"""Geometry of each fit mode, with and without enlarge (SPEC §2.1, §10)."""

from __future__ import annotations

import pytest

from imgproxy.geometry import plan
from imgproxy.params import Fit

S = (1000, 500)


@pytest.mark.parametrize(
    ("box", "fit", "enlarge", "size", "canvas", "crop"),
    [
        ((None, None), Fit.CONTAIN, False, (1000, 500), (1000, 500), (1000, 500)),
        ((300, 300), Fit.CONTAIN, False, (300, 150), (300, 150), S),
        ((300, None), Fit.CONTAIN, False, (300, 150), (300, 150), S),
        ((None, 100), Fit.CONTAIN, False, (200, 100), (200, 100), S),
        ((2000, 2000), Fit.CONTAIN, False, (1000, 500), (1000, 500), S),
        ((2000, 2000), Fit.CONTAIN, True, (2000, 1000), (2000, 1000), S),
        ((300, 300), Fit.COVER, False, (300, 300), (300, 300), (500, 500)),
        ((300, 100), Fit.COVER, False, (300, 100), (300, 100), (1000, 333)),
        ((2000, 2000), Fit.COVER, False, (500, 500), (500, 500), (500, 500)),  # same shape, smaller
        ((2000, 2000), Fit.COVER, True, (2000, 2000), (2000, 2000), (500, 500)),
        ((300, 300), Fit.FILL, False, (300, 300), (300, 300), S),
        ((2000, 300), Fit.FILL, False, (1000, 300), (1000, 300), S),  # each axis capped
        ((2000, 300), Fit.FILL, True, (2000, 300), (2000, 300), S),
        ((300, 300), Fit.PAD, False, (300, 150), (300, 300), S),
        ((2000, 2000), Fit.PAD, False, (1000, 500), (2000, 2000), S),  # content never enlarged
        ((2000, 2000), Fit.PAD, True, (2000, 1000), (2000, 2000), S),
        # auto: cover when source and box are both landscape (square counts) or both portrait
        ((300, 300), Fit.AUTO, False, (300, 300), (300, 300), (500, 500)),
        ((300, 100), Fit.AUTO, False, (300, 100), (300, 100), (1000, 333)),
        ((300, 600), Fit.AUTO, False, (300, 150), (300, 150), S),
    ],
)
def test_plan(
    box: tuple[int | None, int | None],
    fit: Fit,
    enlarge: bool,
    size: tuple[int, int],
    canvas: tuple[int, int],
    crop: tuple[int, int],
) -> None:
    geometry = plan(S, box, fit, enlarge=enlarge)
    assert geometry.size == size
    assert geometry.canvas == canvas
    assert abs(geometry.crop[0] - crop[0]) <= 1 and abs(geometry.crop[1] - crop[1]) <= 1


@pytest.mark.parametrize("source", [(1, 1), (1, 4000), (4000, 1), (3, 7)])
@pytest.mark.parametrize("fit", list(Fit))
def test_degenerate_sources_never_give_zero_sizes(source: tuple[int, int], fit: Fit) -> None:
    geometry = plan(source, (100, 37), fit, enlarge=False)
    assert min(geometry.size) >= 1 and min(geometry.canvas) >= 1 and min(geometry.crop) >= 1
    assert geometry.crop[0] <= source[0] and geometry.crop[1] <= source[1]
