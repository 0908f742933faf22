"""`{% load imgproxy %}` then `{% imgproxy_url "photos" "cat.png" w=240 h=240 fit="cover" %}`,
`{% imgproxy_srcset "photos" "cat.png" "240,480,960" fm="auto" %}` and
`{% imgproxy_picture "photos" "cat.png" widths=widths alt=title width=w height=h %}`: signed
URLs (and `<picture>` markup) under `settings.IMGPROXY_MOUNT` (default "/media"). Widths are
a list from the context or "240,480" as text, alike for every tag."""

from __future__ import annotations

from collections.abc import Iterable

from django import template
from django.conf import settings
from django.utils.safestring import SafeString, mark_safe

from imgproxy.contrib.django.conf import imgproxy_settings
from imgproxy.responsive import picture
from imgproxy.urls import srcset, url_for

register = template.Library()


def _mount() -> str:
    return str(getattr(settings, "IMGPROXY_MOUNT", "/media"))


def _widths(widths: Iterable[int | str] | str) -> list[int]:
    items = widths.split(",") if isinstance(widths, str) else widths
    return [int(str(w).strip()) for w in items if str(w).strip()]


@register.simple_tag
def imgproxy_url(store: str, path: str, **params: str | int | float) -> str:
    return url_for(store, path, settings=imgproxy_settings(), mount=_mount(), **params)


@register.simple_tag
def imgproxy_srcset(
    store: str, path: str, widths: Iterable[int | str] | str, **params: str | int | float
) -> str:
    sizes = _widths(widths)
    return srcset(store, path, sizes, settings=imgproxy_settings(), mount=_mount(), **params)


@register.simple_tag
def imgproxy_picture(
    store: str,
    path: str,
    *,
    widths: Iterable[int | str] | str,
    sizes: str = "100vw",
    alt: str = "",
    width: int | None = None,
    height: int | None = None,
    **params: str | int | float,
) -> SafeString:
    """Safe markup: picture() escapes every attribute value itself (`alt` included)."""
    markup = picture(
        store,
        path,
        widths=_widths(widths),
        settings=imgproxy_settings(),
        mount=_mount(),
        sizes=sizes,
        alt=alt,
        width=int(width) if width else None,
        height=int(height) if height else None,
        **params,
    )
    return mark_safe(markup)  # noqa: S308 - every value in it is escaped by picture()
