"""The standalone server's demo page (`server.demo = true`): the listable stores' images as a
`<picture>` grid whose ThumbHash placeholders fade into the images, a playground that builds a
rendition URL from form fields (playground.py), a focal-point picker, and bytes per format.
Plain HTML, CSS and JS.

The page asks the server to build (and sign) each URL, so no key reaches the browser; that is
also why the demo must never be on in production: it signs URLs for every image it lists.
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from string import Template

from imgproxy import pipeline
from imgproxy.errors import BadRequest, ImageProxyError
from imgproxy.messages import ImageRequest
from imgproxy.responsive import picture
from imgproxy.server.playground import PLAYGROUND_PARAMS, fields
from imgproxy.services import Services
from imgproxy.settings import Settings
from imgproxy.stores import Listable
from imgproxy.urls import url_for

# The page itself is package data beside this module: a template of $names.
PAGE = Template(files(__package__).joinpath("demo.html").read_text(encoding="utf-8"))
GRID_LIMIT = 60
GRID_WIDTHS = (240, 480)  # 1x and 2x of a grid cell
GRID_SIZES = "(max-width: 540px) 100vw, 260px"
FACTS_AT_ONCE = 4  # hashes made at once on a cold page, well inside the render queue
CROPS = (("1:1", 120, 120), ("16:9", 213, 120), ("9:16", 68, 120))  # the picker's shapes


async def images(services: Services) -> list[tuple[str, str]]:
    """(store, path) of up to GRID_LIMIT images from the stores that can list their files."""
    found: list[tuple[str, str]] = []
    for name, mount in services.mounts.items():
        if not isinstance(mount.store, Listable):
            continue
        async for path in mount.store.paths():
            if path.lower().endswith((".jpg", ".jpeg", ".png", ".webp", ".gif", ".avif")):
                found.append((name, path))
            if len(found) >= GRID_LIMIT:
                return found
    return found


@dataclass(frozen=True, slots=True)
class Card:
    """One grid image and what the server says about it: its size (the `<img>`'s width and
    height, so the grid never shifts as images arrive) and its ThumbHash (painted until the
    image arrives). None where the server answers an error: the card shows without it."""

    store: str
    path: str
    width: int | None = None
    height: int | None = None
    thumbhash: str | None = None


async def _answer(services: Services, store: str, path: str, **params: str) -> bytes | None:
    """The server's own 200 body for a URL, through the same pipeline as a browser's request
    (signing, policy, limits, the cache tiers), so a warm page costs lookups only."""
    route, _, query = url_for(store, path, settings=services.settings, **params).partition("?")
    response = await pipeline.serve(services, ImageRequest("GET", route, query))
    return response.body if response.status == 200 else None


async def _card(services: Services, store: str, path: str) -> Card:
    facts = await _answer(services, store, path, fm="json")  # header facts: no decode
    if facts is None:
        return Card(store, path)
    size = json.loads(facts)
    hashed = await _answer(services, store, path, fm="thumbhash")
    thumbhash = hashed.decode("ascii") if hashed is not None else None
    return Card(store, path, size["width"], size["height"], thumbhash)


async def cards(services: Services) -> list[Card]:
    """Every listed image with its facts; a cold page makes FACTS_AT_ONCE hashes at a time."""
    gate = asyncio.Semaphore(FACTS_AT_ONCE)

    async def card(store: str, path: str) -> Card:
        async with gate:
            return await _card(services, store, path)

    return list(
        await asyncio.gather(*(card(store, path) for store, path in await images(services)))
    )


def _figure(card: Card, settings: Settings) -> str:
    label = f"{card.store}/{card.path}"
    image = picture(
        card.store,
        card.path,
        widths=GRID_WIDTHS,
        settings=settings,
        sizes=GRID_SIZES,
        alt=label,
        width=card.width,
        height=card.height,
    )
    placeholder = (
        f'<canvas class="placeholder" data-thumbhash="{html.escape(card.thumbhash)}"></canvas>'
        if card.thumbhash
        else ""
    )
    size = f" · {card.width}&times;{card.height}" if card.width and card.height else ""
    return (
        f'<figure><div class="frame">{placeholder}{image}</div>'
        f"<figcaption>{html.escape(label)}{size}</figcaption></figure>"
    )


def _crops(gravity: str) -> str:
    """One row of the focal picker: empty images the page fills with signed URLs."""
    return "".join(
        f'<td><img data-g="{gravity}" data-w="{w}" data-h="{h}" width="{w}" height="{h}" '
        f'alt="g={gravity} {shape}"></td>'
        for shape, w, h in CROPS
    )


async def page(services: Services) -> bytes:
    """Built on each visit from the server's own answers: a cold page hashes each image once,
    later visits find the facts and hashes in the cache tiers."""
    settings = services.settings
    found = await cards(services)
    options = [
        f'<option value="{html.escape(json.dumps([c.store, c.path]))}">'
        f"{html.escape(f'{c.store}/{c.path}')}</option>"
        for c in found
    ]
    keys = settings.security.keys
    signing = "signed with the server's key" if keys else "unsigned (no keys)"
    signing_note = " and signs it with the server's key" if keys else ""
    return PAGE.substitute(
        cards="\n".join(_figure(card, settings) for card in found),
        options="\n".join(options),
        signing=signing,
        signing_note=signing_note,
        fields=fields(settings.limits.max_output_dimension, settings.watermarks.keys()),
        focal_crops=_crops("focal"),
        smart_crops=_crops("smart"),
        center_crops=_crops("center"),
    ).encode()


async def playground_url(services: Services, query: Mapping[str, str]) -> bytes:
    """The rendition URL for the playground's fields, as JSON: {"url": ...} or {"error": ...}.
    Only for an image the page lists: the demo signs with the server's key, and must not
    sign a URL for any other file."""
    try:
        store, path = json.loads(query.get("image", "null") or "null")
        if (store, path) not in await images(services):
            raise BadRequest("image: pick one of the listed images")
        params = {k: v for k, v in query.items() if k in PLAYGROUND_PARAMS and v}
        url = url_for(store, path, settings=services.settings, **params)
    except (ValueError, TypeError, RecursionError):
        return json.dumps({"error": "image: pick one of the listed images"}).encode()
    except ImageProxyError as error:
        return json.dumps({"error": error.detail}).encode()
    return json.dumps({"url": url}).encode()
