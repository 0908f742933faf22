"""Renditions of one source version share its decode (imgproxy/sharing.py): one decode per
version and JPEG DCT scale, each output byte for byte what a lone request makes (so SSIM 1),
never shared across versions, within limits.inflight_bytes, bounded under a flood."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
from PIL import Image

from imgproxy import ImageProxy, pipeline, render
from imgproxy.job import RenderJob
from imgproxy.messages import ImageRequest
from imgproxy.params import Transform
from imgproxy.render import Decoded, layout
from imgproxy.render.executor import RenderExecutor
from imgproxy.services import Services
from tests.stages.test_load import grainy_jpeg
from tests.support import LiveServer, images, metric, settings_for, write_config
from tests.support.processes import imgproxy_process, sampled_rss, served

# A page's responsive set: three widths, each as WebP and as JPEG q80.
PAGE = [f"w={w}&fm={fm}&q=80" for w in (320, 640, 1280) for fm in ("webp", "jpeg")]


def grainy_png(size: tuple[int, int]) -> bytes:
    """Not DCT-scaled: every rendition of it starts from the same full decode."""
    return images.encode(images.decode(grainy_jpeg(size)), "PNG")


def lone(folder: Path, path: str, queries: list[str]) -> dict[str, bytes]:
    """Each rendition as a request alone makes it: one at a time, nothing kept between."""
    services = Services.build(settings_for(folder, render={"decode_linger": 0}))

    async def each() -> dict[str, bytes]:
        made = {}
        for query in queries:
            response = await pipeline.serve(services, ImageRequest("GET", path, query))
            assert response.status == 200, (query, response.body)
            made[query] = response.body
        await services.close()
        return made

    made = asyncio.run(each())
    assert services.metrics.decodes == len(queries)  # the counter counts every decode
    return made


async def at_once(url: str, path: str, queries: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(*(client.get(f"{path}?{q}") for q in queries))


def concurrently(proxy: ImageProxy, path: str, queries: list[str]) -> dict[str, bytes]:
    """The queries at once, through uvicorn on a loopback port."""
    with LiveServer(proxy) as server:
        replies = asyncio.run(at_once(server.url, path, queries))
    assert [r.status_code for r in replies] == [200] * len(queries)
    return {q: r.content for q, r in zip(queries, replies, strict=True)}


def widths(made: dict[str, bytes]) -> dict[str, tuple[int, int]]:
    return {query: images.decode(body).size for query, body in made.items()}


def test_six_renditions_of_a_new_png_decode_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One decode, and one resize per width: the WebP and the JPEG encode the same pixels."""
    media = tmp_path / "media"
    media.mkdir()
    (media / "page.png").write_bytes(grainy_png((1600, 1000)))
    resized: list[int] = []
    real = layout.transformed

    def counted(decoded: Decoded, t: Transform, job: RenderJob) -> Image.Image:
        resized.append(t.width or 0)
        return real(decoded, t, job)

    monkeypatch.setattr("imgproxy.render.shared.transformed", counted)  # where it is called
    proxy = ImageProxy(settings_for(media))
    shared = concurrently(proxy, "/media/page.png", PAGE)
    assert proxy.services.metrics.decodes == 1
    assert proxy.services.metrics.renders == 6
    assert sorted(resized) == [320, 640, 1280]
    assert shared == lone(media, "/media/page.png", PAGE)
    assert widths(shared)[PAGE[0]] == (320, 200)
    assert widths(shared)[PAGE[-1]] == (1280, 800)


def test_a_page_of_a_new_photo_decodes_it_once_per_dct_scale(tmp_path: Path) -> None:
    """A 6 MP JPEG's 320, 640 and 1280 px need its 1/8, 1/4 and 1/2-scale decodes: one each,
    shared by the WebP and the JPEG of that width. One decode at 1/2 for all six would give
    the 320 px ones other bytes (SSIM 0.961 against their own) for 5 ms less CPU a set."""
    media = tmp_path / "media"
    media.mkdir()
    (media / "photo.jpg").write_bytes(grainy_jpeg((3000, 2000)))
    proxy = ImageProxy(settings_for(media))
    shared = concurrently(proxy, "/media/photo.jpg", PAGE)
    assert proxy.services.metrics.decodes == 3
    assert shared == lone(media, "/media/photo.jpg", PAGE)
    sizes = {(320, 213), (640, 427), (1280, 853)}
    assert set(widths(shared).values()) == sizes


def test_renditions_arriving_during_the_decode_join_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without any linger: five requests that arrive while the first one's decode runs wait
    for it, counted in the render queue, and decode nothing themselves."""
    media = tmp_path / "media"
    media.mkdir()
    (media / "page.png").write_bytes(grainy_png((800, 500)))
    settings = settings_for(media, render={"decode_linger": 0})
    services = Services.build(settings)
    entered, release = threading.Event(), threading.Event()
    real = render.decode

    def gated(data: bytes, job: RenderJob) -> Decoded:
        entered.set()
        release.wait(30)
        return real(data, job)

    def get(query: str) -> asyncio.Task[Any]:
        request = ImageRequest("GET", "/media/page.png", query)
        return asyncio.get_running_loop().create_task(pipeline.serve(services, request))

    async def scenario() -> list[int]:
        assert (await get("w=10")).status == 200  # facts known; its frame is not kept
        monkeypatch.setattr(render, "decode", gated)
        tasks = [get(query) for query in PAGE]
        while not entered.is_set() or services.executor.queued < 5:
            await asyncio.sleep(0.005)
        release.set()
        return [(await task).status for task in tasks]

    assert asyncio.run(scenario()) == [200] * 6
    assert services.metrics.decodes == 2  # w=10's, then the page's
    asyncio.run(services.close())


def test_a_rendition_of_a_decoded_version_runs_before_newer_photos(tmp_path: Path) -> None:
    """Six new photos, each asked as a WebP and a JPEG of one width, all at once, one slot,
    and room to keep one photo's frame (render.linger_bytes). The JPEG of a photo waits for its
    WebP's decode, then runs ahead of the other photos' queued decodes: so one frame is kept
    at a time, and each photo is decoded once. Behind the queue, six kept frames would not
    fit, and the photos past the first would be decoded again."""
    media = tmp_path / "media"
    media.mkdir()
    photo = grainy_jpeg((1600, 1000))
    for n in range(6):  # six sources (the path is part of a version)
        (media / f"{n}.jpg").write_bytes(photo)
    # A 1600 px JPEG's 1/4-scale decode, and its 320 px resize (the JPEG encodes the WebP's).
    kept = (400 * 250 + 320 * 200) * 4
    settings = settings_for(
        media,
        limits={"render_concurrency": 1},
        render={"decode_linger": 0, "linger_bytes": kept + kept // 4},
    )
    services = Services.build(settings)

    async def get(path: str, query: str) -> int:
        return (await pipeline.serve(services, ImageRequest("GET", path, query))).status

    async def scenario() -> list[int]:
        for n in range(6):  # facts known, so every job reaches its decode at once
            assert await get(f"/media/{n}.jpg", "w=10") == 200
        paths = [f"/media/{n}.jpg" for n in range(6)]
        page = [(path, f"w=320&fm={fm}") for fm in ("webp", "jpeg") for path in paths]
        return await asyncio.gather(*(get(path, query) for path, query in page))

    assert asyncio.run(scenario()) == [200] * 12
    assert services.metrics.decodes == 6 + 6  # w=10's, then one for each photo's pair
    assert services.executor._free_bytes == services.executor.budget
    asyncio.run(services.close())


def test_a_frame_a_rendition_waits_for_displaces_one_kept_in_case(tmp_path: Path) -> None:
    """render.linger_bytes holds one frame. A photo asked as a set lingers (10 s); the next
    photo's set then has a rendition waiting for its frame: the lingering frame gives way,
    so the waiting rendition shares the decode. Before, the lingering frame kept its place
    and the waiting one decoded again."""
    media = tmp_path / "media"
    media.mkdir()
    for name in ("a", "b"):
        (media / f"{name}.png").write_bytes(grainy_png((800, 500)))
    frame = 800 * 500 * 4
    settings = settings_for(
        media,
        limits={"render_concurrency": 1},
        render={"decode_linger": 10, "linger_bytes": frame + frame // 2},
    )
    services = Services.build(settings)

    async def page(path: str) -> list[int]:
        requests = [ImageRequest("GET", path, query) for query in ("w=98", "w=99")]
        return [
            r.status
            for r in await asyncio.gather(
                *(pipeline.serve(services, request) for request in requests)
            )
        ]

    async def scenario() -> None:
        assert await page("/media/a.png") == [200, 200]
        assert services.decodes._kept >= frame  # a's frame lingers
        assert await page("/media/b.png") == [200, 200]

    asyncio.run(scenario())
    assert services.metrics.decodes == 2
    asyncio.run(services.close())


def test_a_new_source_is_learned_ahead_of_queued_renders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One slot, held by a render; a render of a known source queues, then a new source
    arrives: its head is read and parsed first (short work), so its renditions reach their
    shared decode while the renders queued before them wait."""
    media = tmp_path / "media"
    media.mkdir()
    for name in ("x", "y", "z"):
        (media / f"{name}.png").write_bytes(grainy_png((400, 250)))
    services = Services.build(settings_for(media, limits={"render_concurrency": 1}))
    entered, release = threading.Event(), threading.Event()
    events: list[str] = []
    real_decode, real_probe = render.decode, render.probe

    def decode(data: bytes, job: RenderJob) -> Decoded:
        events.append("decode")
        entered.set()
        release.wait(30)
        return real_decode(data, job)

    def probe(*args: Any) -> Any:
        events.append("learn")
        return real_probe(*args)

    def get(name: str, query: str) -> asyncio.Task[Any]:
        request = ImageRequest("GET", f"/media/{name}.png", query)
        return asyncio.get_running_loop().create_task(pipeline.serve(services, request))

    async def scenario() -> list[int]:
        for name in ("x", "y"):  # facts known
            assert (await get(name, "w=10")).status == 200
        monkeypatch.setattr(render, "decode", decode)
        monkeypatch.setattr(render, "probe", probe)
        events.clear()
        tasks = [get("x", "w=20")]
        while not entered.is_set():
            await asyncio.sleep(0.005)
        tasks.append(get("y", "w=20"))
        while services.executor.queued < 1:
            await asyncio.sleep(0.005)
        tasks.append(get("z", "w=20"))
        while services.executor.queued < 2:
            await asyncio.sleep(0.005)
        release.set()
        return [(await task).status for task in tasks]

    assert asyncio.run(scenario()) == [200] * 3
    assert events == ["decode", "learn", "decode", "decode"]  # x, z's head, then y, z
    asyncio.run(services.close())


def test_a_source_rewritten_between_two_requests_is_never_shared(tmp_path: Path) -> None:
    """The first version's frame lingers (two renditions at once made it a set), but the
    next request sees a new version (its stat comes first, SPEC §6) and decodes that."""
    media = tmp_path / "media"
    media.mkdir()
    photo = media / "photo.png"
    first = grainy_png((800, 500))
    photo.write_bytes(first)
    proxy = ImageProxy(settings_for(media, render={"decode_linger": 10}))
    with LiveServer(proxy) as server:
        pair = asyncio.run(
            at_once(server.url, "/media/photo.png", ["w=400&fm=png", "w=400&fm=webp"])
        )
        before = pair[1]
        decoded = proxy.services.metrics.decodes
        again = httpx.get(f"{server.url}/media/photo.png?w=400&fm=jpeg", timeout=30)
        assert proxy.services.metrics.decodes == decoded  # the same version: shared
        inverted = 255 - np.asarray(images.decode(first))
        photo.write_bytes(images.encode(Image.fromarray(inverted), "PNG"))
        os.utime(photo, ns=(1, 1))  # a new version even on a coarse-mtime file system
        after = httpx.get(f"{server.url}/media/photo.png?w=400&fm=jpeg&q=80", timeout=30)
    assert before.status_code == again.status_code == after.status_code == 200
    assert proxy.services.metrics.decodes == decoded + 1
    assert (
        after.content
        == lone(media, "/media/photo.png", ["w=400&fm=jpeg&q=80"])["w=400&fm=jpeg&q=80"]
    )
    old = np.asarray(images.decode(again.content), dtype=float).mean()
    new = np.asarray(images.decode(after.content), dtype=float).mean()
    assert abs((old + new) - 255) < 8  # the inverted image's pixels, not the first's


def test_a_kept_frame_counts_in_the_inflight_budget_and_never_passes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A budget one render fills: the frame cannot be kept past its leader (the jobs after
    it decode alone, or wait), and the budget's free bytes never go below zero."""
    media = tmp_path / "media"
    media.mkdir()
    (media / "page.png").write_bytes(grainy_png((1600, 1000)))
    lowest: list[int] = []
    real_take, real_give = RenderExecutor.take_now, RenderExecutor._give

    def take_now(self: RenderExecutor, nbytes: int) -> bool:
        taken = real_take(self, nbytes)
        lowest.append(self._free_bytes)
        return taken

    def give(self: RenderExecutor, share: int) -> None:
        real_give(self, share)
        lowest.append(self._free_bytes)

    monkeypatch.setattr(RenderExecutor, "take_now", take_now)
    monkeypatch.setattr(RenderExecutor, "_give", give)
    budget = 8 * 1024 * 1024  # less than one render's share: each runs alone
    proxy = ImageProxy(settings_for(media, limits={"inflight_bytes": budget}))
    shared = concurrently(proxy, "/media/page.png", PAGE)
    executor = proxy.services.executor
    assert min(lowest) >= 0
    assert executor._free_bytes == budget  # everything given back
    assert proxy.services.metrics.decodes > 1  # fell back: no frame could be kept
    assert shared == lone(media, "/media/page.png", PAGE)

    lowest.clear()
    roomy = ImageProxy(
        settings_for(media, limits={"inflight_bytes": 256 << 20}, render={"decode_linger": 10})
    )
    made = concurrently(roomy, "/media/page.png", ["w=98", "w=99"])  # a set: its frame lingers
    sizes = [images.decode(body).size for body in made.values()]
    kept = (1600 * 1000 + sum(w * h for w, h in sizes)) * 4  # the frame and both resized
    assert roomy.services.executor._free_bytes == (256 << 20) - kept  # counted while kept


def test_many_new_sources_each_asked_as_a_page_stay_bounded(tmp_path: Path) -> None:
    """20 new photos x 6 renditions at once, 2 slots: no 500, and the worker's peak RSS
    grows by what the slots and render.linger_bytes allow, not by the 20 sources' decodes."""
    media = tmp_path / "media"
    media.mkdir()
    photo = grainy_jpeg((3000, 2000))
    sources = 20
    for n in range(sources + 1):
        (media / f"p{n}.jpg").write_bytes(photo)  # a version per path
    linger_bytes = 8 << 20
    limits = {"render_concurrency": 2, "render_queue": 200}
    config = write_config(tmp_path, media, limits=limits, render={"linger_bytes": linger_bytes})
    with served(config) as serving:
        base = serving.url
        server = psutil.Process(serving.process.pid)
        assert httpx.get(f"{base}/media/p0.jpg?w=300", timeout=60).status_code == 200
        resting = server.memory_info().rss

        async def burst() -> list[int]:
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
                replies = await asyncio.gather(
                    *(client.get(f"/media/p{n + 1}.jpg?{q}") for n in range(sources) for q in PAGE)
                )
            return [reply.status_code for reply in replies]

        with sampled_rss(server) as peak:
            statuses = asyncio.run(burst())
    assert statuses == [200] * (6 * sources)
    # What the server reserves for its largest render (render/memory.py): the source, a
    # 1/2-scale decode at 12 bytes a pixel and a 1280 px WebP at 24; two slots, and the
    # frames and pixels kept for other renditions.
    per_render = len(photo) + 1500 * 1000 * 12 + 1280 * 853 * 24
    grown = peak[0] - resting
    assert grown < 2 * per_render + linger_bytes, grown
    frames = sources * (1500 * 1000 + 750 * 500 + 375 * 250) * 4  # every source's decodes
    assert frames > 2 * per_render + linger_bytes  # the bound tells them apart


def test_operators_see_decodes_beside_renders(media: Path, tmp_path: Path) -> None:
    """`imgproxy_decodes_total` in /metrics: two renditions of one size at once (a set: the
    frame lingers), then a third: three renders, at most two decodes."""
    media.joinpath("large.jpg").write_bytes(grainy_jpeg((2400, 1600)))
    config = write_config(tmp_path, media, render={"decode_linger": 10})
    with imgproxy_process(config) as base:
        pair = asyncio.run(at_once(base, "/media/large.jpg", ["w=120&fm=webp", "w=120&fm=png"]))
        assert [reply.status_code for reply in pair] == [200, 200]
        assert httpx.get(f"{base}/media/large.jpg?w=120&fm=jpeg").status_code == 200
        assert metric(base, "imgproxy_renders_total") == 3
        assert metric(base, "imgproxy_decodes_total") in (1, 2)


def test_a_job_larger_than_the_free_bytes_never_waits_for_a_kept_frame(media: Path) -> None:
    """A decode lingering for its next renditions keeps some of the in-flight budget; a job
    of the same version and scale whose working memory is the whole budget (a padded 4096 px
    AVIF) joined it and waited, for ever, for the bytes its own flight kept for it (the red
    team's wedge: the worker never rendered again). Kept bytes are given back whenever a
    render waits: each request answers, many at once, and the budget is whole after."""
    media.joinpath("photo.jpg").write_bytes(images.jpeg((640, 480)))
    limits = {"inflight_bytes": 64 * 1024 * 1024, "render_concurrency": 1}
    services = Services.build(settings_for(media, limits=limits, render={"decode_linger": 5}))
    executor = services.executor
    big = "pad=1024&fm=avif"  # 2688x2528 AVIF: an estimate past the whole 64 MiB

    async def ask(query: str) -> int:
        request = ImageRequest("GET", "/media/photo.jpg", query, {})
        return (await asyncio.wait_for(pipeline.serve(services, request), 30)).status

    async def scenario() -> list[int]:
        # Two at once: a set, whose frame lingers (decode_linger = 5 s).
        assert list(await asyncio.gather(ask("w=640&pad=9"), ask("w=640&pad=8"))) == [200, 200]
        assert executor._free_bytes < executor.budget
        first = await ask(big)  # alone, after the lingering frame
        many = await asyncio.gather(*(ask(q) for q in [big, "w=639", big, "w=638&pad=3"] * 3))
        return [first, *many]

    statuses = asyncio.run(scenario())
    assert set(statuses) == {200}, statuses
    assert executor.queued == 0 and executor.running == 0
    asyncio.run(services.close())


def test_a_source_asked_once_keeps_no_frame_past_its_render(media: Path) -> None:
    """Most cold traffic asks a new source once: nothing of it lingers, and 16 new sources
    at once leave the whole in-flight budget free; asked again, one after another, still
    nothing. Two renditions of one at once make it a set: its frame lingers, counted in the
    budget, and a later rendition shares it."""
    for n in range(16):
        media.joinpath(f"new-{n}.jpg").write_bytes(images.jpeg((800 + n, 600)))
    services = Services.build(settings_for(media, render={"decode_linger": 10}))
    executor = services.executor

    async def ask(path: str, query: str) -> int:
        request = ImageRequest("GET", path, query, {})
        return (await pipeline.serve(services, request)).status

    async def scenario() -> None:
        paths = [f"/media/new-{n}.jpg" for n in range(16)]
        assert await asyncio.gather(*(ask(p, "w=100") for p in paths)) == [200] * 16
        assert executor._free_bytes == executor.budget  # nothing kept
        assert services.metrics.decodes == 16
        assert await ask(paths[0], "w=101") == 200  # one after another: no set
        assert executor._free_bytes == executor.budget
        assert list(await asyncio.gather(ask(paths[0], "w=102"), ask(paths[0], "w=103"))) == [
            200,
            200,
        ]
        assert executor._free_bytes < executor.budget  # a set: its frame lingers, counted
        decoded = services.metrics.decodes
        assert await ask(paths[0], "w=104") == 200
        assert services.metrics.decodes == decoded  # shared the lingering frame
        await services.close()

    asyncio.run(scenario())
