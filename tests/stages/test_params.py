"""The query parser: canonical forms, every parameter's range errors, and hostile strings."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgproxy.errors import BadRequest
from imgproxy.formats import OutputFormat
from imgproxy.params import AUTO, Fit, Gravity, Transform, parse_query
from imgproxy.query_string import split_query
from tests.support import BAD

PRESETS = {"small": "w=64&h=64&fit=cover", "auto": "w=100&fm=auto"}


def parse(query: str, max_dimension: int = 4096) -> Transform | None:
    return parse_query(split_query(query), presets=PRESETS, max_dimension=max_dimension).transform


def test_no_params_is_the_original() -> None:
    assert parse("") is None
    assert parse("v=abc") is None


def test_every_param_parses() -> None:
    t = parse("w=300&h=200&fit=cover&enlarge=1&g=focal&fx=0.25&fy=0.75&fm=webp&q=70&bg=FFF")
    assert t == Transform(
        width=300,
        height=200,
        fit=Fit.COVER,
        enlarge=True,
        gravity=Gravity.FOCAL,
        focal=(0.25, 0.75),
        format=OutputFormat.WEBP,
        quality=70,
        background=(255, 255, 255, 255),
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("w=300&h=200", "h=200&w=300"),  # order
        ("w=300", "w=300&fit=contain&enlarge=0&g=center&bg=ffffff"),  # explicit defaults
        ("w=150&h=100&dpr=2", "w=300&h=200"),  # dpr folded
        ("w=300&h=200&fit=contain&g=n", "w=300&h=200"),  # gravity means nothing for contain
        ("w=300&h=200&fit=cover&fx=0.1", "w=300&h=200&fit=cover"),  # focal only with g=focal
        ("w=300&fit=cover", "w=300"),  # one open side: cover is contain
        ("w=300&fit=auto", "w=300"),  # ...and so is auto
        ("w=300&h=200&fit=auto&g=n&fx=0.1", "w=300&h=200&fit=auto&g=n"),  # auto may cover
        ("p=small", "w=64&h=64&fit=cover"),  # a preset is its expansion
        ("bg=ABC", "bg=aabbccff"),  # hex colours are case-insensitive
    ],
)
def test_equal_renditions_have_one_canonical_form(first: str, second: str) -> None:
    a, b = parse(first), parse(second)
    assert a == b
    assert a is not None
    assert b is not None
    assert a.canonical() == b.canonical()


def test_different_renditions_differ() -> None:
    assert parse("w=300")
    parsed = [parse(q) for q in ("w=300", "w=301", "h=300", "w=300&fit=pad&h=3")]
    keys = {t.canonical() for t in parsed if t is not None}
    assert len(keys) == 4


def test_dpr_product_is_capped_keeping_the_box_shape() -> None:
    t = parse("w=3000&h=1500&dpr=4")
    assert t is not None and (t.width, t.height) == (4096, 2048)


def test_explicit_params_override_a_preset() -> None:
    t = parse("p=small&w=100")
    assert t is not None and (t.width, t.height, t.fit) == (100, 64, Fit.COVER)


def test_fm_auto_is_kept_for_vary() -> None:
    t = parse("p=auto")
    assert t is not None and t.format == AUTO


@pytest.mark.parametrize(("query", "name"), BAD)
def test_bad_values_are_400s_naming_the_param(query: str, name: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse(query)
    assert caught.value.detail.startswith(f"'{name}'") or caught.value.detail.startswith(f"{name}:")


def test_max_dimension_comes_from_the_store_limits() -> None:
    assert parse("w=100", max_dimension=100) is not None
    with pytest.raises(BadRequest, match=r"1\.\.100"):
        parse("w=101", max_dimension=100)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_random_query_strings_raise_nothing_but_bad_request(query: str) -> None:
    with contextlib.suppress(BadRequest):
        parse(query)


NAMES = st.sampled_from(
    ["w", "h", "dpr", "fit", "enlarge", "g", "fx", "fy", "fm", "q", "bg", "v", "p", "x"]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(NAMES, st.text(max_size=12)), max_size=8))
def test_random_known_params_raise_nothing_but_bad_request(pairs: list[tuple[str, str]]) -> None:
    query = "&".join(f"{name}={value}" for name, value in pairs)
    try:
        t = parse(query)
    except BadRequest:
        return
    if t is not None:
        assert t.width is None or 1 <= t.width <= 4096
        assert t.height is None or 1 <= t.height <= 4096
