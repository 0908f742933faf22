"""The core with plain values, no socket: Services built from Settings, ImageRequest in,
ImageResponse out (SPEC §10). What a restarted process reads, and the order of the first
stages (signature before any parameter rule)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from imgproxy import pipeline, render, source
from imgproxy.errors import SourceChanged
from imgproxy.messages import ImageRequest, ImageResponse
from imgproxy.services import Services
from imgproxy.source import HEADER_BYTES
from imgproxy.stores import StoredFile
from imgproxy.stores.filesystem import FileSystemStore
from tests.support import KEY, CountingStore, images, settings_for


def get(services: Services, path: str, query: str = "", **headers: str) -> ImageResponse:
    request = ImageRequest("GET", path, query, {k.replace("_", "-"): v for k, v in headers.items()})
    return asyncio.run(pipeline.serve(services, request))


def header(response: ImageResponse, name: str) -> str:
    return dict(response.headers)[name]


def test_a_rendition_from_plain_values(media: Path) -> None:
    services = Services.build(settings_for(media))
    response = get(services, "/media/photo.jpg", "w=64&fm=webp")
    assert response.status == 200
    assert header(response, "content-type") == "image/webp"
    assert images.decode(response.body).size == (64, 48)
    assert services.metrics.renders == 1
    asyncio.run(services.close())


@pytest.mark.parametrize("query", ["w=64", "", "fm=json"])
def test_a_restarted_process_reads_no_source_for_a_hit_or_a_304(
    media: Path, tmp_path: Path, query: str
) -> None:
    """The source's facts live in the shared tiers beside its renditions (SPEC §5, §12.2):
    a new process with empty memos answers from them without reading the source."""
    settings = settings_for(media, cache={"disk_path": str(tmp_path / "disk")})
    first_store = CountingStore(media)
    first = Services.build(settings, stores={"media": first_store})
    warm = get(first, "/media/photo.jpg", query)
    assert warm.status == 200
    # First sight: learning reads its head in one slot; a render (or an original) reads it
    # whole in its own (no bytes are held while waiting for one: SPEC §11).
    assert first_store.heads == 1
    assert first_store.reads == (0 if query == "fm=json" else 1)
    asyncio.run(first.close())

    store = CountingStore(media)
    restarted = Services.build(settings, stores={"media": store})
    again = get(restarted, "/media/photo.jpg", query, if_none_match=header(warm, "etag"))
    assert again.status == 304
    if query:  # renditions and metadata come from the disk tier; an original is its bytes
        hit = get(restarted, "/media/photo.jpg", query)
        assert (hit.status, hit.body) == (200, warm.body)
        assert (store.heads, store.reads) == (0, 0)
        assert restarted.metrics.renders == 0
    else:
        assert (store.heads, store.reads) == (0, 0)
    asyncio.run(restarted.close())


def test_damaged_facts_are_learned_again(media: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    settings = settings_for(media, cache={"disk_path": str(disk)})
    first = Services.build(settings)
    assert get(first, "/media/photo.jpg", "w=32").status == 200
    asyncio.run(first.close())
    (facts,) = disk.rglob("*.json")
    facts.write_bytes(b'{"format": "JPEG"')
    store = CountingStore(media)
    restarted = Services.build(settings, stores={"media": store})
    assert get(restarted, "/media/photo.jpg", "w=33").status == 200
    assert (store.heads, store.reads) == (1, 1)  # learned again from its head, then rendered
    asyncio.run(restarted.close())


def hmac_of(message: str) -> str:
    digest = hmac.new(KEY.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:32]


@pytest.mark.parametrize("debug", [False, True])
def test_the_signature_is_judged_before_any_parameter_rule(media: Path, debug: bool) -> None:
    """SPEC §10: path, store, signature, then params: a repeated or unknown parameter in an
    unsigned URL is a 403, not a 400, so a prober learns nothing about the rules."""
    services = Services.build(settings_for(media, security={"keys": [KEY], "debug": debug}))
    for query in ("w=10&w=20", "zz=1", "w=99999", "w"):
        response = get(services, "/media/photo.jpg", query)
        assert response.status == 403, query
        assert b"bad_signature" in response.body
    # Signed as sent, the repeat is then refused by the parameter rules.
    repeated = get(
        services, "/media/photo.jpg", "w=10&w=20&s=" + hmac_of("/media/photo.jpg?w=10&w=20")
    )
    assert repeated.status == 400
    assert b"given more than once" in repeated.body
    asyncio.run(services.close())


def test_debug_shows_the_expected_message_for_a_missing_signature(media: Path) -> None:
    """SPEC §3: the commonest support question, for a missing `s` as for a wrong one."""
    services = Services.build(settings_for(media, security={"keys": [KEY], "debug": True}))
    for query in ("w=10", "w=10&s=" + "x" * 32):
        detail = json.loads(get(services, "/media/photo.jpg", query).body)["detail"]
        assert "'/media/photo.jpg?w=10'" in detail
    quiet = Services.build(settings_for(media, security={"keys": [KEY]}))
    assert b"/media/photo.jpg?" not in get(quiet, "/media/photo.jpg", "w=10").body
    asyncio.run(services.close())
    asyncio.run(quiet.close())


def test_requests_that_arrived_before_a_stat_share_it_and_later_ones_stat_again(
    media: Path,
) -> None:
    """SPEC §6: a stat shared only with requests already there when it began, so a source
    changed after a request arrived is still seen by it."""
    store = CountingStore(media)
    services = Services.build(settings_for(media), stores={"media": store})
    request = ImageRequest("GET", "/media/photo.jpg", "w=64")

    async def served(arrived: float | None) -> ImageResponse:
        return await pipeline.serve(services, request, arrived=arrived)

    before = time.perf_counter()
    first = asyncio.run(served(before))
    assert store.stats == 1
    assert asyncio.run(served(before)).headers == first.headers  # there before: shared
    assert store.stats == 1
    assert asyncio.run(served(None)).headers == first.headers  # no arrival known: its own
    assert store.stats == 2
    (media / "photo.jpg").write_bytes(images.jpeg((320, 240)))
    changed = asyncio.run(served(time.perf_counter()))  # arrived after every stat so far
    assert store.stats == 3
    assert header(changed, "etag") != header(first, "etag")
    assert images.decode(changed.body).size == (64, 48)
    asyncio.run(services.close())


def test_a_retry_after_a_source_change_stats_again(
    media: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CountingStore(media)
    services = Services.build(settings_for(media), stores={"media": store})
    stages = pipeline._stages
    arrivals: list[float | None] = []

    async def changing(
        services: Services, request: ImageRequest, arrived: float | None
    ) -> ImageResponse:
        arrivals.append(arrived)
        if len(arrivals) == 1:
            raise SourceChanged("rewritten while read")
        return await stages(services, request, arrived)

    monkeypatch.setattr(pipeline, "_stages", changing)
    request = ImageRequest("GET", "/media/photo.jpg", "w=64")
    response = asyncio.run(pipeline.serve(services, request, arrived=time.perf_counter()))
    assert response.status == 200
    assert arrivals[1] is None  # the retry shares no stat made before the change was seen
    asyncio.run(services.close())


def test_a_new_photo_is_learned_from_its_head_and_read_once(media: Path) -> None:
    """A JPEG or PNG whose image data starts within the first 64 KiB is learned from those
    (SPEC §10): its render is the one whole read. One whose segments before the data are
    larger (100 KB of Exif and comment) is read whole to learn, as any other format. The facts are
    exactly those of the whole file, progressive JPEGs' coefficient buffers included."""
    noise = Image.effect_noise((1600, 1200), 30).convert("RGB")
    photo = Image.blend(images.photo((1600, 1200)), noise, 0.3)
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription: a 60 KB APP1 segment
    big = {"exif": exif.tobytes(), "comment": "y" * 40_000}  # and a 40 KB COM segment
    files = {
        "sequential.jpg": (images.encode(photo, "JPEG"), 1),
        "progressive.jpg": (images.encode(photo, "JPEG", progressive=True), 1),
        "photo.png": (images.encode(photo, "PNG"), 1),
        "big-exif.jpg": (images.encode(photo, "JPEG", **big), 2),
        "anim.gif": (noisy_gif(), 2),  # its frames are counted in the whole file
    }

    async def scenario() -> None:
        for name, (data, reads) in files.items():
            assert len(data) > HEADER_BYTES, name
            (media / name).write_bytes(data)
            store = CountingStore(media)
            services = Services.build(settings_for(media), stores={"media": store})
            request = ImageRequest("GET", f"/media/{name}", "w=64")
            answers = await asyncio.gather(*(pipeline.serve(services, request) for _ in range(8)))
            assert [a.status for a in answers] == [200] * 8, name
            assert (store.heads, store.reads) == (1, reads), name
            learned = services.sources._known.get(("media", name, (await store.stat(name)).version))
            assert learned == render.probe(data, None, 10**9), name
            await services.close()

    asyncio.run(scenario())


def noisy_gif() -> bytes:
    frames = [Image.effect_noise((300, 200), 60 + n).convert("P") for n in range(3)]
    return images.encode(frames[0], "GIF", save_all=True, append_images=frames[1:])


class EveryPath(FileSystemStore):
    """One image under every path, as an http origin that answers any path does."""

    async def stat(self, path: str) -> StoredFile:
        return dataclasses.replace(await super().stat("photo.jpg"), path=path)

    async def head(self, file: StoredFile, size: int) -> bytes:
        return await super().head(dataclasses.replace(file, path="photo.jpg"), size)

    async def open(self, file: StoredFile) -> AsyncIterator[bytes]:
        async for chunk in super().open(dataclasses.replace(file, path="photo.jpg")):
            yield chunk


def test_the_facts_of_long_paths_are_bounded_by_their_characters(
    media: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The facts of each version were kept by count alone (100 000): 2000-character paths
    of an origin that answers any path would have held 200 MB. Here, at a bound of 100 000
    characters, 300 paths of 1000."""
    monkeypatch.setattr(source, "KNOWN_CHARS", 100_000)
    services = Services.build(
        settings_for(media), stores={"media": EveryPath(media, approved=True)}
    )
    for n in range(300):
        assert get(services, f"/media/{n:04d}{'x' * 1000}.jpg", "fm=json").status == 200
    known = services.sources._known
    assert 0 < sum(map(source.version_chars, known)) <= 100_000, len(known)
    asyncio.run(services.close())
