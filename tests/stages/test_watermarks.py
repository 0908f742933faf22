"""`wm=NAME` as a parameter (SPEC §15.1): a configured name or a 400 listing the known ones,
in the canonical form only when given, and the mark's version and settings in the ETag and
cache key of every marked rendition (and of no other)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from imgproxy.errors import BadRequest, ConfigError
from imgproxy.facts import SourceInfo
from imgproxy.formats import OutputFormat
from imgproxy.mounts import Mounted, mount_stores
from imgproxy.params import parse_query
from imgproxy.query_string import split_query
from imgproxy.services import Services, check, validate
from imgproxy.settings import LimitsSettings, WatermarkSettings
from imgproxy.source import Source
from imgproxy.stores import StoredFile
from imgproxy.stores.filesystem import FileSystemStore
from imgproxy.variant import build_variant
from imgproxy.watermarks import Mark
from tests.support import settings_for

MARKS = ("logo", "badge")
INFO = SourceInfo("JPEG", "image/jpeg", 1200, 800, 1, False, 123456, 0)
FILE = StoredFile("photos/cat.jpg", "v1", False, 123456, 1700000000.0, "cat.jpg", None)


def _parse(query: str, presets: dict[str, str] | None = None) -> str:
    parsed = parse_query(
        split_query(query), presets=presets or {}, max_dimension=4096, watermarks=MARKS
    )
    assert parsed.transform is not None
    return parsed.transform.canonical()


def test_wm_names_a_configured_watermark_in_the_canonical_form() -> None:
    assert _parse("w=100&wm=logo").endswith("&wm=logo")
    assert "wm=" not in _parse("w=100")
    assert _parse("w=100&wm=logo") != _parse("w=100&wm=badge")
    assert _parse("p=marked", {"marked": "w=100&wm=badge"}) == _parse("w=100&wm=badge")


@pytest.mark.parametrize("value", ["nope", "", "../logo", "logo%00", "x" * 65, "LOGO"])
def test_an_unknown_or_misspelt_watermark_is_400_naming_wm(value: str) -> None:
    with pytest.raises(BadRequest) as raised:
        _parse(f"w=100&wm={value}")
    assert raised.value.detail.startswith("wm:")
    if value and len(value) <= 64 and value.isalpha():
        assert "known: badge, logo" in raised.value.detail


def test_without_watermarks_configured_wm_says_so() -> None:
    with pytest.raises(BadRequest, match="none configured"):
        parse_query(split_query("wm=logo"), presets={}, max_dimension=4096)


def test_a_watermark_on_a_missing_store_or_a_preset_naming_none_is_refused(tmp_path: Path) -> None:
    marked = settings_for(tmp_path, watermarks={"logo": {"store": "brand", "path": "x.png"}})
    with pytest.raises(ConfigError, match=r"watermarks\.logo\.store"):
        Services.build(marked)
    with pytest.raises(ConfigError, match=r"watermarks\.logo\.store"):
        asyncio.run(validate(marked))  # `imgproxy check` and `serve`
    brand = FileSystemStore(tmp_path, approved=False)
    assert "brand" in Services.build(marked, stores={"brand": brand}).mounts  # a Python store
    with pytest.raises(ConfigError, match=r"presets\.bad: wm: unknown watermark"):
        check(settings_for(tmp_path, presets={"bad": "w=10&wm=logo"}))


def _etag(query: str, mark: Mark | None = None) -> str:
    parsed = parse_query(split_query(query), presets={}, max_dimension=4096, watermarks=MARKS)
    variant = build_variant(
        store="media",
        file=FILE,
        info=INFO,
        query=parsed,
        output=OutputFormat.JPEG,
        limits=LimitsSettings(),
        decoders=None,
        caching="public, max-age=60",
        mark=mark,
    )
    assert variant.key is not None and variant.key.rendition == variant.etag.strip('"')
    return variant.etag


@pytest.fixture
def brand(tmp_path: Path) -> Mounted:
    settings = settings_for(tmp_path, stores={"brand": {"kind": "fs", "root": str(tmp_path)}})
    return mount_stores(settings, {})["brand"]


def _mark(brand: Mounted, version: str, **changes: Any) -> Mark:
    wm = dataclasses.replace(WatermarkSettings("brand", "logo.png"), **changes)
    file = StoredFile("logo.png", version, False, 100, 1700000000.0, "logo.png", None)
    info = SourceInfo("PNG", "image/png", 20, 10, 1, True, 100, 0)
    return Mark("logo", wm, Source(brand, file, info))


def test_the_marks_version_and_settings_are_in_the_etag(brand: Mounted) -> None:
    plain = _etag("w=100")
    assert _etag("w=100", _mark(brand, "v1")) == plain  # resolved but not asked for: no change
    first = _etag("w=100&wm=logo", _mark(brand, "v1"))
    assert first != plain
    assert _etag("w=100&wm=logo", _mark(brand, "v1")) == first
    assert _etag("w=100&wm=logo", _mark(brand, "v2")) != first  # the mark's file replaced
    assert _etag("w=100&wm=logo", _mark(brand, "v1", opacity=0.5)) != first
    assert _etag("w=100&wm=logo", _mark(brand, "v1", position="nw")) != first
