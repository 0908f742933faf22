"""`<picture>` markup (SPEC §13): AVIF and WebP sources with `srcset`s, then an `<img>` that
every browser shows (JPEG stays JPEG, a PNG stays PNG, a GIF keeps its animation; anything
else is PNG when it has alpha, else JPEG), lazy, with `width` and `height` so the page
reserves the space before any byte arrives (no layout shift).

Built from the URL alone, never from the store: a page of a hundred thumbnails costs no I/O.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from html import escape

from imgproxy.params import AUTO, Fit
from imgproxy.settings import Settings
from imgproxy.urls import srcset, url_for

MODERN = (("avif", "image/avif"), ("webp", "image/webp"))
BOXED = {Fit.COVER.value, Fit.FILL.value, Fit.PAD.value}  # the output has the box's shape
# Names of formats every browser shows: the `<img>` keeps the source's own format.
EVERY_BROWSER = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".gif"})


def picture(
    store: str,
    path: str,
    *,
    widths: Iterable[int | str] | str,
    settings: Settings,
    mount: str = "",
    sizes: str = "100vw",
    alt: str | None = "",
    width: int | None = None,
    height: int | None = None,
    **params: str | int | float,
) -> str:
    """`widths`: the candidate widths (a list, or "320,640" as template tags pass them).
    `width`/`height`: the source's own size, when the app knows it (a model's fields): the
    `<img>` then gets the rendition's dimensions, and no candidate asks for more pixels
    than the source has (the server never enlarges unless `enlarge=1`). A width or height of
    0 or None means unknown. No candidate passes `limits.max_output_dimension` on either
    side (the server would answer it with a 400), the shape kept."""
    width, height = (width or None), (height or None)
    params = {name: value for name, value in params.items() if name != "fm"}
    box_height = params.pop("h", None)
    limit = settings.limits.max_output_dimension
    source_width = width if not _enlarges(params) else None
    candidates = _candidates(widths, min(source_width or limit, limit), box_height, limit)
    if box_height is not None:
        params["h"] = box_height  # srcset scales it with each width from the first
    shape = _aspect(params, candidates[0], box_height, width, height)
    sources = _sources(store, path, candidates, settings, mount=mount, sizes=sizes, params=params)
    legacy = {**params, **_fallback_format(path)}
    fallback = srcset(store, path, candidates, settings=settings, mount=mount, **legacy)
    sized = _sized(legacy, box_height, candidates)
    src = url_for(store, path, settings=settings, mount=mount, w=candidates[-1], **sized)
    img = _img(src, fallback, sizes=sizes, alt=alt, largest=candidates[-1], shape=shape)
    return "".join(["<picture>", *sources, img, "</picture>"])


def _candidates(
    widths: Iterable[int | str] | str, cap: int, box_height: str | int | float | None, limit: int
) -> list[int]:
    """The widths, none above `cap`; with a box height, fewer when the widest would scale the
    height past `limit` (srcset scales h with each width from the first)."""
    candidates = _widths(widths, cap)
    first = candidates[0]
    if box_height is not None and float(box_height) * candidates[-1] / first > limit:
        widest = max(1, int(limit * first / float(box_height)))
        return sorted({min(w, widest) for w in candidates})
    return candidates


def _sources(
    store: str,
    path: str,
    candidates: list[int],
    settings: Settings,
    *,
    mount: str,
    sizes: str,
    params: dict[str, str | int | float],
) -> list[str]:
    """A `<source>` per modern format, AVIF first: the browser takes the first it shows."""
    sources = []
    for fm, media_type in MODERN:
        urls = srcset(store, path, candidates, settings=settings, mount=mount, fm=fm, **params)
        sources.append(
            f'<source type="{media_type}" srcset="{escape(urls)}" sizes="{escape(sizes)}">'
        )
    return sources


def _sized(
    legacy: dict[str, str | int | float],
    box_height: str | int | float | None,
    candidates: list[int],
) -> dict[str, str | int | float]:
    """The `<img>`'s own `src` asks for the widest candidate: h scaled as srcset scales it."""
    sized = dict(legacy)
    if box_height is not None:
        sized["h"] = max(1, round(float(box_height) * candidates[-1] / candidates[0]))
    return sized


def _img(
    src: str, fallback: str, *, sizes: str, alt: str | None, largest: int, shape: float | None
) -> str:
    """The `<img>`, lazy, and sized when the shape is known (the page reserves the space)."""
    attributes = [
        f'src="{escape(src)}"',
        f'srcset="{escape(fallback)}"',
        f'sizes="{escape(sizes)}"',
        f'alt="{escape(alt or "")}"',
        'loading="lazy"',
        'decoding="async"',
    ]
    if shape is not None:
        attributes.append(f'width="{largest}" height="{max(1, round(largest / shape))}"')
    return f"<img {' '.join(attributes)}>"


def _fallback_format(path: str) -> dict[str, str]:
    """`fm=auto` for a source a browser may not show (WebP, AVIF, HEIC, TIFF, or a name that
    does not tell): only a client that shows neither AVIF nor WebP reaches the `<img>`, and
    the server answers it PNG when the source has alpha, else JPEG. The server decides
    because it knows the alpha: picture() never reads a store."""
    return {} if posixpath.splitext(path)[1].lower() in EVERY_BROWSER else {"fm": AUTO}


def _widths(widths: Iterable[int | str] | str, cap: int) -> list[int]:
    """Sorted, without duplicates, none above `cap` (the source's width, or the limit)."""
    items = widths.split(",") if isinstance(widths, str) else widths
    found = {int(str(item).strip()) for item in items if str(item).strip()}
    if not found or min(found) < 1:
        raise ValueError("widths: give at least one width, each >= 1")
    return sorted({min(w, cap) for w in found})


def _enlarges(params: dict[str, str | int | float]) -> bool:
    return str(params.get("enlarge", "0")) == "1"


def _aspect(
    params: dict[str, str | int | float],
    first: int,
    box_height: str | int | float | None,
    width: int | None,
    height: int | None,
) -> float | None:
    """The renditions' width / height: the box's for cover/fill/pad, else the source's."""
    if box_height is not None and str(params.get("fit", "contain")) in BOXED:
        return first / float(box_height)
    if width and height:
        return width / height
    return None
