"""`imgproxy.inspect`: the server's checks on uploaded bytes (SPEC §14). Over the whole
hostile corpus it gives the code the server gives a rendition of the same file, in the same
store and approval state; accepted bytes come back with their facts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from imgproxy import ImageInfo, ImageProxyError, Settings, inspect
from imgproxy.stores import FileSystemStore
from tests.support import hostile, images
from tests.support.hostile import CASES, REFUSED


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    root = tmp_path_factory.mktemp("corpus")
    for name in ("pending", "approved", "small"):
        (root / name).mkdir()
    hostile.write_corpus(root / "pending", root / "approved", root / "small")
    config = root / "imgproxy.toml"
    config.write_text("[limits]\nrender_concurrency = 2\n" + hostile.CORPUS_STORES)
    return Settings.from_file(config), root


@pytest.mark.parametrize(
    ("where", "statuses"), list(CASES.items()), ids=[f"{s}/{n}" for s, n in CASES]
)
def test_inspect_gives_the_servers_code_for_every_hostile_file(
    corpus: tuple[Settings, Path], where: tuple[str, str], statuses: tuple[int, int, int]
) -> None:
    settings, root = corpus
    store, name = where
    config = settings.stores[store]
    stored = asyncio.run(FileSystemStore(root / store, approved=config.approved).stat(name))
    data = (root / store / name).read_bytes()
    expected = statuses[1]  # the server's answer for a rendition (?w=50): it decodes
    if expected == 200:
        info = inspect(data, settings=settings, approved=stored.approved, store=store)
        assert info.bytes == len(data) and info.width > 0
        return
    with pytest.raises(ImageProxyError) as caught:
        inspect(data, settings=settings, approved=stored.approved, store=store)
    assert (caught.value.status, caught.value.code) == (expected, REFUSED[expected])


def test_the_facts_of_an_accepted_image() -> None:
    settings = Settings()
    assert inspect(images.jpeg((120, 90)), settings=settings) == ImageInfo(
        120, 90, "JPEG", 1, len(images.jpeg((120, 90))), "image/jpeg"
    )
    rotated = images.jpeg_with_exif((120, 90), orientation=6, gps=False)
    info = inspect(rotated, settings=settings)
    assert (info.width, info.height) == (90, 120)  # as displayed
    animated = inspect(images.gif(3), settings=settings)
    assert (animated.format, animated.frames, animated.mime) == ("GIF", 3, "image/gif")


def test_approval_and_store_rules_apply() -> None:
    bmp = images.encode(images.photo((32, 32)), "BMP")
    settings = Settings.from_mapping(
        {
            "stores": {
                "avatars": {"kind": "fs", "root": ".", "max_source_bytes": 1000},
                "open": {"kind": "fs", "root": ".", "approved_image_formats": ["*"]},
            }
        },
        env={},
    )
    with pytest.raises(ImageProxyError) as refused:
        inspect(bmp, settings=settings)
    assert refused.value.code == "not_approved"
    assert inspect(bmp, settings=settings, approved=True).format == "BMP"
    with pytest.raises(ImageProxyError) as large:
        inspect(images.jpeg((200, 200)), settings=settings, store="avatars")
    assert large.value.code == "too_large"
    with pytest.raises(ValueError, match="no store 'nope'"):
        inspect(bmp, settings=settings, store="nope")
