"""`{% load imgproxy %}` then `{% imgproxy_url "photos" "cat.png" w=240 h=240 fit="cover" %}`
and `{% imgproxy_srcset "photos" "cat.png" "240,480,960" fm="auto" %}`: signed URLs under
`settings.IMGPROXY_MOUNT` (default "/media")."""

from __future__ import annotations

from django import template
from django.conf import settings

from imgproxy.contrib.django.conf import imgproxy_settings
from imgproxy.urls import srcset, url_for

register = template.Library()


def _mount() -> str:
    return str(getattr(settings, "IMGPROXY_MOUNT", "/media"))


@register.simple_tag
def imgproxy_url(store: str, path: str, **params: str | int | float) -> str:
    return url_for(store, path, settings=imgproxy_settings(), mount=_mount(), **params)


@register.simple_tag
def imgproxy_srcset(store: str, path: str, widths: str, **params: str | int | float) -> str:
    sizes = [int(w) for w in str(widths).split(",") if w.strip()]
    return srcset(store, path, sizes, settings=imgproxy_settings(), mount=_mount(), **params)
