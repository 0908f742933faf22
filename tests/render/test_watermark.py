"""The `wm=` mark on the output (SPEC §15.1): in its corner past the margin, blended by its
opacity, as wide as its scale says, over RGB and RGBA outputs and every animation frame,
after pad; and counted in the render's working memory."""

from __future__ import annotations

import dataclasses

import pytest
from PIL import Image

from imgproxy.facts import SourceInfo
from imgproxy.formats import OutputFormat
from imgproxy.job import MarkJob, RenderJob
from imgproxy.params import Transform
from imgproxy.render import render, working_bytes
from imgproxy.render.budget import Budget
from imgproxy.render.watermark import ScaledMarks
from tests.support import images

BLUE, RED = (0, 0, 255), (255, 0, 0)
MARK = images.encode(Image.new("RGBA", (20, 10), (*RED, 255)), "PNG")
PLAIN = Transform()
BLUE_PNG = images.encode(Image.new("RGB", (200, 100), BLUE), "PNG")
SE = MarkJob("se", 1.0, 0.0, 5, None, 50_000_000, (20, 10), len(MARK))


def _render(
    mark: MarkJob,
    t: Transform = PLAIN,
    output: OutputFormat = OutputFormat.PNG,
    source: bytes = BLUE_PNG,
    animate: bool = False,
) -> Image.Image:
    job = RenderJob(t, output, None, None, animate, 50_000_000, mark=mark)
    return images.decode(render(source, job, MARK).body)


def test_the_mark_sits_in_its_corner_inside_the_margin() -> None:
    out = _render(SE)
    assert out.size == (200, 100)
    assert images.rgb(out, (200 - 5 - 20, 100 - 5 - 10)) == RED  # its top-left pixel
    assert images.rgb(out, (200 - 6, 100 - 6)) == RED  # its bottom-right pixel
    for outside in ((200 - 5, 100 - 6), (200 - 6, 100 - 5), (200 - 26, 90), (185, 84)):
        assert images.rgb(out, outside) == BLUE, outside
    nw = _render(dataclasses.replace(SE, position="nw"))
    assert images.rgb(nw, (5, 5)) == RED and images.rgb(nw, (4, 5)) == BLUE
    centre = _render(dataclasses.replace(SE, position="center"))
    assert images.rgb(centre, (90, 45)) == RED and images.rgb(centre, (89, 45)) == BLUE


def test_opacity_blends_the_mark_over_the_picture() -> None:
    half = _render(dataclasses.replace(SE, opacity=0.5))
    r, g, b = images.rgb(half, (190, 90))
    assert abs(r - 128) <= 1 and g == 0 and abs(b - 127) <= 1
    assert images.rgb(_render(dataclasses.replace(SE, opacity=0.0)), (190, 90)) == BLUE


def test_scale_sets_the_mark_width_from_the_output_width() -> None:
    out = _render(dataclasses.replace(SE, scale=0.5, margin=0))  # 100 of 200 px: 100x50
    row = [images.rgb(out, (x, 99)) for x in range(200)]
    assert row.index(RED) == 100 and row.count(RED) == 100
    column = [images.rgb(out, (199, y)) for y in range(100)]
    assert column.count(RED) == 50


def test_a_mark_larger_than_the_output_shrinks_to_fit_its_margins() -> None:
    # 40x20 less 2 px margins: 36x16 of room, so the 2:1 mark is 32x16, not 40x20
    out = _render(dataclasses.replace(SE, scale=1.0, margin=2), Transform(width=40))
    assert out.size == (40, 20)
    assert images.rgb(out, (6, 2)) == RED and images.rgb(out, (37, 17)) == RED
    assert images.rgb(out, (5, 2)) == BLUE and images.rgb(out, (38, 17)) == BLUE
    assert images.rgb(out, (6, 1)) == BLUE and images.rgb(out, (37, 18)) == BLUE
    no_room = _render(dataclasses.replace(SE, margin=10), Transform(width=40))
    assert RED not in [images.rgb(no_room, (x, y)) for x in range(40) for y in range(20)]


def test_the_mark_comes_after_pad_and_over_transparency() -> None:
    clear = images.encode(Image.new("RGBA", (200, 100), (0, 0, 0, 0)), "PNG")
    out = _render(dataclasses.replace(SE, opacity=0.5, margin=0), Transform(), source=clear)
    assert out.mode == "RGBA"
    r, g, b, a = out.getpixel((195, 95))  # type: ignore[misc]
    assert (r, g, b) == RED and abs(a - 128) <= 1  # "over" a transparent pixel
    assert out.getpixel((5, 5))[3] == 0  # type: ignore[index]
    padded = _render(SE, Transform(pad=(0, 30, 0, 0)))  # the mark is in the pad, not the picture
    assert padded.size == (230, 100)
    assert images.rgb(padded, (230 - 6, 100 - 6)) == RED


def test_a_jpeg_output_is_marked_and_flattened() -> None:
    clear = images.encode(Image.new("RGBA", (200, 100), (0, 0, 0, 0)), "PNG")
    out = _render(SE, Transform(), OutputFormat.JPEG, source=clear)
    r, g, b = images.rgb(out, (190, 90))
    assert r > 230 and g < 30 and b < 30
    assert min(images.rgb(out, (50, 50))) > 240  # the transparency flattened against white


def test_every_frame_of_an_animation_is_marked() -> None:
    colours = [(0, 255, 0), BLUE, (255, 255, 255)]
    frames = [Image.new("RGB", (200, 100), colour) for colour in colours]
    gif = images.encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=70)
    out = _render(SE, Transform(), OutputFormat.GIF, source=gif, animate=True)
    assert images.frames(out) == 3
    for index, colour in enumerate(colours):
        out.seek(index)
        assert images.rgb(out, (190, 90)) == RED
        assert images.rgb(out, (10, 10)) == colour


def test_a_mark_counts_in_the_working_memory() -> None:
    info = SourceInfo("PNG", "image/png", 200, 100, 1, False, 1000, 0)
    plain = RenderJob(Transform(width=100), OutputFormat.PNG, None, None, False, 50_000_000)
    big = dataclasses.replace(SE, size=(4000, 4000), bytes=1_000_000)
    marked = dataclasses.replace(plain, mark=big)
    assert working_bytes(info, marked) - working_bytes(info, plain) >= 4000 * 4000 * 4 + 1_000_000


@pytest.mark.parametrize("size", [(1, 1), (3000, 5)])
def test_any_mark_shape_renders(size: tuple[int, int]) -> None:
    mark = images.encode(Image.new("RGBA", size, (*RED, 255)), "PNG")
    job = RenderJob(
        Transform(width=50),
        OutputFormat.PNG,
        None,
        None,
        False,
        50_000_000,
        mark=dataclasses.replace(SE, size=size, bytes=len(mark)),
    )
    out = images.decode(render(images.png((200, 100)), job, mark).body)
    assert out.size == (50, 25)


def test_scaled_marks_are_kept_by_key_and_size_within_their_byte_bound() -> None:
    kept = ScaledMarks(100 * 50 * 4 * 3)  # three 100x50 marks' pixels
    mark = dataclasses.replace(SE, scale=0.5, margin=0, key=("brand", "logo.png", "v1"))
    first = kept.get(mark, MARK, (200, 100), Budget(10))
    assert first is not None and first.size == (100, 50)
    assert kept.get(mark, b"not read again", (200, 100), Budget(10)) is first
    other = dataclasses.replace(mark, key=("brand", "logo.png", "v2"))  # the mark replaced
    assert kept.get(other, MARK, (200, 100), Budget(10)) is not first
    for width in range(100, 400, 10):  # many output sizes: older copies leave
        kept.get(mark, MARK, (width, width // 2), Budget(10))
        assert kept.bytes <= kept.limit
    unkeyed = dataclasses.replace(mark, key=())
    assert kept.get(unkeyed, MARK, (200, 100), Budget(10)) is not kept.get(
        unkeyed, MARK, (200, 100), Budget(10)
    )
