"""A file rewritten in place or replaced by rename while it is served: every version gets its
own ETag, a read that raced a write is refused (503, Retry-After) and never cached, and every
body served under an ETag is the output of exactly one complete version (issue 10)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from imgproxy import ImageProxy
from imgproxy.errors import SourceChanged
from imgproxy.stores import FileSystemStore, StoredFile, filesystem
from imgproxy.stores.filesystem import SETTLE_NS
from tests.support import Serve, settings_for

CHUNK = 256 * 1024  # a size, not how the store reads: it reads a version whole
CHUNKS = 4


def noise(seed: int, size: tuple[int, int] = (640, 480)) -> bytes:
    """A stored (uncompressed) PNG: every seed gives a different image of the same length."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG", compress_level=0)
    return out.getvalue()


def overwrite(path: Path, data: bytes) -> None:
    """Rewrite in place (same inode)."""
    with open(path, "r+b") as handle:
        handle.write(data)
        handle.truncate(len(data))


def replace(path: Path, data: bytes) -> None:
    """Replace atomically: a new inode renamed over the old name."""
    temp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


async def read(store: FileSystemStore, file: StoredFile) -> bytes:
    return b"".join([chunk async for chunk in store.open(file)])


async def collect(
    store: FileSystemStore,
    file: StoredFile,
    seen: list[bytes],
    after_first: Callable[[], None],
    method: str = "open",
) -> None:
    """Read into `seen` with `method` (`open`, or `stream` in pieces for an original), calling
    `after_first` once the first chunk has been yielded."""
    async for chunk in getattr(store, method)(file):
        seen.append(chunk)
        if len(seen) == 1:
            after_first()


# --- the version ---------------------------------------------------------------------------


def test_a_same_size_rewrite_with_its_mtime_restored_is_a_new_version(tmp_path: Path) -> None:
    store = FileSystemStore(tmp_path, approved=True)
    path = tmp_path / "a.bin"
    path.write_bytes(b"A" * 1000)
    before = os.stat(path)
    first = asyncio.run(store.stat("a.bin"))
    overwrite(path, b"B" * 1000)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime and size as before
    assert os.stat(path).st_mtime_ns == before.st_mtime_ns
    assert asyncio.run(store.stat("a.bin")).version != first.version  # ctime moved


def test_a_file_renamed_over_is_a_new_version(tmp_path: Path) -> None:
    store = FileSystemStore(tmp_path, approved=True)
    path = tmp_path / "a.bin"
    path.write_bytes(b"A" * 1000)
    before = os.stat(path)
    first = asyncio.run(store.stat("a.bin"))
    temp = tmp_path / "new.bin"
    temp.write_bytes(b"B" * 1000)
    os.utime(temp, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(temp, path)
    assert asyncio.run(store.stat("a.bin")).version != first.version  # another inode


# --- reads that race a write ---------------------------------------------------------------


def in_place(path: Path) -> None:
    with open(path, "r+b") as handle:  # the second half of the file, same size
        handle.seek(2 * CHUNK)
        handle.write(b"B" * 2 * CHUNK)


def truncated(path: Path) -> None:
    os.truncate(path, CHUNK)


def renamed_over(path: Path) -> None:
    replace(path, b"B" * CHUNKS * CHUNK)


def removed(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize("change", [in_place, truncated, renamed_over, removed])
def test_a_stream_racing_a_change_is_refused(
    tmp_path: Path, change: Callable[[Path], None]
) -> None:
    """The change lands between the first and the second piece; no byte written after the
    version was taken is ever yielded."""
    store = FileSystemStore(tmp_path, approved=True)
    path = tmp_path / "a.bin"
    path.write_bytes(b"A" * CHUNKS * CHUNK)

    async def scenario() -> list[bytes]:
        file = await store.stat("a.bin")
        seen: list[bytes] = []
        with pytest.raises(SourceChanged) as raised:
            await collect(store, file, seen, lambda: change(path), "stream")
        assert raised.value.status == 503 and raised.value.retry_after == 1
        return seen

    seen = asyncio.run(scenario())
    assert seen and all(set(chunk) == {ord("A")} for chunk in seen)


@pytest.mark.parametrize("change", [in_place, truncated, renamed_over, removed])
def test_a_whole_read_racing_a_change_is_refused(
    tmp_path: Path, change: Callable[[Path], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`open` reads a version whole: the change lands once the open file has been checked,
    while it is being read, and nothing at all is yielded."""
    store = FileSystemStore(tmp_path, approved=True)
    path = tmp_path / "a.bin"
    path.write_bytes(b"A" * CHUNKS * CHUNK)
    checks: list[int] = []

    def unchanged_then_change(fd: int, file: StoredFile) -> os.stat_result:
        st = checked(fd, file)
        checks.append(fd)
        if len(checks) == 1:
            change(path)
        return st

    checked = filesystem._unchanged
    monkeypatch.setattr(filesystem, "_unchanged", unchanged_then_change)

    async def scenario() -> list[bytes]:
        file = await store.stat("a.bin")
        seen: list[bytes] = []
        with pytest.raises(SourceChanged) as raised:
            await collect(store, file, seen, lambda: None, "open")
        assert raised.value.status == 503 and raised.value.retry_after == 1
        return seen

    assert asyncio.run(scenario()) == [] and checks


@pytest.mark.parametrize("method", ["open", "stream"])
@pytest.mark.parametrize("change", [in_place, truncated, renamed_over])
def test_a_change_between_stat_and_open_reads_nothing(
    tmp_path: Path, change: Callable[[Path], None], method: str
) -> None:
    store = FileSystemStore(tmp_path, approved=True)
    path = tmp_path / "a.bin"
    path.write_bytes(b"A" * CHUNKS * CHUNK)

    async def scenario() -> list[bytes]:
        file = await store.stat("a.bin")
        change(path)
        seen: list[bytes] = []
        with pytest.raises(SourceChanged):
            await collect(store, file, seen, lambda: None, method)
        return seen

    assert asyncio.run(scenario()) == []


def test_a_just_written_file_is_read_only_after_its_timestamp_tick(tmp_path: Path) -> None:
    """Two writes within one coarse tick share a ctime: a read starting inside the tick could
    see the first under a version that also names the second."""
    store = FileSystemStore(tmp_path, approved=True)
    path = tmp_path / "a.bin"

    async def scenario() -> int:
        path.write_bytes(b"A" * CHUNK)
        file = await store.stat("a.bin")
        async for _chunk in store.open(file):
            return time.time_ns()
        raise AssertionError("no chunk")

    first_chunk = asyncio.run(scenario())
    assert first_chunk >= os.stat(path).st_ctime_ns + SETTLE_NS


def test_an_unchanged_file_reads_whole(tmp_path: Path) -> None:
    store = FileSystemStore(tmp_path, approved=True)
    data = bytes(range(256)) * (CHUNKS * CHUNK // 256) + b"tail"
    (tmp_path / "a.bin").write_bytes(data)
    assert asyncio.run(read(store, asyncio.run(store.stat("a.bin")))) == data


# --- over a real server, 8 clients against a writer ----------------------------------------

CLIENTS = 8
RACE_SECONDS = 2.5

# Rewrites PATH with versions v0..v(N-1) beside it until SIGTERM, then prints how many times:
# in place (same inode, 8 writes) or by rename, alternating for "both"; pauses up to a few
# reads long, some shorter than the settle window (without them no read could ever finish,
# and every answer would be a (correct) 503).
_WRITER = """
import os, random, signal, sys, time
from pathlib import Path
path, count, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
versions = [path.with_name(f"v{n}").read_bytes() for n in range(count)]
writes, running = 0, True
def stop(*_):
    global running
    running = False
signal.signal(signal.SIGTERM, stop)
while running:
    data = versions[writes % count]
    if mode == "in_place" or (mode == "both" and writes % 2):
        with open(path, "r+b") as handle:
            step = -(-len(data) // 8)
            for start in range(0, len(data), step):
                handle.write(data[start : start + step])
                handle.flush()
            handle.truncate(len(data))
    else:
        temp = path.with_name(".race.tmp")
        temp.write_bytes(data)
        os.replace(temp, path)
    writes += 1
    time.sleep(random.uniform(0, 0.05))
print(writes)
"""
URLS = {"original": "/media/race.png", "rendition": "/media/race.png?w=200&fm=jpeg"}


def fetch_all(client: httpx.Client) -> dict[str, httpx.Response | None]:
    """None: an original cut mid-stream. Originals are streamed from the store (SPEC §11.1):
    a change seen after the first piece was sent closes the connection, so the client gets
    an incomplete body, never a complete wrong one."""
    answers: dict[str, httpx.Response | None] = {}
    for kind, url in URLS.items():
        try:
            answers[kind] = client.get(url)
        except httpx.RemoteProtocolError:
            assert kind == "original"
            answers[kind] = None
    return answers


def quiet() -> None:
    time.sleep(0.1)  # past the store's settle window: a read now sees a settled version


@pytest.mark.parametrize("mode", ["in_place", "rename", "both"])
def test_concurrent_rewrites_never_serve_torn_or_stale_bytes(
    media: Path, serve: Serve, mode: str
) -> None:
    versions = [noise(seed) for seed in (1, 2, 3)]
    assert len({len(data) for data in versions}) == 1 and len(versions[0]) > 3 * CHUNK
    path = media / "race.png"
    proxy = ImageProxy(settings_for(media, limits={"render_concurrency": 4}))
    base = serve(proxy).url

    # What each complete version renders, through the same server, in a quiet period.
    expected: dict[str, dict[bytes, int]] = {kind: {} for kind in URLS}
    with httpx.Client(base_url=base, timeout=30) as client:
        for number, data in enumerate(versions):
            replace(path, data)
            quiet()
            for kind, response in fetch_all(client).items():
                assert response is not None and response.status_code == 200, response
                expected[kind][response.content] = number
    assert expected["original"] == {data: n for n, data in enumerate(versions)}
    assert len(expected["rendition"]) == len(versions)

    # The writer is a process of its own, as a real one is: in this process it would wait
    # on the GIL between the pieces of an in-place write, longer than the store's settle
    # window, leaving a half-written file still for a reader to see whole.
    for number, data in enumerate(versions):
        path.with_name(f"v{number}").write_bytes(data)
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(len(versions)), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    stop = threading.Event()

    served: list[tuple[str, int, str, bytes, httpx.Headers]] = []
    cut = 0
    lock = threading.Lock()

    def reader() -> None:
        nonlocal cut
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop.is_set():
                for kind, response in fetch_all(client).items():
                    if response is None:
                        with lock:
                            cut += 1
                        continue
                    row = (
                        kind,
                        response.status_code,
                        response.headers.get("etag", ""),
                        response.content,
                        response.headers,
                    )
                    with lock:
                        served.append(row)

    threads = [threading.Thread(target=reader) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(RACE_SECONDS)
    writer.send_signal(signal.SIGTERM)
    writes = int(writer.communicate(timeout=60)[0])
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert writes > 20

    bodies: dict[tuple[str, str], set[bytes]] = defaultdict(set)
    refused = 0
    for kind, status, etag, body, headers in served:
        if status == 503:  # the only answer allowed besides 200: retryable
            assert headers["retry-after"] == "1"
            assert headers["cache-control"] == "no-store"
            refused += 1
            continue
        assert status == 200, body[:200]
        if body not in expected[kind]:
            pytest.fail(f"a {kind} of {len(body)} bytes that is no complete version's output")
        bodies[(kind, etag)].add(body)
    torn_etags = {key: len(found) for key, found in bodies.items() if len(found) > 1}
    assert not torn_etags, f"ETags that served more than one body: {torn_etags}"
    assert sum(1 for row in served if row[1] == 200) > CLIENTS

    # Nothing torn was cached: once quiet, the final version is served, and served again.
    final = versions[(writes - 1) % len(versions)]
    quiet()
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(3):
            for kind, response in fetch_all(client).items():
                assert response is not None and response.status_code == 200
                assert expected[kind][response.content] == versions.index(final)
                etag = response.headers["etag"]
                assert bodies.get((kind, etag), {response.content}) == {response.content}
    print(f"{mode}: {writes} writes, {len(served)} answers, {refused} refused (503), {cut} cut")


def test_a_head_is_of_the_version_asked_for(tmp_path: Path) -> None:
    """A new file's facts may be learned from its head alone: a head of a file rewritten
    since its version was taken is refused, never learned under the old version."""
    store = FileSystemStore(tmp_path, approved=True)
    path = tmp_path / "a.bin"
    path.write_bytes(b"A" * 1000)

    async def scenario() -> None:
        file = await store.stat("a.bin")
        assert await store.head(file, 10) == b"A" * 10
        time.sleep(SETTLE_NS / 1e9)
        overwrite(path, b"B" * 1000)
        with pytest.raises(SourceChanged):
            await store.head(file, 10)
        assert await store.head(await store.stat("a.bin"), 10) == b"B" * 10

    asyncio.run(scenario())
