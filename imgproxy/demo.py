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
from collections.abc import Mapping
from dataclasses import dataclass
from string import Template

from imgproxy import pipeline
from imgproxy.errors import BadRequest, ImageProxyError
from imgproxy.messages import ImageRequest
from imgproxy.responsive import picture
from imgproxy.services import Services
from imgproxy.settings import Settings
from imgproxy.stores import Listable
from imgproxy.urls import url_for

GRID_LIMIT = 60
GRID_WIDTHS = (240, 480)  # 1x and 2x of a grid cell
GRID_SIZES = "(max-width: 540px) 100vw, 260px"
FACTS_AT_ONCE = 4  # hashes made at once on a cold page, well inside the render queue
PLAYGROUND_PARAMS = ("w", "h", "dpr", "fit", "g", "fx", "fy", "fm", "q", "bg", "enlarge")
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
)


def _fields(max_dimension: int) -> str:
    return "\n".join(
        f'  <label title="{html.escape(title)}">{label}\n    '
        f"{control.format(max=max_dimension)}<small>{hint.format(max=max_dimension)}</small>"
        "</label>"
        for label, title, control, hint in FIELDS
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
        fields=_fields(settings.limits.max_output_dimension),
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


PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>imgproxy demo</title>
<script>document.documentElement.classList.add("fading");  // images fade in once loaded</script>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1rem; }
  h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 1rem;
          align-items: start; }
  figure { margin: 0; }
  .frame { position: relative; border-radius: 6px; overflow: hidden; background: #eee; }
  .frame img { position: relative; display: block; width: 100%; height: auto; }
  .placeholder { position: absolute; inset: 0; width: 100%; height: 100%; }
  .fading .frame img { opacity: 0; transition: opacity .8s; }
  .fading .frame img.loaded { opacity: 1; }
  #grid.held .frame img { opacity: 0; }  /* the placeholders alone */
  figcaption { font-size: .8rem; color: #555; overflow-wrap: anywhere; }
  form { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: .5rem; }
  label { display: flex; flex-direction: column; font-size: .85rem; }
  label.inline { flex-direction: row; gap: .4rem; align-items: center; }
  #result { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; margin-top: 1rem; }
  label small { color: #666; font-size: .75rem; }
  #result img { max-width: 100%; } pre { background: #f4f4f4; padding: .5rem; overflow: auto; }
  #rendition:not([src]) { display: none; }  /* no broken-image icon before the first Show */
  #error, #inspect-error { color: #a00; font-weight: 600; }
  #error:empty, #inspect-error:empty { display: none; }
  code { overflow-wrap: anywhere; }
  .focal { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
  #focal-frame { position: relative; cursor: crosshair; line-height: 0; max-width: 100%; }
  #focal-source { max-width: 100%; border-radius: 6px; }
  #marker { position: absolute; width: 18px; height: 18px; margin: -11px 0 0 -11px;
            border: 2px solid #fff; border-radius: 50%; box-shadow: 0 0 0 2px #e0245e;
            pointer-events: none; }
  #crops th { font-weight: normal; font-size: .85rem; text-align: left; padding-right: .5rem; }
  #crops td { vertical-align: top; padding: 0 .5rem .5rem 0; }
  #crops img { display: block; background: #eee; }
  #crops img:not([src]), #formats img:not([src]), #focal-source:not([src]) { visibility: hidden; }
  #formats { display: grid; grid-template-columns: repeat(3, 1fr); gap: 1rem; }
  #formats img { width: 100%; height: auto; background: #eee; border-radius: 6px; }
  #formats output { font-variant-numeric: tabular-nums; font-weight: 600; }
</style>
</head>
<body>
<h1>imgproxy demo</h1>
<p>Each thumbnail is a <code>&lt;picture&gt;</code>: AVIF and WebP sources and the source's own
format, 240 and 480 px wide (<code>srcset</code>, <code>sizes</code>), with the source's width
and height so the grid never shifts. Until it loads, its ThumbHash (<code>fm=thumbhash</code>,
inlined by the server: a few dozen bytes) is decoded and painted on a canvas, then the image
fades in. URLs are $signing.</p>
<label class="inline"><input type="checkbox" id="hold"> hold the images back, to see their
placeholders</label>
<div class="grid" id="grid">
$cards
</div>
<h2>Playground</h2>
<p>Pick an image and some parameters; the server builds the URL$signing_note. Each field
is one query parameter; an empty field leaves it out. Out-of-range values are sent as
typed, so you see the server's answer to them.</p>
<form id="playground" novalidate>
  <label title="one of the images in the grid above">image
    <select name="image">$options</select></label>
$fields
  <label>&nbsp;<button type="submit" id="build">Show</button></label>
</form>
<p id="url"></p>
<p id="error" role="alert"></p>
<div id="result"><img id="rendition" alt="rendition"><pre id="headers"></pre></div>
<h2>One image, closer</h2>
<label class="inline">image <select id="inspect">$options</select></label>
<p id="inspect-error" role="alert"></p>
<h3>Focal point</h3>
<p>Click the image to set the focal point: the first row crops around it
(<code>fit=cover&amp;g=focal&amp;fx=…&amp;fy=…</code>), next to the server's own choice
(<code>g=smart</code>: edges, saturation, skin tones) and the plain centre.</p>
<div class="focal">
  <div id="focal-frame"><img id="focal-source" alt="click to set the focal point">
    <span id="marker"></span></div>
  <table id="crops">
    <tr><th></th><th>1:1</th><th>16:9</th><th>9:16</th></tr>
    <tr><th>g=focal<br><code id="point">fx=0.5 fy=0.5</code></th>$focal_crops</tr>
    <tr><th>g=smart</th>$smart_crops</tr>
    <tr><th>g=center</th>$center_crops</tr>
  </table>
</div>
<h3>Bytes per format</h3>
<p>The same rendition (<code>w=480</code>) in each format, as the browser received it.</p>
<div id="formats">
  <figure data-fm="jpeg"><img alt="JPEG"><figcaption>JPEG: <output></output></figcaption></figure>
  <figure data-fm="webp"><img alt="WebP"><figcaption>WebP: <output></output></figcaption></figure>
  <figure data-fm="avif"><img alt="AVIF"><figcaption>AVIF: <output></output></figcaption></figure>
</div>
<script>
// ThumbHash -> RGBA pixels, the inverse of the encoder in imgproxy/render/placeholders.py.
// Header: 24 bits (L DC, P DC, Q DC, L scale, has-alpha), 16 bits (L terms on the short
// side, P scale, Q scale, landscape), an alpha byte when there is alpha, then 4-bit AC terms
// of L, P, Q (and A), each a triangle of low frequencies. L = (r+g+b)/3, P = (r+g)/2 - b,
// Q = r - g; the cosines are sampled at pixel centres.
function thumbhashPixels(text) {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const header24 = bytes[0] | (bytes[1] << 8) | (bytes[2] << 16);
  const header16 = bytes[3] | (bytes[4] << 8);
  const hasAlpha = (header24 >> 23) & 1;
  const landscape = header16 >> 15;
  const longSide = hasAlpha ? 5 : 7;
  const shortSide = header16 & 7;
  let nibble = 0;  // the next AC term, counted across the channels
  const acStart = hasAlpha ? 6 : 5;

  function channel(dc, scale, nx, ny) {
    const terms = [];
    for (let cy = 0; cy < ny; cy++) {
      for (let cx = cy ? 0 : 1; cx * ny < nx * (ny - cy); cx++) {
        const stored = (bytes[acStart + (nibble >> 1)] >> ((nibble & 1) * 4)) & 15;
        nibble++;
        terms.push([cx, cy, (stored / 15 - 0.5) * 2 * scale]);
      }
    }
    return { dc, terms };
  }

  const l = channel((header24 & 63) / 63, ((header24 >> 18) & 31) / 31,
    Math.max(3, landscape ? longSide : shortSide), Math.max(3, landscape ? shortSide : longSide));
  const p = channel(((header24 >> 6) & 63) / 31.5 - 1, ((header16 >> 3) & 63) / 63, 3, 3);
  const q = channel(((header24 >> 12) & 63) / 31.5 - 1, ((header16 >> 9) & 63) / 63, 3, 3);
  const a = hasAlpha ? channel((bytes[5] & 15) / 15, (bytes[5] >> 4) / 15, 5, 5)
                     : { dc: 1, terms: [] };
  const ratio = landscape ? longSide / shortSide : shortSide / longSide;  // width / height
  const width = Math.round(ratio > 1 ? 32 : 32 * ratio);
  const height = Math.round(ratio > 1 ? 32 / ratio : 32);

  // The encoder's terms are means of value x cosine; the inverse counts each non-zero
  // frequency twice per axis (the cosine's mean square is 1/2).
  function value(ch, x, y) {
    let sum = ch.dc;
    for (const [cx, cy, term] of ch.terms) {
      sum += term * (cx ? 2 : 1) * (cy ? 2 : 1)
        * Math.cos(Math.PI * cx * (x + 0.5) / width) * Math.cos(Math.PI * cy * (y + 0.5) / height);
    }
    return sum;
  }

  const rgba = new Uint8ClampedArray(width * height * 4);  // clamps to 0..255
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++, i += 4) {
      const lum = value(l, x, y), pv = value(p, x, y), qv = value(q, x, y);
      const b = lum - 2 / 3 * pv;
      const r = (3 * lum - b + qv) / 2;
      rgba[i] = 255 * r;
      rgba[i + 1] = 255 * (r - qv);
      rgba[i + 2] = 255 * b;
      rgba[i + 3] = 255 * value(a, x, y);
    }
  }
  return new ImageData(rgba, width, height);
}

const grid = document.getElementById("grid");
for (const canvas of grid.querySelectorAll("canvas[data-thumbhash]")) {
  const pixels = thumbhashPixels(canvas.dataset.thumbhash);
  canvas.width = pixels.width; canvas.height = pixels.height;
  canvas.getContext("2d").putImageData(pixels, 0, 0);  // the browser smooths it when scaled up
}
for (const image of grid.querySelectorAll("img")) {
  const fadeIn = () => image.classList.add("loaded");
  if (image.complete && image.naturalWidth) fadeIn();
  else image.addEventListener("load", fadeIn);
}
const hold = document.getElementById("hold");
hold.addEventListener("change", () => grid.classList.toggle("held", hold.checked));

const form = document.getElementById("playground");
const out = document.getElementById("url");
const problem = document.getElementById("error");
const rendition = document.getElementById("rendition");
const headers = document.getElementById("headers");
let shown = null;  // the object URL on screen, revoked when replaced

function show(blob) {
  if (shown) URL.revokeObjectURL(shown);
  shown = blob ? URL.createObjectURL(blob) : null;
  if (shown) rendition.src = shown; else rendition.removeAttribute("src");
}

function fail(text) {
  problem.textContent = text;
  show(null);
}

async function explain(response) {
  // an error response is JSON {"error": code, "detail": why} (SPEC §5)
  try {
    const body = await response.json();
    return body.error + ": " + body.detail;
  } catch (_) {
    return response.status + " " + response.statusText;
  }
}

rendition.addEventListener("error", () => {
  if (rendition.getAttribute("src")) fail("the browser cannot display this rendition");
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  problem.textContent = ""; out.textContent = ""; headers.textContent = "";
  try {
    const fields = new URLSearchParams(new FormData(form));
    const built = await (await fetch("/_demo/url?" + fields)).json();
    if (built.error) { fail(built.error); return; }
    const link = document.createElement("a");
    link.href = built.url; link.textContent = built.url; out.appendChild(link);
    const response = await fetch(built.url);
    const lines = [response.status + " " + response.statusText];
    response.headers.forEach((value, name) => lines.push(name + ": " + value));
    headers.textContent = lines.join("\\n");
    if (!response.ok) { fail(await explain(response)); return; }
    show(await response.blob());
  } catch (error) {
    fail(String(error));
  }
});

const inspect = document.getElementById("inspect");
const inspectError = document.getElementById("inspect-error");
const source = document.getElementById("focal-source");
const marker = document.getElementById("marker");
let point = { fx: 0.5, fy: 0.5 };
let turn = 0;  // a newer click or pick wins over crops still on their way
let picked = 0;  // the same for the bytes per format

function complain(error) {
  inspectError.textContent = String(error.message || error);
}

async function signed(params) {
  // built and signed by the server, which does so only for the images it lists
  const query = new URLSearchParams({ image: inspect.value, ...params });
  const built = await (await fetch("/_demo/url?" + query)).json();
  if (built.error) throw new Error(built.error);
  return built.url;
}

async function showCrops(gravities) {
  const mine = ++turn;
  const crops = Array.from(document.querySelectorAll("#crops img"))
    .filter((crop) => gravities.includes(crop.dataset.g));
  const urls = await Promise.all(crops.map((crop) => {
    const params = { w: crop.dataset.w, h: crop.dataset.h, fit: "cover", g: crop.dataset.g };
    return signed(crop.dataset.g === "focal" ? { ...params, ...point } : params);
  }));
  if (mine !== turn) return;
  crops.forEach((crop, i) => { crop.src = urls[i]; });
  marker.style.left = point.fx * 100 + "%"; marker.style.top = point.fy * 100 + "%";
  document.getElementById("point").textContent = "fx=" + point.fx + " fy=" + point.fy;
}

const objectUrls = [];  // the format images on screen, revoked when replaced

async function showBytes() {
  const mine = picked;
  const figures = Array.from(document.querySelectorAll("#formats figure"));
  const blobs = await Promise.all(figures.map(async (figure) => {
    const response = await fetch(await signed({ w: 480, fm: figure.dataset.fm }));
    if (!response.ok) throw new Error(await explain(response));
    return response.blob();
  }));
  if (mine !== picked) return;
  objectUrls.splice(0).forEach((url) => URL.revokeObjectURL(url));
  const jpeg = blobs[0].size;
  figures.forEach((figure, i) => {
    const url = URL.createObjectURL(blobs[i]);
    objectUrls.push(url);
    figure.querySelector("img").src = url;
    const output = figure.querySelector("output");
    output.dataset.bytes = blobs[i].size;
    output.textContent = blobs[i].size.toLocaleString("en") + " bytes ("
      + Math.round(100 * blobs[i].size / jpeg) + "% of JPEG)";
  });
}

async function pick() {
  picked++;
  inspectError.textContent = "";
  point = { fx: 0.5, fy: 0.5 };
  try {
    source.src = await signed({ w: 480 });
    await Promise.all([showCrops(["focal", "smart", "center"]), showBytes()]);
  } catch (error) {
    complain(error);
  }
}

source.addEventListener("click", (event) => {
  const share = (offset, size) => Math.min(1, Math.max(0, Math.round(100 * offset / size) / 100));
  point = {
    fx: share(event.offsetX, source.clientWidth),
    fy: share(event.offsetY, source.clientHeight),
  };
  showCrops(["focal"]).catch(complain);
});
inspect.addEventListener("change", pick);
pick();
</script>
</body>
</html>
""")
