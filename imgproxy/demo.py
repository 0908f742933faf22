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
    signing = "signed with the server's key" if settings.security.keys else "unsigned (no keys)"
    return PAGE.substitute(
        cards="\n".join(cards), options="\n".join(options), signing=signing
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
    except (ValueError, TypeError):
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
  #result img { max-width: 100%; } pre { background: #f4f4f4; padding: .5rem; overflow: auto; }
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
<form id="playground">
  <label>image <select name="image">$options</select></label>
  <label>w <input name="w" type="number" min="1" max="4096" value="400"></label>
  <label>h <input name="h" type="number" min="1" max="4096" value="300"></label>
  <label>dpr <input name="dpr" type="number" min="1" max="4" step="0.5"></label>
  <label>fit <select name="fit"><option>contain</option><option selected>cover</option>
    <option>fill</option><option>pad</option></select></label>
  <label>g <select name="g"><option>center</option><option>entropy</option>
    <option>n</option><option>s</option><option>e</option><option>w</option></select></label>
  <label>fm <select name="fm"><option>auto</option><option>jpeg</option><option>png</option>
    <option>webp</option><option>avif</option></select></label>
  <label>q <input name="q" type="number" min="1" max="100"></label>
  <label>bg <input name="bg" placeholder="ffffff"></label>
  <label>&nbsp;<button type="submit" id="build">Show</button></label>
</form>
<p id="url"></p>
<div id="result"><img id="rendition" alt="rendition"><pre id="headers"></pre></div>
<script>
const form = document.getElementById("playground");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const fields = new URLSearchParams(new FormData(form));
  const built = await (await fetch("/_demo/url?" + fields)).json();
  const out = document.getElementById("url");
  if (built.error) { out.textContent = built.error; return; }
  out.innerHTML = "";
  const link = document.createElement("a");
  link.href = built.url; link.textContent = built.url; out.appendChild(link);
  const response = await fetch(built.url);
  const lines = [response.status + " " + response.statusText];
  response.headers.forEach((value, name) => lines.push(name + ": " + value));
  document.getElementById("headers").textContent = lines.join("\\n");
  document.getElementById("rendition").src = built.url;
});
</script>
</body>
</html>
""")
