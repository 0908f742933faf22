"""`ImageProxy.warm` and `.purge` for one source, over every store kind's real backend: after a
warm the requests a browser sends render nothing; after a purge they render again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from imgproxy import ImageProxy, Settings, url_for
from imgproxy.errors import ConfigError
from imgproxy.maintenance import SOURCES_AHEAD, WarmSummary, warm
from imgproxy.messages import ImageRequest
from imgproxy.pipeline import serve
from imgproxy.stores import StoredFile
from imgproxy.stores.filesystem import FileSystemStore
from tests.stores.test_contract import backend  # noqa: F401 - the fixture over every kind
from tests.support import images
from tests.support.stores import Backend

PRESETS = {"small": "w=64&h=64&fit=cover", "auto": "w=32&fm=auto"}
ACCEPTS = ("image/avif,image/webp,*/*", "image/webp,*/*", "*/*")


def _proxy(tmp_path: Path, source: Backend) -> ImageProxy:
    settings = Settings.from_mapping(
        {"presets": PRESETS, "cache": {"disk_path": str(tmp_path / "cache")}},
        base_dir=tmp_path,
        env={},
    )
    return ImageProxy(settings, stores={"src": source.store})


def test_warm_then_purge_one_source(backend: Backend, tmp_path: Path) -> None:  # noqa: F811
    key = backend.keys[1]
    backend.put(key, images.jpeg((120, 90)))
    proxy = _proxy(tmp_path, backend)

    async def renders_for_browsers() -> int:
        """The renders a browser's requests for both presets cause now."""
        before = proxy.services.metrics.renders
        for preset in PRESETS:
            url = urlsplit(url_for("src", key, settings=proxy.settings, p=preset))
            for accept in ACCEPTS if preset == "auto" else ("*/*",):
                request = ImageRequest("GET", url.path, url.query, {"accept": accept})
                assert (await serve(proxy.services, request)).status == 200
        return proxy.services.metrics.renders - before

    async def scenario() -> None:
        outcomes = await proxy.warm("src", key, ["small", "auto"])
        assert [(o.preset, o.status) for o in outcomes] == [("small", 200)] + [("auto", 200)] * 3
        made = sum(o.made for o in outcomes)
        assert made == proxy.services.metrics.renders >= 3  # auto: webp and jpeg at least
        assert await renders_for_browsers() == 0
        again = await proxy.warm("src", key, ["small", "auto"])
        assert not any(o.made for o in again)  # already there
        purged = await proxy.purge("src", key)
        assert purged.removed >= 2 * made  # from the memory tier and the disk tier
        assert await renders_for_browsers() == made
        await proxy.close()

    backend.run(scenario())


def test_warm_reports_a_failed_rendition_and_refuses_unknown_names(
    backend: Backend,  # noqa: F811
    tmp_path: Path,
) -> None:
    key = backend.keys[0]
    backend.put(key, b"not an image at all" * 10)
    proxy = _proxy(tmp_path, backend)

    async def scenario() -> None:
        (outcome,) = await proxy.warm("src", key, ["small"])
        assert (outcome.status, outcome.made) == (415, False)
        assert outcome.detail.startswith("unsupported_format: ")
        (missing,) = await proxy.warm("src", backend.keys[2], ["small"])
        assert missing.status == 404
        with pytest.raises(ConfigError, match=r"presets\.nope"):
            await proxy.warm("src", key, ["nope"])
        with pytest.raises(ConfigError, match=r"stores\.elsewhere"):
            await proxy.purge("elsewhere", key)
        await proxy.close()

    backend.run(scenario())


class _Watched(FileSystemStore):
    """A real filesystem store that notes how far its listing runs ahead of the stats."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, approved=True)
        self.listed = self.statted = self.most_ahead = 0

    async def paths(self) -> AsyncIterator[str]:
        self.listed = self.statted = 0  # each listing afresh
        async for path in super().paths():
            self.listed += 1
            yield path

    async def stat(self, path: str) -> StoredFile:
        self.statted += 1
        self.most_ahead = max(self.most_ahead, self.listed - self.statted)
        return await super().stat(path)


def test_warm_holds_a_few_sources_at_a_time_however_many_the_store_lists(
    tmp_path: Path,
) -> None:
    """`imgproxy warm` over 2,000 files: it listed every path, then made a task for each,
    before the first was stat'ed (100,000 files: 1.1 GB). Now the warming listing runs at
    most SOURCES_AHEAD sources per render slot ahead of the renders; every file is warmed."""
    folder = tmp_path / "many"
    for number in range(2000):
        (folder / f"d{number // 100:02d}").mkdir(parents=True, exist_ok=True)
        (folder / f"d{number // 100:02d}" / f"{number:04d}.png").write_bytes(b"")
    store = _Watched(folder)
    settings = Settings.from_mapping({"presets": {"small": "w=20"}}, env={})
    proxy = ImageProxy(settings, stores={"many": store})
    totals: list[int] = []

    async def run() -> WarmSummary:
        try:
            return await warm(proxy.services, "many", ["small"], on_total=totals.append)
        finally:
            await proxy.close()

    summary = asyncio.run(run())
    assert totals == [2000]  # counted before the first rendition
    assert summary.failed == 2000  # empty files: each tried, each a refusal
    slots = proxy.services.executor.concurrency
    assert store.most_ahead <= slots * SOURCES_AHEAD, store.most_ahead
