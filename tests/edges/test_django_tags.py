"""The Django template tags: widths as a list from the context or as text alike, and
`{% imgproxy_picture %}` giving the same markup as `imgproxy.picture` (SPEC §13)."""

from __future__ import annotations

from typing import Any

import pytest

from imgproxy import picture


@pytest.fixture
def engine() -> Any:
    from django.conf import settings

    if not settings.configured:
        settings.configure(USE_TZ=True)
    from django.template import Engine

    return Engine(libraries={"imgproxy": "imgproxy.contrib.django.templatetags.imgproxy"})


def render(engine: Any, source: str, **context: Any) -> str:
    from django.template import Context

    return str(engine.from_string("{% load imgproxy %}" + source).render(Context(context)))


def test_widths_as_a_list_or_as_text(engine: Any) -> None:
    as_text = render(engine, '{% imgproxy_srcset "media" "a.jpg" "320,640" fm="webp" %}')
    as_list = render(
        engine, '{% imgproxy_srcset "media" "a.jpg" widths fm="webp" %}', widths=[320, 640]
    )
    assert as_text == as_list and as_text.count("w=") == 2 and as_text.endswith("640w")


def test_the_picture_tag_is_picture(engine: Any) -> None:
    from imgproxy.contrib.django.conf import imgproxy_settings

    markup = render(
        engine,
        '{% imgproxy_picture "media" "cat photo.jpg" widths=widths alt=title'
        ' width=800 height=600 fit="cover" h=200 %}',
        widths=[300, 600],
        title='A "cat" <b>',
    )
    expected = picture(
        "media",
        "cat photo.jpg",
        widths=[300, 600],
        settings=imgproxy_settings(),
        mount="/media",
        alt='A "cat" <b>',
        width=800,
        height=600,
        fit="cover",
        h=200,
    )
    assert markup == expected  # not escaped twice, and the same URLs
    assert "&lt;b&gt;" in markup and markup.startswith("<picture><source")


def test_the_picture_tag_gives_a_webp_source_an_img_every_browser_shows(engine: Any) -> None:
    """The `<img>` of a WebP is negotiated (PNG with alpha, else JPEG: test_picture.py)."""
    markup = render(engine, '{% imgproxy_picture "media" "cat.webp" widths="100,200" %}')
    img = markup[markup.index("<img") :]
    assert img.count("fm=auto") == 3 and "fm=auto" not in markup[: markup.index("<img")]
