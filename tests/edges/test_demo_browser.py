"""The demo page in headless Chromium (Debian's, driven by Playwright): every grid image
loads; the playground shows no image before the first Show, shows the server's error detail
for a bad parameter, and builds a URL that loads. A screenshot is kept as an artifact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import need_binary
from tests.support.processes import imgproxy_process

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = need_binary("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def test_demo_page_grid_and_playground(browser: Any) -> None:
    with imgproxy_process(ROOT / "config" / "imgproxy.toml") as base:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(base + "/")
        grid = "#grid img"
        count = page.locator(grid).count()
        assert count == len(
            [p for p in (ROOT / "examples/media").iterdir() if p.suffix in (".png", ".jpg")]
        )
        page.wait_for_function(
            f"Array.from(document.querySelectorAll('{grid}'))"
            ".every(i => i.complete && i.naturalWidth > 0)",
            timeout=30_000,
        )
        widths = page.eval_on_selector_all(grid, "images => images.map(i => i.naturalWidth)")
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
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
        page.close()
