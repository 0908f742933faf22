"""The demo page in headless Chromium (Debian's, driven by Playwright): every grid image
loads from an AVIF or WebP source over a ThumbHash placeholder of its colour; the playground
shows no image before the first Show, shows the server's error detail for a bad parameter, and
builds a URL that loads; the focal picker crops around the clicked point; the bytes per format
are shown. Screenshots are kept as artifacts: test-artifacts/demo.png, demo-placeholders.png."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import need_binary
from tests.support.processes import imgproxy_process

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
MEDIA = [p for p in (ROOT / "examples/media").iterdir() if p.suffix in (".png", ".jpg")]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


GRID = "#grid picture img"
LOADED = "Array.from(document.querySelectorAll('{}')).every(i => i.complete && i.naturalWidth > 0)"
# Per card: the placeholder canvas's least alpha, and its mean colour (alpha-weighted, 0..255)
# next to the image's, drawn at the canvas's size; and how far, per pixel, the placeholder is
# from that image and from its mirror images: it must be no nearer a mirror (a decoder that
# flips an axis would be).
PAINTED = """
cards => cards.map(card => {
  const canvas = card.querySelector("canvas"), image = card.querySelector("img");
  const w = canvas.width, h = canvas.height;
  const painted = canvas.getContext("2d").getImageData(0, 0, w, h).data;
  function drawn(sx, sy) {  // the image at the canvas's size; -1 mirrors that axis
    const scratch = document.createElement("canvas");
    scratch.width = w; scratch.height = h;
    const context = scratch.getContext("2d");
    context.setTransform(sx, 0, 0, sy, sx < 0 ? w : 0, sy < 0 ? h : 0);
    context.drawImage(image, 0, 0, w, h);
    return context.getImageData(0, 0, w, h).data;
  }
  function mean(pixels) {
    const sum = [0, 0, 0]; let weight = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      weight += pixels[i + 3];
      for (let c = 0; c < 3; c++) sum[c] += pixels[i + c] * pixels[i + 3];
    }
    return sum.map(s => s / weight);
  }
  function distance(pixels) {
    let sum = 0;
    for (let i = 0; i < pixels.length; i++) {
      if (i % 4 !== 3) sum += Math.abs(pixels[i] - painted[i]);
    }
    return sum / (w * h * 3);
  }
  const upright = drawn(1, 1);
  let least = 255;
  for (let i = 3; i < painted.length; i += 4) least = Math.min(least, painted[i]);
  const mirrored = Math.min(distance(drawn(-1, 1)), distance(drawn(1, -1)));
  return {name: image.alt, size: [w, h], least, placeholder: mean(painted), image: mean(upright),
          error: distance(upright), mirrored};
})
"""


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with imgproxy_process(ROOT / "config" / "imgproxy.toml") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = need_binary("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def test_demo_page_grid_and_playground(browser: Any, base: str) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(base + "/")
    assert page.locator(GRID).count() == len(MEDIA)
    page.wait_for_function(LOADED.format(GRID), timeout=30_000)
    widths = page.eval_on_selector_all(GRID, "images => images.map(i => i.naturalWidth)")
    assert all(w >= 240 for w in widths)  # the 1x or 2x candidate, never broken
    assert not page.is_visible("#rendition")  # no broken-image icon before the first Show
    assert not page.is_visible("#error")
    page.select_option("select[name=image]", label="media/coffee.png")
    page.fill("input[name=q]", "0")  # out of range: the server says why
    page.click("#build")
    page.wait_for_selector("#error", state="visible", timeout=30_000)
    error = page.text_content("#error") or ""
    assert error.startswith("bad_request: q: must be an integer 1..100"), error
    assert not page.is_visible("#rendition")
    assert (page.text_content("#headers") or "").startswith("400")
    page.fill("input[name=q]", "")
    page.fill("input[name=w]", "99999")
    page.click("#build")
    page.wait_for_function(
        "document.getElementById('error').textContent.includes('w: must be')",
        timeout=30_000,
    )
    assert "1..4096" in (page.text_content("#error") or "")
    assert not page.is_visible("#rendition")
    page.fill("input[name=w]", "320")
    page.fill("input[name=h]", "200")
    page.select_option("select[name=fm]", "webp")
    page.click("#build")
    page.wait_for_function(
        "document.getElementById('rendition').complete"
        " && document.getElementById('rendition').naturalWidth > 0",
        timeout=30_000,
    )
    size = page.eval_on_selector("#rendition", "i => [i.naturalWidth, i.naturalHeight]")
    assert size == [320, 200]
    assert page.is_visible("#rendition") and not page.is_visible("#error")
    headers = page.text_content("#headers") or ""
    assert headers.startswith("200")
    assert "content-type: image/webp" in headers
    assert "etag:" in headers
    assert "/media/coffee.png?" in (page.text_content("#url") or "")
    title = page.get_attribute("label:has(select[name=fit])", "title") or ""
    assert "cover" in title and "crop" in title  # each field says what it means
    assert "width, CSS px" in (page.text_content("label:has(input[name=w])") or "")
    page.close()


def test_the_grid_is_pictures_over_their_placeholders(browser: Any, base: str) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(base + "/")
    page.wait_for_function(LOADED.format(GRID), timeout=30_000)
    sources = page.eval_on_selector_all(GRID, "images => images.map(i => i.currentSrc)")
    assert len(sources) == len(MEDIA)
    assert all("fm=avif" in src or "fm=webp" in src for src in sources), sources
    sizes = page.eval_on_selector_all(GRID, "images => images.map(i => [i.width, i.height])")
    assert all(w > 0 and h > 0 for w, h in sizes)  # width/height reserved the space
    cards = page.eval_on_selector_all("#grid figure", PAINTED)
    assert len(cards) == len(MEDIA)
    for card in cards:
        assert card["least"] == 255, card  # the sources are opaque: so is every placeholder
        assert max(card["size"]) == 32, card
        difference = max(
            abs(a - b) for a, b in zip(card["placeholder"], card["image"], strict=True)
        )
        assert difference < 12, card  # the hash's own error, plus the browser's decode
        assert card["error"] <= card["mirrored"], card
    page.wait_for_function(f"document.querySelectorAll('#grid img.loaded').length == {len(MEDIA)}")
    page.check("#hold")  # the images step aside: only the placeholders are shown
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#grid img'))"
        ".every(i => getComputedStyle(i).opacity === '0')"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#grid").screenshot(path=str(ARTIFACTS / "demo-placeholders.png"))
    page.uncheck("#hold")
    page.close()


def test_the_focal_picker_and_the_bytes_per_format(browser: Any, base: str) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(base + "/")
    page.select_option("#inspect", label="media/coffee.png")
    crops = "#crops img"
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#crops img'))"
        ".every(i => i.src.includes('/media/coffee.png?') && i.complete && i.naturalWidth)",
        timeout=30_000,
    )
    page.wait_for_function(
        "(i => i.src.includes('/media/coffee.png?') && i.complete && i.naturalWidth)"
        "(document.getElementById('focal-source'))",
        timeout=30_000,
    )
    box = page.locator("#focal-source").bounding_box()
    page.click("#focal-source", position={"x": box["width"] * 0.25, "y": box["height"] * 0.75})
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#crops img[data-g=focal]'))"
        ".every(i => i.src.includes('fx=0.25') && i.src.includes('fy=0.75')"
        " && i.complete && i.naturalWidth)",
        timeout=30_000,
    )
    found = page.eval_on_selector_all(
        crops,
        "images => images.map(i => [i.dataset.g, i.src, i.naturalWidth, i.naturalHeight,"
        " +i.dataset.w, +i.dataset.h])",
    )
    assert len(found) == 9
    for gravity, src, width, height, box_width, box_height in found:
        assert f"g={gravity}" in src and "fit=cover" in src
        assert ("fx=" in src) == (gravity == "focal")
        assert (width, height) == (box_width, box_height)  # a cover crop fills its box
    assert page.text_content("#point") == "fx=0.25 fy=0.75"
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#formats output')).every(o => o.dataset.bytes)",
        timeout=30_000,
    )
    sizes = page.eval_on_selector_all(
        "#formats figure",
        "figures => figures.map(f => [f.dataset.fm, +f.querySelector('output').dataset.bytes,"
        " f.querySelector('img').naturalWidth])",
    )
    assert [fm for fm, _, _ in sizes] == ["jpeg", "webp", "avif"]
    assert all(size > 0 and width == 480 for _, size, width in sizes), sizes
    assert not page.is_visible("#inspect-error")
    page.wait_for_function(LOADED.format(GRID), timeout=30_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
    page.close()
