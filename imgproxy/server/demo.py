"""The standalone server's demo page (`server.demo = true`): the listable stores' images as a
`<picture>` grid whose ThumbHash placeholders fade into the images, a playground that builds a
rendition URL from form fields, a focal-point picker, and bytes per format. Plain HTML, CSS and JS.

The page asks the server to build (and sign) each URL, so no key reaches the browser; that is
also why the demo must never be on in production: it signs URLs for every image it lists.
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from importlib.resources import files
from string import Template

from imgproxy import pipeline
from imgproxy.errors import BadRequest, ImageProxyError
from imgproxy.messages import ImageRequest
from imgproxy.params import OPERATION_KEYS
from imgproxy.responsive import picture
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
PLAYGROUND_PARAMS = (
    "w",
    "h",
    "dpr",
    "fit",
    "g",
    "fx",
    "fy",
    "fm",
    "q",
    "bg",
    "enlarge",
    *OPERATION_KEYS,
)
CROPS = (("1:1", 120, 120), ("16:9", 213, 120), ("9:16", 68, 120))  # the picker's shapes
GRAVITIES = ("center", "entropy", "smart", "focal", "n", "s", "e", "w", "ne", "nw", "se", "sw")


def _options(*values: str, selected: str = "") -> str:
    return "".join(
        f"<option{' selected' if value == selected else ''}>{value}</option>" for value in values
    )


# The playground's fields (SPEC §2.1): label, what the parameter means (the title), the
# control, and a hint shown under it. {max} is limits.max_output_dimension.
FIELDS = (
    (
        "w — width, CSS px",
        "the box width in CSS pixels; empty: from h, keeping the aspect",
        '<input name="w" type="number" min="1" max="{max}" value="400">',
        "1..{max}",
    ),
    (
        "h — height, CSS px",
        "the box height in CSS pixels; empty: from w, keeping the aspect",
        '<input name="h" type="number" min="1" max="{max}" value="300">',
        "1..{max}",
    ),
    (
        "dpr — device pixel ratio",
        "multiplies w and h, for high-density screens",
        '<input name="dpr" type="number" min="1" max="4" step="0.5">',
        "1..4, times w and h",
    ),
    (
        "fit — how the image meets the box",
        "contain: inside the box; cover: fills it, crops the rest; fill: stretched to it; "
        "pad: contain, then pad to the box with bg",
        f'<select name="fit">{_options("contain", "cover", "fill", "pad", selected="cover")}'
        "</select>",
        "contain · cover: crop · fill: stretch · pad",
    ),
    (
        "g — gravity, where cover crops",
        "which part of the image cover keeps; entropy: the busiest region; smart: the most "
        "salient (edges, saturation, skin); focal: the point stored with the image",
        f'<select name="g">{_options(*GRAVITIES)}</select>',
        "a compass point, entropy, smart, focal",
    ),
    (
        "fm — output format",
        "auto picks from the browser's Accept header: avif, webp, then jpeg or png",
        f'<select name="fm">{_options("auto", "jpeg", "png", "webp", "avif")}</select>',
        "auto: from Accept",
    ),
    (
        "q — quality",
        "encoder quality; empty: the format's default",
        '<input name="q" type="number" min="1" max="100">',
        "1..100; empty: default",
    ),
    (
        "bg — background colour",
        "for pad, and for flattening transparency into jpeg",
        '<input name="bg" placeholder="ffffff">',
        "hex rgb, rrggbb or rrggbbaa",
    ),
    (
        "enlarge — upscale",
        "allow the output to be larger than the source",
        '<select name="enlarge"><option value="">no</option><option value="1">yes</option>'
        "</select>",
        "grow past the source",
    ),
    # The operations (SPEC §15.1), in the order they apply.
    (
        "crop — region of the source",
        "x,y,w,h in source pixels, or four fractions written with a point (0.25,0,0.5,1.0)",
        '<input name="crop" placeholder="x,y,w,h">',
        "pixels, or fractions 0..1",
    ),
    (
        "trim — remove a uniform border",
        "the border's colour is the top-left pixel's, within this tolerance",
        '<input name="trim" type="number" min="0" max="255">',
        "tolerance 0..255",
    ),
    (
        "rot — rotate clockwise",
        "before fitting: w and h describe the rotated image",
        f'<select name="rot"><option value="">0</option>{_options("90", "180", "270")}</select>',
        "90 · 180 · 270 degrees",
    ),
    (
        "flip — mirror",
        "after rotating: h mirrors left and right, v top and bottom",
        f'<select name="flip"><option value="">no</option>{_options("h", "v", "hv")}</select>',
        "h · v · hv",
    ),
    (
        "blur — Gaussian blur",
        "sigma in output pixels",
        '<input name="blur" type="number" min="0.3" max="100" step="0.1">',
        "sigma 0.3..100",
    ),
    (
        "sharpen — unsharp mask",
        "sigma in output pixels",
        '<input name="sharpen" type="number" min="0.3" max="10" step="0.1">',
        "sigma 0.3..10",
    ),
    (
        "pixelate — block size",
        "blocks of this many output pixels, each one colour",
        '<input name="pixelate" type="number" min="2" max="256">',
        "2..256 px",
    ),
    (
        "pad — borders of bg",
        "added after fitting, counted in the output limits",
        '<input name="pad" placeholder="t,r,b,l">',
        "t,r,b,l or one, 0..1024 px",
    ),
)


def _fields(max_dimension: int, watermarks: Collection[str] = ()) -> str:
    fields: tuple[tuple[str, str, str, str], ...] = FIELDS
    if watermarks:  # only where [watermarks] are configured: wm takes nothing else
        names = _options(*(html.escape(name) for name in sorted(watermarks)))
        fields += (
            (
                "wm — watermark",
                "a [watermarks] entry drawn last, at its position, opacity, scale and margin",
                f'<select name="wm"><option value="">none</option>{names}</select>',
                "as configured",
            ),
        )
    return "\n".join(
        f'  <label title="{html.escape(title)}">{label}\n    '
        f"{control.format(max=max_dimension)}<small>{hint.format(max=max_dimension)}</small>"
        "</label>"
        for label, title, control, hint in fields
    )


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
        fields=_fields(settings.limits.max_output_dimension, settings.watermarks.keys()),
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
