"""The §15.1 operations as parameters: parsing, 400s naming the parameter, canonical forms,
the crop resolved against the source, their place in the output limits and the decode scale;
and every URL without them keeping its canonical form, cache key and ETag."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgproxy.errors import BadRequest
from imgproxy.facts import SourceInfo
from imgproxy.formats import OutputFormat
from imgproxy.geometry import decode_size, output_size, plan_transform, resolve_crop, unturned
from imgproxy.params import Flip, Transform, parse_query
from imgproxy.policy import check_output
from imgproxy.query_string import split_query
from imgproxy.settings import LimitsSettings
from imgproxy.stores import StoredFile
from imgproxy.variant import build_variant

PRESETS = {"thumb": "w=200&h=200&fit=cover"}


def parse(query: str) -> Transform:
    t = parse_query(split_query(query), presets=PRESETS, max_dimension=4096).transform
    assert t is not None
    return t


def test_every_operation_parses() -> None:
    t = parse("crop=10,20,300,200&trim=12&rot=90&flip=hv&blur=2.5&sharpen=1&pixelate=8&pad=1,2,3,4")
    assert (t.crop, t.crop_fractions, t.trim, t.rotate, t.flip) == (
        (10, 20, 300, 200),
        None,
        12,
        90,
        Flip.HV,
    )
    assert (t.blur, t.sharpen, t.pixelate, t.pad) == (2.5, 1.0, 8, (1, 2, 3, 4))
    assert parse("crop=0.1,.2,0.5,0.5").crop_fractions == (0.1, 0.2, 0.5, 0.5)
    assert parse("pad=7").pad == (7, 7, 7, 7)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("w=300&rot=0&pad=0", "w=300"),  # explicit defaults
        ("w=300&pad=0,0,0,0", "w=300"),
        ("w=300&crop=0,0,1.0,1.0", "w=300"),  # the whole source in fractions
        ("w=300&crop=0.0,0.0,1,1", "w=300"),
        ("w=300&crop=0.5,0.5,0.9,0.9", "w=300&crop=0.5,0.5,0.5,0.5"),  # clipped
        ("w=300&blur=2&sharpen=1.50", "sharpen=1.5&blur=2.0&w=300"),  # order and spelling
        ("w=300&pad=5", "w=300&pad=5,5,5,5"),
    ],
)
def test_equal_meanings_compare_equal(first: str, second: str) -> None:
    assert parse(first) == parse(second)
    assert parse(first).canonical() == parse(second).canonical()


def test_each_operation_makes_a_different_rendition() -> None:
    queries = [
        "w=300",
        "w=300&crop=0,0,10,10",
        "w=300&crop=0,0,0.5,0.5",
        "w=300&trim=0",
        "w=300&trim=1",
        "w=300&rot=90",
        "w=300&rot=270",
        "w=300&flip=h",
        "w=300&flip=v",
        "w=300&blur=1",
        "w=300&sharpen=1",
        "w=300&pixelate=2",
        "w=300&pad=1",
        "w=300&pad=1,0,0,0",
    ]
    assert len({parse(q).canonical() for q in queries}) == len(queries)


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("rot=45", "rot"),
        ("rot=-90", "rot"),
        ("rot=360", "rot"),
        ("flip=x", "flip"),
        ("flip=", "flip"),
        ("crop=1,2,3", "crop"),
        ("crop=1,2,3,4,5", "crop"),
        ("crop=-1,0,10,10", "crop"),
        ("crop=0,0,0,10", "crop"),  # empty
        ("crop=0,0,1.5,0.5", "crop"),  # a fraction above 1
        ("crop=0.5,0,0.5,0.0", "crop"),
        ("crop=1.0,0,0.5,0.5", "crop"),  # starts past the right edge
        ("crop=0,0,99999999999,5", "crop"),
        ("crop=a,b,c,d", "crop"),
        ("crop=1e3,0,1,1", "crop"),
        ("trim=256", "trim"),
        ("trim=-1", "trim"),
        ("trim=1.5", "trim"),
        ("blur=0.2", "blur"),
        ("blur=100.01", "blur"),
        ("blur=1e9", "blur"),
        ("blur=nan", "blur"),
        ("blur=inf", "blur"),
        ("blur=-5", "blur"),
        ("sharpen=11", "sharpen"),
        ("sharpen=0", "sharpen"),
        ("pixelate=1", "pixelate"),
        ("pixelate=257", "pixelate"),
        ("pixelate=99999999999999", "pixelate"),
        ("pad=1025", "pad"),
        ("pad=1,2", "pad"),
        ("pad=1,2,3,4,5", "pad"),
        ("pad=-1", "pad"),
        ("pad=1,2,3,x", "pad"),
    ],
)
def test_bad_values_are_400s_naming_the_parameter(query: str, name: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse(query)
    assert caught.value.detail.startswith(f"{name}:")


OPERATIONS = st.sampled_from(["crop", "trim", "rot", "flip", "blur", "sharpen", "pixelate", "pad"])
VALUES = st.one_of(st.text(alphabet="0123456789.,-e", max_size=24), st.text(max_size=12))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(OPERATIONS, VALUES), max_size=6))
def test_random_operation_values_raise_nothing_but_bad_request(
    pairs: list[tuple[str, str]],
) -> None:
    query = "&".join(f"{name}={value}" for name, value in pairs)
    with contextlib.suppress(BadRequest):
        t = parse("w=100&" + query if query else "w=100")
        with contextlib.suppress(BadRequest):
            t = resolve_crop(t, (640, 480))
        width, height = output_size(plan_transform((640, 480), t), t)
        assert 1 <= width <= 100 + 2048 and 1 <= height <= 480 + 2048


@pytest.mark.parametrize(
    ("query", "source", "crop"),
    [
        ("crop=0.25,0.5,0.5,0.5", (800, 600), (200, 300, 400, 300)),
        ("crop=100,50,10000,10000", (800, 600), (100, 50, 700, 550)),  # clipped
        ("crop=0,0,800,600", (800, 600), None),  # the whole source: no crop
        ("crop=0,0,900,700", (800, 600), None),
        ("crop=0,0,1.0,1.0", (800, 600), None),
        ("crop=0.999,0.999,0.001,0.001", (800, 600), (799, 599, 1, 1)),  # never empty
    ],
)
def test_a_crop_is_resolved_to_source_pixels(
    query: str, source: tuple[int, int], crop: tuple[int, int, int, int] | None
) -> None:
    t = resolve_crop(parse(query), source)
    assert (t.crop, t.crop_fractions) == (crop, None)


def test_a_crop_outside_the_source_is_400() -> None:
    with pytest.raises(BadRequest, match=r"^crop: .*outside the 800x600 source"):
        resolve_crop(parse("crop=800,0,10,10"), (800, 600))


def test_fractions_and_pixels_of_one_region_share_a_rendition_once_resolved() -> None:
    pixels = resolve_crop(parse("w=100&crop=200,150,400,300"), (800, 600))
    fractions = resolve_crop(parse("w=100&crop=0.25,0.25,0.5,0.5"), (800, 600))
    assert pixels == fractions and pixels.canonical() == fractions.canonical()


@pytest.mark.parametrize(
    ("query", "size"),
    [
        ("w=400&rot=90", (400, 600)),  # w/h describe the rotated result
        ("h=300&rot=270", (200, 300)),
        ("w=200&crop=0,0,400,100", (200, 50)),
        ("w=200&crop=0,0,400,100&rot=90", (100, 400)),  # enlarge=0: no side past the region
        ("w=50&crop=0,0,400,100&rot=90", (50, 200)),
        ("w=300&h=300&fit=pad&pad=10,20,30,40", (360, 340)),
        ("pad=1024", (600 + 2048, 400 + 2048)),
    ],
)
def test_the_output_size_plans_crop_rotation_and_pad(query: str, size: tuple[int, int]) -> None:
    t = parse(query)
    assert output_size(plan_transform((600, 400), t), t) == size


def test_a_crop_asks_a_larger_decode_for_the_same_output() -> None:
    """Shrink-on-load must give the region kept the output's pixels: a quarter of the
    source at 300 px wide needs the source decoded at 1200 px, not 300."""
    source = (4000, 3000)
    whole = decode_size(source, plan_transform(source, parse("w=300")))
    cropped = decode_size(source, plan_transform(source, parse("w=300&crop=0,0,1000,750")))
    assert whole == (300, 225) and cropped == (1200, 900)
    # Turned, the 1000x2000 region is 2000 wide: 300/2000 of it on both axes.
    turned = parse("w=300&crop=0,0,1000,2000&rot=90")
    assert decode_size(source, unturned(plan_transform(source, turned), 90)) == (600, 450)


def _info(size: tuple[int, int]) -> SourceInfo:
    return SourceInfo("PNG", "image/png", size[0], size[1], 1, False, 100, 0)


@pytest.mark.parametrize(
    ("size", "query", "pad", "limits", "named"),
    [
        ((4096, 3000), "w=4096", "1", LimitsSettings(), "max_output_dimension"),
        ((4096, 3000), "w=4000&h=4000&fit=pad", "0,0,200,0", LimitsSettings(), "dimension"),
        (
            (4096, 3000),
            "w=3900&h=3900&fit=pad",
            "51",
            LimitsSettings(max_output_pixels=16_000_000),
            "max_output_pixels",
        ),
        (
            (16_000, 100),
            "fm=webp",
            "200,200,200,200",
            LimitsSettings(max_output_dimension=20_000),
            "webp is at most",
        ),
    ],
)
def test_pad_counts_in_the_output_limits(
    size: tuple[int, int], query: str, pad: str, limits: LimitsSettings, named: str
) -> None:
    t = parse(query)
    output = t.format if isinstance(t.format, OutputFormat) else OutputFormat.PNG
    check_output(_info(size), t, output, limits, animate=False)  # within, without the pad
    with pytest.raises(BadRequest, match=named):
        check_output(_info(size), parse(f"{query}&pad={pad}"), output, limits, animate=False)


# Computed with the code before §15.1 existed (commit fab3e67, through the same
# build_variant call as below): these URLs' canonical forms and ETags must never change.
PINNED = [
    (
        "w=300",
        "w=300&h=&fit=contain&enlarge=0&g=center&fxy=0.5,0.5&bg=ffffffff",
        "zIPujZxG9VBfMeaE_ztcB-2E",
    ),
    (
        "w=300&h=200&fit=cover",
        "w=300&h=200&fit=cover&enlarge=0&g=center&fxy=0.5,0.5&bg=ffffffff",
        "J9qFByOZw66GrAnzePw3ujA3",
    ),
    (
        "h=150&fm=webp&q=70",
        "w=&h=150&fit=contain&enlarge=0&g=center&fxy=0.5,0.5&bg=ffffffff",
        "p7MGKKCTgjukEVmH1IXZWLv_",
    ),
    (
        "w=640&h=480&fit=pad&bg=000",
        "w=640&h=480&fit=pad&enlarge=0&g=center&fxy=0.5,0.5&bg=000000ff",
        "-rbfR-FwGcGtEUUTmLG2JTxA",
    ),
    (
        "w=500&h=500&fit=cover&g=focal",
        "w=500&h=500&fit=cover&enlarge=0&g=focal&fxy=stored&bg=ffffffff",
        "4N-xW_Y5zvixDjKLQUljoILI",
    ),
    (
        "w=400&h=300&fit=cover&g=entropy&dpr=2",
        "w=800&h=600&fit=cover&enlarge=0&g=entropy&fxy=0.5,0.5&bg=ffffffff",
        "j1AhrcvCednmRXCHnU3Cpa01",
    ),
    (
        "w=100&h=100&fit=fill&enlarge=1",
        "w=100&h=100&fit=fill&enlarge=1&g=center&fxy=0.5,0.5&bg=ffffffff",
        "lXUZy8m-8JBN9RhiPRl1PCiQ",
    ),
    (
        "p=thumb",
        "w=200&h=200&fit=cover&enlarge=0&g=center&fxy=0.5,0.5&bg=ffffffff",
        "jh_AD84ACVv9HEezJaHqZpJr",
    ),
    (
        "fm=png",
        "w=&h=&fit=contain&enlarge=0&g=center&fxy=0.5,0.5&bg=ffffffff",
        "xI5PgV4S1GLtXlewFInyRUJe",
    ),
    (
        "w=300&h=300&fit=cover&g=smart",
        "w=300&h=300&fit=cover&enlarge=0&g=smart&fxy=stored&bg=ffffffff",
        "MWTACJYdvQu-RBaa4n-5dFPp",
    ),
    (
        "w=300&h=300&fit=cover&g=focal&fx=0.2&fy=0.9&fm=avif",
        "w=300&h=300&fit=cover&enlarge=0&g=focal&fxy=0.2,0.9&bg=ffffffff",
        "BQVsB0ce1x9py9Fd54D4yr2s",
    ),
]


def _variant_of(query: str) -> tuple[str, str]:
    info = SourceInfo("JPEG", "image/jpeg", 1200, 800, 1, False, 123456, 0)
    file = StoredFile("photos/cat.jpg", "v1", False, 123456, 1700000000.0, "cat.jpg", (0.3, 0.6))
    parsed = parse_query(split_query(query), presets=PRESETS, max_dimension=4096)
    t = parsed.transform
    assert t is not None
    output = t.format if isinstance(t.format, OutputFormat) else OutputFormat.JPEG
    variant = build_variant(
        store="media",
        file=file,
        info=info,
        query=parsed,
        output=output,
        limits=LimitsSettings(),
        decoders=None,
        caching="public, max-age=60",
    )
    assert variant.key is not None and variant.key.rendition == variant.etag.strip('"')
    return t.canonical(), variant.etag.strip('"')


@pytest.mark.parametrize(("query", "canonical", "etag"), PINNED)
def test_urls_without_operations_keep_their_canonical_form_and_etag(
    query: str, canonical: str, etag: str
) -> None:
    assert _variant_of(query) == (canonical, etag)
    # and spelling out the operations' defaults changes nothing
    assert _variant_of(query + "&rot=0&pad=0,0,0,0&crop=0,0,1.0,1.0") == (canonical, etag)
