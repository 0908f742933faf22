"""Every output's size is judged from the source's header facts against
`limits.max_output_dimension`, `limits.max_output_pixels` and its encoder's own limit: 400
naming the limit, before a byte of the source is read for rendering (SPEC §11.1)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from imgproxy import pipeline
from imgproxy.errors import BadRequest
from imgproxy.facts import SourceInfo
from imgproxy.formats import OutputFormat
from imgproxy.messages import ImageRequest
from imgproxy.params import build_transform
from imgproxy.policy import check_output
from imgproxy.services import Services
from imgproxy.settings import LimitsSettings
from tests.support import CountingStore, images, settings_for

DEFAULT = LimitsSettings()
WIDE = LimitsSettings(max_output_dimension=100_000, max_output_pixels=10**9)


def info(size: tuple[int, int], frames: int = 1) -> SourceInfo:
    return SourceInfo("PNG", "image/png", size[0], size[1], frames, False, 100, 0)


def judge(
    size: tuple[int, int],
    query: dict[str, str],
    output: OutputFormat = OutputFormat.PNG,
    limits: LimitsSettings = DEFAULT,
    frames: int = 1,
) -> None:
    t = build_transform(query, limits.max_output_dimension)
    check_output(info(size, frames), t, output, limits, animate=output.animates and frames > 1)


@pytest.mark.parametrize(
    ("size", "query", "output", "limits", "named"),
    [
        # enlarge with one side open: the other side follows the source's shape
        ((10, 1), {"h": "4096", "enlarge": "1"}, OutputFormat.PNG, DEFAULT, "dimension"),
        ((10, 1), {"h": "4096", "enlarge": "1"}, OutputFormat.WEBP, DEFAULT, "dimension"),
        ((1, 10), {"w": "1024", "dpr": "4", "enlarge": "1"}, OutputFormat.PNG, DEFAULT,
         "dimension"),
        # no resize at all: the source's own size is the output's
        ((5000, 10), {"fm": "png"}, OutputFormat.PNG, DEFAULT, "dimension"),
        ((4096, 4097), {"q": "50"}, OutputFormat.JPEG, DEFAULT, "dimension"),
        # sides within the limit, pixels not
        ((10, 1), {"h": "4096", "enlarge": "1"}, OutputFormat.PNG,
         LimitsSettings(max_output_dimension=65_536), "pixels"),
        ((3000, 3000), {"fit": "pad", "w": "3000", "h": "3000"}, OutputFormat.PNG,
         LimitsSettings(max_output_pixels=8_999_999), "pixels"),
        ((10, 10), {"w": "100", "h": "100", "fit": "pad"}, OutputFormat.PNG,
         LimitsSettings(max_output_pixels=9_999), "pixels"),  # the canvas counts, not the content
        # what the encoder cannot write, once the operator allows larger outputs
        ((16_384, 1), {}, OutputFormat.WEBP, WIDE, "webp is at most 16383"),
        ((100, 1), {"w": "16384", "enlarge": "1"}, OutputFormat.WEBP, WIDE, "webp is at most"),
        ((1, 65_536), {}, OutputFormat.GIF, WIDE, "gif is at most 65535"),
        ((65_501, 1), {}, OutputFormat.JPEG, WIDE, "jpeg is at most 65500"),
        ((65_537, 1), {}, OutputFormat.AVIF, WIDE, "avif is at most 65536"),
    ],
)  # fmt: skip
def test_too_large_an_output_is_a_400_naming_its_limit(
    size: tuple[int, int],
    query: dict[str, str],
    output: OutputFormat,
    limits: LimitsSettings,
    named: str,
) -> None:
    with pytest.raises(BadRequest, match=named):
        judge(size, query, output, limits)


@pytest.mark.parametrize(
    ("size", "query", "output", "limits"),
    [
        ((10, 1), {"h": "409", "enlarge": "1"}, OutputFormat.PNG, DEFAULT),  # 4090x409
        ((10, 1), {"h": "4096"}, OutputFormat.PNG, DEFAULT),  # enlarge=0: stays 10x1
        ((10, 1), {"h": "4096", "w": "4096", "enlarge": "1", "fit": "cover"}, OutputFormat.WEBP,
         DEFAULT),  # cropped to the box: 4096x4096, the pixel limit exactly
        ((10, 10), {"w": "4096", "h": "4096", "fit": "pad"}, OutputFormat.PNG, DEFAULT),
        ((100_000, 100), {"w": "100"}, OutputFormat.WEBP, DEFAULT),  # shrunk: 100x1
        ((4096, 4096), {}, OutputFormat.PNG, DEFAULT),
        ((16_383, 1), {}, OutputFormat.WEBP, WIDE),
        ((1, 65_535), {}, OutputFormat.GIF, WIDE),
        ((100_000, 1), {}, OutputFormat.PNG, WIDE),  # PNG has no such limit
        ((10, 1), {"h": "4096", "enlarge": "1"}, OutputFormat.THUMBHASH, DEFAULT),
    ],
)  # fmt: skip
def test_outputs_within_the_limits_pass(
    size: tuple[int, int], query: dict[str, str], output: OutputFormat, limits: LimitsSettings
) -> None:
    judge(size, query, output, limits)


def test_an_animation_counts_every_frame_it_keeps() -> None:
    """Each frame is kept until encoded: enlarging an animation must not take its frames past
    the pixels its source may have, however small each frame is."""
    query = {"w": "4096", "h": "4096", "fit": "fill", "enlarge": "1"}  # 16 777 216 each
    judge((10, 10), query, OutputFormat.GIF, frames=2)  # 33.6 M of 50 M
    with pytest.raises(BadRequest, match=r"3 frames of 4096x4096 pixels exceed limits\.max_source"):
        judge((10, 10), query, OutputFormat.GIF, frames=3)
    judge((10, 10), query, OutputFormat.PNG, frames=3)  # the first frame only


HOSTILE = [
    ("tiny.png", "h=4096&enlarge=1", "max_output_dimension"),
    ("tiny.png", "h=4096&enlarge=1&fm=webp", "max_output_dimension"),
    ("tiny.png", "h=2048&dpr=2&enlarge=1&fm=auto", "max_output_dimension"),
    ("tiny.png", "p=tall", "max_output_dimension"),
    ("anim.gif", "w=4096&h=4096&fit=fill&enlarge=1", "max_source_pixels"),
]


def test_refused_before_any_byte_is_read(media: Path) -> None:
    """32 requests at once, after the facts are known: not one read of the source."""
    (media / "tiny.png").write_bytes(images.png((10, 1)))
    (media / "anim.gif").write_bytes(images.gif(4, (10, 10)))
    store = CountingStore(media)
    extra: dict[str, Any] = {"presets": {"tall": "h=4000&enlarge=1"}}
    services = Services.build(settings_for(media, **extra), stores={"media": store})

    async def scenario() -> None:
        for name in ("tiny.png", "anim.gif"):
            request = ImageRequest("GET", f"/media/{name}", "fm=json")
            assert (await pipeline.serve(services, request)).status == 200
        # Each source's facts learned once, from a head that holds all of its bytes.
        assert (store.heads, store.reads) == (2, 0)
        requests = [
            ImageRequest("GET", f"/media/{name}", query, {"accept": "image/webp"})
            for _ in range(7)
            for name, query, _ in HOSTILE
        ][:32]
        answers = await asyncio.gather(*(pipeline.serve(services, r) for r in requests))
        for request, answer in zip(requests, answers, strict=True):
            assert answer.status == 400, (request.query, answer.body)
            named = next(n for f, q, n in HOSTILE if (f, q) == (request.path[7:], request.query))
            assert named.encode() in answer.body
        assert (store.heads, store.reads) == (2, 0)
        ordinary = await pipeline.serve(
            services, ImageRequest("GET", "/media/tiny.png", "h=400&enlarge=1")
        )
        assert ordinary.status == 200
        assert images.decode(ordinary.body).size == (4000, 400)
        await services.close()

    asyncio.run(scenario())


def test_an_exif_rotation_is_planned_upright(media: Path) -> None:
    """A 10x1 JPEG shown turned a quarter is 1x10: its height is the long side."""
    (media / "turned.jpg").write_bytes(images.jpeg_with_exif((10, 1), 6, gps=False))
    services = Services.build(settings_for(media))

    async def get(query: str) -> tuple[int, bytes]:
        answer = await pipeline.serve(services, ImageRequest("GET", "/media/turned.jpg", query))
        return answer.status, answer.body

    async def scenario() -> None:
        status, body = await get("w=4096&enlarge=1")
        assert status == 400 and b"4096x40960" in body, body
        status, body = await get("h=4096&enlarge=1")
        assert status == 200 and images.decode(body).size == (410, 4096)
        await services.close()

    asyncio.run(scenario())
