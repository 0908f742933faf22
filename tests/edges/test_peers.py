"""`imgproxy serve --workers 2` shares a page's decodes across its workers (server/peers.py):
a job whose decode the other worker leads is rendered there, each rendition still the bytes
a lone render makes; a peer that is gone leaves the job here; a worker's socket takes only
imgproxy's own values, never a pickle that names anything else."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pickle
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from imgproxy import Settings
from imgproxy.formats import OutputFormat
from imgproxy.job import RenderJob
from imgproxy.params import Transform
from imgproxy.render.memory import dct_scale
from imgproxy.server.claims import ENTRY, SLOTS, Table, make_table
from imgproxy.server.peers import HEADER, TAKE_SECONDS, WorkerPeers, _loads
from imgproxy.services import Services
from imgproxy.source import Source
from tests.e2e.test_shared_decodes import PAGE, lone
from tests.stages.test_load import grainy_jpeg
from tests.support import LiveServer, images, metric, settings_for, write_config
from tests.support.origin import Origin
from tests.support.processes import sampled_rss, served, serving_children

PHOTOS = 8
# Three DCT scales of a 1600 px JPEG: 1/4 for 320 px, 1/2 for 640, whole for 1280.
SCALES = 3


async def _page_at_once(url: str, paths: list[str]) -> list[httpx.Response]:
    """Every rendition on a connection of its own, so the kernel spreads them over both
    workers, as a browser's or a proxy's connections are."""

    async def one(path: str, query: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await client.get(f"{path}?{query}")

    return await asyncio.gather(*(one(path, query) for path in paths for query in PAGE))


def test_a_page_reaching_both_workers_is_decoded_once_per_scale(tmp_path: Path) -> None:
    """8 new photos x 6 renditions, 48 connections at once, 2 workers with one render slot
    each: one decode per photo and scale (24), where two workers deciding alone decoded about
    36 (the two renditions of a scale reached different workers half the time). Two workers
    may both claim one key in the same microsecond: a decode twice, never other bytes."""
    media = tmp_path / "media"
    media.mkdir()
    photo = grainy_jpeg((1600, 1000))
    paths = []
    for n in range(PHOTOS):
        (media / f"{n}.jpg").write_bytes(photo)
        paths.append(f"/media/{n}.jpg")
    expected = lone(media, paths[0], PAGE)  # the same pixels under each name
    config = write_config(tmp_path, media, limits={"render_concurrency": 1})
    with served(config, "--workers", "2") as server:
        replies = asyncio.run(_page_at_once(server.url, paths))
        time.sleep(1.5)  # each worker hands its counts to /metrics once a second
        decodes = metric(server.url, "imgproxy_decodes_total")
    assert [r.status_code for r in replies] == [200] * PHOTOS * len(PAGE)
    for n, reply in enumerate(replies):
        assert reply.content == expected[PAGE[n % len(PAGE)]]
    assert PHOTOS * SCALES <= decodes <= PHOTOS * SCALES + 2, decodes


KEY = ("media", "photo.jpg", "v1", 1, None, 10**8, 100)  # a decode some worker may claim


def _one_worker(tmp_path: Path) -> tuple[Services, Source, RenderJob, WorkerPeers]:
    """A worker's services and peers (its socket not started) beside a fresh table, and a
    learned photo with a job for it."""
    media = tmp_path / "media"
    media.mkdir()
    (media / "photo.jpg").write_bytes(images.jpeg((320, 240)))
    folder = tmp_path / "peers"
    folder.mkdir()
    make_table(folder)
    services = Services.build(settings_for(media))

    async def learned() -> Source:
        mount = services.mounts["media"]
        return await services.sources.learn(mount, await mount.store.stat("photo.jpg"))

    job = RenderJob(Transform(width=100), OutputFormat.JPEG, 80, None, False, 10**8)
    return services, asyncio.run(learned()), job, WorkerPeers(services, folder)


def test_a_job_whose_leader_is_gone_is_rendered_here(tmp_path: Path) -> None:
    """A claim left by a worker that died (its socket gone) or that cannot answer: the job
    is not sent, or comes back unanswered, and the caller renders it itself, at once."""
    services, source, job, here = _one_worker(tmp_path)
    folder = here.folder
    dead = Table(folder, 2**22 + 1, here.table.config)  # above any pid Linux gives by default
    dead.claim(KEY)
    assert here.table.leader(KEY) == dead.pid
    began = time.monotonic()
    assert asyncio.run(here.render(KEY, source, job)) is None  # no socket: rendered here
    (folder / f"{dead.pid}.sock").touch()  # a file where the socket was: refused alike
    assert asyncio.run(here.render(KEY, source, job)) is None
    assert time.monotonic() - began < 1
    dead.release(KEY)
    assert here.table.leader(KEY) is None
    here.table.claim(KEY)
    assert here.table.leader(KEY) is None  # its own claim: nothing to send
    asyncio.run(services.close())


class _Asked:
    """Peers that lead every decode and never take a job: they record what they were asked."""

    def __init__(self) -> None:
        self.asked = 0

    def claim(self, key: object) -> None: ...

    def release(self, key: object) -> None: ...

    async def render(self, key: object, source: Source, job: RenderJob) -> None:
        self.asked += 1


def test_only_a_worker_that_cannot_start_a_job_sends_it_to_a_peer(tmp_path: Path) -> None:
    """Unique widths of one hot photo under 24 clients were all sent to the worker that
    first claimed its decode, which then did 86-91 % of the work while the other's core sat
    idle (tests/edges/test_workers.py failed in CI). A worker with a free place renders the
    job itself; a busy one joins the peer's decode."""
    services, source, job, _ = _one_worker(tmp_path)
    peers = services.decodes.peers = _Asked()

    async def busy_then_idle() -> None:
        executor = services.executor
        async with contextlib.AsyncExitStack() as held:
            for _ in range(executor.concurrency):  # every place of the store taken
                await held.enter_async_context(executor.slot(0, lane="media"))
            waiting = asyncio.create_task(services.decodes.render(source, job))
            await asyncio.sleep(0.05)
            assert peers.asked == 1  # busy: its peer was asked first
        await waiting  # refused by the peer: rendered here once a place was free
        await services.decodes.render(source, dataclasses.replace(job, quality=81))
        assert peers.asked == 1  # idle: rendered here without asking

    asyncio.run(busy_then_idle())
    asyncio.run(services.close())


def test_a_worker_whose_bytes_or_threads_are_taken_sends_the_job_to_its_peer(
    tmp_path: Path,
) -> None:
    """A free place of the store was taken for "can start": with the in-flight budget held
    (a large decode) or every render thread busy with another store's renders, the job was
    rendered here and waited for them, while the peer that leads its decode had it in hand."""
    services, source, job, _ = _one_worker(tmp_path)
    peers = services.decodes.peers = _Asked()
    executor = services.executor

    async def asked_while(held: contextlib.AbstractAsyncContextManager[object]) -> int:
        before = peers.asked
        async with held:
            waiting = asyncio.create_task(services.decodes.render(source, job))
            await asyncio.sleep(0.05)
            asked = peers.asked - before
        await waiting  # refused by the peer: rendered here once freed
        return asked

    @contextlib.asynccontextmanager
    async def threads_busy() -> AsyncIterator[None]:
        """Every render thread running another store's render until the block ends."""
        release = threading.Event()
        async with contextlib.AsyncExitStack() as stack:
            running = []
            for _ in range(executor.concurrency):
                slot = await stack.enter_async_context(executor.slot(0, lane="other"))
                running.append(asyncio.create_task(slot.run(release.wait)))
            await asyncio.sleep(0.05)
            try:
                yield
            finally:
                release.set()
                await asyncio.gather(*running)

    async def scenarios() -> None:
        assert await asked_while(executor.reserve(executor.budget)) == 1
        assert await asked_while(threads_busy()) == 1
        assert await asked_while(contextlib.nullcontext()) == 0  # idle: rendered here

    asyncio.run(scenarios())
    asyncio.run(services.close())


class _Shell:
    """What a hostile pickle would run on loading: `touch` of a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_a_worker_socket_refuses_a_pickle_of_anything_but_imgproxy_values(
    tmp_path: Path,
) -> None:
    """The sockets sit in a directory only the server's user can enter, and even a pickle
    sent there that names a function (os.system) is refused before anything runs; the
    worker goes on serving."""
    marker = tmp_path / "ran"
    with pytest.raises(pickle.UnpicklingError, match="may not send"):
        _loads(pickle.dumps(_Shell(marker)))
    assert not marker.exists()

    media = tmp_path / "media"
    media.mkdir()
    (media / "photo.jpg").write_bytes(images.jpeg((320, 240)))
    config = write_config(tmp_path, media)
    with served(config, "--workers", "2", env={"TMPDIR": str(tmp_path)}) as server:
        deadline = time.monotonic() + 30
        while len(sockets := sorted(tmp_path.glob("imgproxy-metrics-*/peers/*.sock"))) < 2:
            assert time.monotonic() < deadline, "the workers did not listen for peers"
            time.sleep(0.05)
        assert oct(sockets[0].parent.stat().st_mode & 0o777) == oct(0o700)
        for path in sockets:
            body = pickle.dumps(_Shell(marker))
            with socket.socket(socket.AF_UNIX) as peer:
                peer.connect(str(path))
                peer.sendall(HEADER.pack(len(body)) + body)
                peer.settimeout(10)
                assert peer.recv(100) == b""  # closed without an answer
            with socket.socket(socket.AF_UNIX) as peer:  # a length past any job's
                peer.connect(str(path))
                peer.sendall(struct.pack("<Q", 2**40))
                peer.settimeout(10)
                assert peer.recv(100) == b""
        assert httpx.get(f"{server.url}/media/photo.jpg?w=50").status_code == 200
    assert not marker.exists()


def test_a_flood_of_pages_on_two_workers_stays_within_each_workers_bounds(
    tmp_path: Path,
) -> None:
    """24 new photos x 6 renditions at once over 144 connections, 2 workers with one slot
    and a queue of 16 each: every answer is its lone render's bytes or a 503 (a peer's full
    queue sends the job back, and the worker's own queue decides), never a 500; each
    worker's RSS grows by what its slot and render.linger_bytes allow; and once it is over,
    every claim in the table has been given back."""
    media = tmp_path / "media"
    media.mkdir()
    photo = grainy_jpeg((1600, 1000))
    photos = 24
    for n in range(photos + 1):
        (media / f"{n}.jpg").write_bytes(photo)
    expected = lone(media, "/media/0.jpg", PAGE)
    linger_bytes = 8 << 20
    config = write_config(
        tmp_path,
        media,
        limits={"render_concurrency": 1, "render_queue": 16},
        render={"linger_bytes": linger_bytes},
    )
    with served(config, "--workers", "2", env={"TMPDIR": str(tmp_path)}) as server:
        deadline = time.monotonic() + 30
        while len(workers := serving_children(server.process.pid)) < 2:
            assert time.monotonic() < deadline, "two workers did not start"
            time.sleep(0.05)
        for _ in range(8):  # each worker warm: its imports and first buffers
            assert httpx.get(f"{server.url}/media/0.jpg?w=300", timeout=60).status_code == 200
        resting = [w.memory_info().rss for w in workers]
        paths = [f"/media/{n + 1}.jpg" for n in range(photos)]
        with sampled_rss(workers[0]) as first, sampled_rss(workers[1]) as second:
            replies = asyncio.run(_page_at_once(server.url, paths))
        statuses = [r.status_code for r in replies]
        assert set(statuses) <= {200, 503}, statuses
        assert statuses.count(200) >= len(PAGE) * 4, statuses  # most of it was served
        for n, reply in enumerate(replies):
            if reply.status_code == 200:
                assert reply.content == expected[PAGE[n % len(PAGE)]]
        assert httpx.get(f"{server.url}/media/0.jpg?w=301", timeout=60).status_code == 200
        time.sleep(0.5)  # the last frames' linger (0.1 s) over
        (table,) = tmp_path.glob("imgproxy-metrics-*/peers/flights")
        claims = [
            ENTRY.unpack_from(table.read_bytes(), at)
            for at in range(0, SLOTS * ENTRY.size, ENTRY.size)
        ]
        assert [claim for claim in claims if claim[0]] == []
    # A worker's largest render (render/memory.py's estimate): the source, a whole decode at
    # 12 bytes a pixel, a 1280 px WebP at 24; one slot, and what it keeps for other renditions.
    per_render = len(photo) + 1600 * 1000 * 12 + 1280 * 800 * 24
    for peak, rest in zip((first[0], second[0]), resting, strict=True):
        assert peak - rest < per_render + linger_bytes, (peak - rest, per_render)


def test_a_job_for_a_stopped_leader_is_rendered_here_within_a_second_or_two(
    tmp_path: Path,
) -> None:
    """A leader SIGSTOPped (or wedged) still has its socket: the kernel accepts a
    connection into its backlog and takes the job's bytes, and nothing reads them. Its
    claim lives 60 s, and each of 8 jobs at once waited ASK_SECONDS (120 s) for an answer
    that never came; now a peer that has not taken a job within TAKE_SECONDS leaves it here,
    and a live peer's answer still arrives."""
    services, source, job, here = _one_worker(tmp_path)
    folder = here.folder
    stopped = Table(folder, 2**22 + 2, here.table.config)
    stopped.claim(KEY)

    async def eight() -> list[object]:
        jobs = (here.render(KEY, source, job) for _ in range(8))
        return await asyncio.wait_for(asyncio.gather(*jobs), 10)

    with socket.socket(socket.AF_UNIX) as listening:  # bound and listening, never read
        listening.bind(str(folder / f"{stopped.pid}.sock"))
        listening.listen(16)
        began = time.monotonic()
        assert asyncio.run(eight()) == [None] * 8
        assert time.monotonic() - began < TAKE_SECONDS + 1
    asyncio.run(services.close())


def _web(origin: str) -> Settings:
    store = {"kind": "http", "base_url": origin + "/files/", "approved": True}
    store["allowed_networks"] = ["127.0.0.2/32"]  # the test origins, and nothing else
    return Settings.from_mapping({"stores": {"web": store}}, env={})


def test_workers_of_two_configurations_never_share_a_decode(tmp_path: Path) -> None:
    """A SIGHUP replaces the workers one at a time: for a while an old worker (store `web`
    at one origin) and a new one (`web` moved to another, whose photo.jpg is another image)
    serve side by side. A job of the old one sent to the new one was rendered from the new
    origin's bytes and failed as the ETags differed, a 502 for a URL the old worker renders
    alone; now workers of different configurations never find each other's claims."""
    old_origin, new_origin = Origin(), Origin()
    old_origin.put("photo.jpg", images.jpeg((320, 240)))
    new_origin.put("photo.jpg", images.jpeg((300, 200)))
    folder = tmp_path / "peers"
    folder.mkdir()
    make_table(folder)

    async def main(old_url: str, new_url: str) -> list[tuple[int, int]]:
        old, new = Services.build(_web(old_url)), Services.build(_web(new_url))
        here, there = WorkerPeers(old, folder), WorkerPeers(new, folder)
        there.table = Table(folder, 2**22 + 3, there.table.config)  # another process's pid
        await here.start()
        await there.start()
        mount = old.mounts["web"]
        source = await old.sources.learn(mount, await mount.store.stat("photo.jpg"))
        job = RenderJob(Transform(width=100), OutputFormat.PNG, None, None, False, 10**8)
        key = ("web", "photo.jpg", source.file.version, dct_scale(source.info, job.transform))
        there.claim((*key, job.decoders, job.max_pixels, job.max_jpeg_scans))
        try:
            renders = [old.decodes.render(source, job) for _ in range(4)]
            return [images.decode(r.body).size for r, _ in await asyncio.gather(*renders)]
        finally:
            await here.stop()
            await there.stop()
            await old.close()
            await new.close()

    with LiveServer(old_origin, "127.0.0.2") as one, LiveServer(new_origin, "127.0.0.2") as two:
        assert asyncio.run(main(one.url, two.url)) == [(100, 75)] * 4
