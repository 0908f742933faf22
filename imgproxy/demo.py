"""The standalone server's demo page (`server.demo = true`): the listable stores' images as a
grid of responsive thumbnails, and a playground that builds a rendition URL from form
fields and shows the image with its response headers. Plain HTML, CSS and JS.

The playground asks the server to build (and sign) each URL, so no key reaches the browser;
that is also why the demo must never be on in production: it signs URLs for every image it
lists.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from string import Template

from imgproxy.errors import BadRequest, ImageProxyError
from imgproxy.services import Services
from imgproxy.stores import Listable
from imgproxy.urls import srcset, url_for

GRID_LIMIT = 60
PLAYGROUND_PARAMS = ("w", "h", "dpr", "fit", "g", "fm", "q", "bg", "enlarge")
GRAVITIES = ("center", "entropy", "n", "s", "e", "w", "ne", "nw", "se", "sw")  # focal: no fx/fy


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
        "which part of the image cover keeps; entropy keeps the busiest region",
        f'<select name="g">{_options(*GRAVITIES)}</select>',
        "a compass point, or entropy",
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


async def page(services: Services) -> bytes:
    settings = services.settings
    cards, options = [], []
    for store, path in await images(services):
        src = url_for(store, path, settings=settings, w=240, h=240, fit="cover", fm="auto")
        candidates = srcset(
            store, path, [240, 480], settings=settings, h=240, fit="cover", fm="auto"
        )
        label = html.escape(f"{store}/{path}")
        cards.append(
            f'<figure><img src="{html.escape(src)}" srcset="{html.escape(candidates)}" '
            f'sizes="240px" width="240" height="240" alt="{label}"><figcaption>{label}'
            "</figcaption></figure>"
        )
        value = html.escape(json.dumps([store, path]))
        options.append(f'<option value="{value}">{label}</option>')
    keys = settings.security.keys
    signing = "signed with the server's key" if keys else "unsigned (no keys)"
    signing_note = " and signs it with the server's key" if keys else ""
    return PAGE.substitute(
        cards="\n".join(cards),
        options="\n".join(options),
        signing=signing,
        signing_note=signing_note,
        fields=_fields(settings.limits.max_output_dimension),
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
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1rem; }
  h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 1rem; }
  figure { margin: 0; }
  figure img { width: 100%; height: auto; border-radius: 6px; background: #eee; }
  figcaption { font-size: .8rem; color: #555; overflow-wrap: anywhere; }
  form { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: .5rem; }
  label { display: flex; flex-direction: column; font-size: .85rem; }
  #result { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; margin-top: 1rem; }
  label small { color: #666; font-size: .75rem; }
  #result img { max-width: 100%; } pre { background: #f4f4f4; padding: .5rem; overflow: auto; }
  #rendition:not([src]) { display: none; }  /* no broken-image icon before the first Show */
  #error { color: #a00; font-weight: 600; } #error:empty { display: none; }
  code { overflow-wrap: anywhere; }
</style>
</head>
<body>
<h1>imgproxy demo</h1>
<p>Thumbnails below are renditions made on request (<code>w</code>, <code>h=240</code>,
<code>fit=cover</code>, <code>fm=auto</code>) with a <code>srcset</code> for 2x screens;
URLs are $signing.</p>
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
<script>
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
</script>
</body>
</html>
""")
