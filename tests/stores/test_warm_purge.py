"""`ImageProxy.warm` and `.purge` for one source, over every store kind's real backend: after a
warm the requests a browser sends render nothing; after a purge they render again."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from imgproxy import ImageProxy, Settings, url_for
from imgproxy.errors import ConfigError
from imgproxy.messages import ImageRequest
from imgproxy.pipeline import serve
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
