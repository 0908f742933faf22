"""`imgproxy.inspect`: the server's checks on uploaded bytes (SPEC §14). Over the whole
hostile corpus it gives the code the server gives a rendition of the same file, in the same
store and approval state; accepted bytes come back with their facts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PIL import Image

from imgproxy import ImageInfo, ImageProxyError, Settings, inspect
from imgproxy.stores import FileSystemStore
from tests.support import hostile, images
from tests.support.hostile import CASES, REFUSED
from tests.support.processes import peak_rss_growth


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


# 8 threads inspect one progressive JPEG, in a fresh process whose peak RSS is its own.
_CONCURRENT_INSPECT = """
import sys, threading
from pathlib import Path
from imgproxy import Settings, inspect
from imgproxy.settings import LimitsSettings
from tests.support import images

settings = Settings(limits=LimitsSettings(inflight_bytes=int(sys.argv[2])))
data = Path(sys.argv[1]).read_bytes()
inspect(images.jpeg((64, 48), progressive=True), settings=settings)  # libraries loaded

def status(key):
    lines = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in lines if line.startswith(key)).split()[1]) * 1024

Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from here
before = status("VmRSS:")
threads = [threading.Thread(target=inspect, args=(data,), kwargs={"settings": settings})
           for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(status("VmHWM:") - before)
"""


def test_concurrent_inspect_calls_hold_no_more_than_the_budget(tmp_path: Path) -> None:
    """A progressive JPEG's decoder buffers every coefficient (4000x3000, 4:2:0: 36 MB),
    whatever the DCT scale: reserved from limits.inflight_bytes, so 8 calls at once hold
    one buffer at a time within a 48 MiB budget, not 8 (SPEC §11.1). glibc is told to give
    each buffer back when it is freed, so peak RSS is what is held at once, not what its
    per-thread arenas keep for reuse (a buffer over 32 MiB is always given back)."""
    source = tmp_path / "progressive.jpg"
    flat = Image.new("RGB", (4000, 3000), (90, 140, 200))
    source.write_bytes(images.encode(flat, "JPEG", progressive=True))
    budget = 48 * 2**20
    grown = peak_rss_growth(_CONCURRENT_INSPECT, str(source), str(budget))
    print(f"8 concurrent inspect calls: peak RSS +{grown / 2**20:.1f} MiB")
    assert grown < budget
