"""Still renditions of one source version -> one decode per DCT scale (SPEC §11): the jobs
that arrive while a version is read and decoded, or within `render.decode_linger` seconds
after, start from one decoded frame and make exactly the bytes a lone render makes.

The first job of a version and scale leads: it takes a render slot, reads and decodes. The
others wait holding only their place in the queue (`limits.render_queue`: 503 beyond), then
each takes a slot of its own, ahead of requests that have begun nothing (else the kept frames
waited behind 30 other photos and half were dropped), and finishes on its own thread. A frame
kept past its leader's slot holds its bytes of `limits.inflight_bytes`, within
`render.linger_bytes`, or is dropped and they decode alone. It lingers only for a version
asked as a set (two jobs at once): a source asked once, as most cold traffic is, keeps
nothing past its render. With `peers` (server/peers.py), a job whose decode another worker
leads is rendered there when this worker could not start it at once. Jobs needing another
DCT scale do not share: a 320 px rendition derived from a 1/2-scale decode differs from its
own 1/8-scale one (SSIM 0.96) and saves little CPU.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from imgproxy import render
from imgproxy.errors import ImageProxyError
from imgproxy.job import RenderJob
from imgproxy.memo import Memo
from imgproxy.metrics import Metrics
from imgproxy.params import Gravity
from imgproxy.render import Rendered
from imgproxy.render.executor import RenderExecutor, Slot
from imgproxy.render.memory import dct_scale
from imgproxy.render.shared import SharedFrame
from imgproxy.source import Source, Sources

# The version (store, path, version), the DCT scale, and what else a decode depends on.
Key = tuple[str, str, str, int, tuple[str, ...] | None, int, int]
SETS = 4096  # versions remembered as sets (by hash: a collision costs a linger, no bytes)


class Peers(Protocol):
    """The other processes of one server, each with decodes of its own (`imgproxy serve`'s
    workers: server/peers.py). A job whose decode another of them leads is rendered there,
    so a page's renditions share one decode whichever worker each reached."""

    def claim(self, key: Key) -> None:
        """This process leads `key`'s decode, and takes its jobs until `release`."""

    def release(self, key: Key) -> None: ...

    async def render(self, key: Key, source: Source, job: RenderJob) -> Rendered | None:
        """The job rendered by the process that leads `key`; None when none other does,
        or it could not take the job (then it is rendered here). Its errors are the job's."""


class _Flight:
    __slots__ = ("decoded", "frame", "kept", "key", "leading", "lingering", "waiting")

    def __init__(self, key: Key) -> None:
        self.key = key
        # None once decoded (or failed before decoding); the decode's own error for a
        # corrupt or oversized image, which every job of the version would meet alike.
        self.decoded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.decoded.add_done_callback(_retrieved)
        self.frame: SharedFrame | None = None
        self.leading = True  # the leader's slot (which counts the frame) is still held
        self.lingering = False
        self.waiting = 0  # jobs that will take the frame once they have a slot
        self.kept = 0  # bytes of the in-flight budget held for the frame past its leader


class SharedDecodes:
    def __init__(
        self,
        executor: RenderExecutor,
        sources: Sources,
        metrics: Metrics,
        *,
        linger: float,
        linger_bytes: int,
    ) -> None:
        self._executor = executor
        self._sources = sources
        self._metrics = metrics
        self._linger = linger
        self._linger_bytes = linger_bytes
        self._kept = 0
        self._flights: dict[Key, _Flight] = {}
        self._active: dict[int, int] = {}  # a version's hash -> its jobs now in `render`
        self._sets: Memo[int, bool] = Memo(SETS)
        self.peers: Peers | None = None
        executor.on_wait(self._reclaim)

    @staticmethod
    def shares(job: RenderJob) -> bool:
        """Still renders only: an animation decodes every frame, a placeholder its own tiny
        scale, and an unknown g=smart point is found on a frame of its own first; a trim's
        output size, known only from its pixels, is judged against each job's own format; a
        watermarked job reads its mark in its own slot."""
        t = job.transform
        smart = t.gravity is Gravity.SMART and t.focal is None
        alone = job.animate or job.output.is_placeholder or job.mark is not None
        return not (alone or smart or t.trim is not None)

    async def render(
        self, source: Source, job: RenderJob, *, ask: bool = True
    ) -> tuple[Rendered, float]:
        """The rendition, and the seconds spent reading its source (0 when it started from
        another job's decode, here or in a peer). `ask=False`: a job a peer sent, never sent
        on again."""
        file = source.file
        version = hash((source.mount.name, file.path, file.version))
        active = self._active.get(version, 0)
        if active:
            self._sets[version] = True
        self._active[version] = active + 1
        try:
            return await self._render(source, job, ask)
        finally:
            if self._active[version] == 1:
                del self._active[version]
            else:
                self._active[version] -= 1

    async def _render(self, source: Source, job: RenderJob, ask: bool) -> tuple[Rendered, float]:
        file = source.file
        key = (
            source.mount.name,
            file.path,
            file.version,
            dct_scale(source.info, job.transform),
            job.decoders,
            job.max_pixels,
            job.max_jpeg_scans,
        )
        # To a peer only from a worker that could not start the job (see the module's doc).
        peers, lane = self.peers, source.mount.name
        if (
            ask
            and peers
            and key not in self._flights
            and not self._executor.can_start(lane, render.working_bytes(source.info, job))
        ):
            rendered = await peers.render(key, source, job)
            if rendered is not None:
                return rendered, 0.0
        flight = self._flights.get(key)
        if flight is None:
            return await self._lead(source, job, _Flight(key))
        flight.waiting += 1
        waiting = True
        try:
            async with self._executor.queued_for(source.mount.name):
                await asyncio.shield(flight.decoded)  # the leader's decode error is this job's
            async with self._slot(source, job, first=True) as slot:
                frame, waiting = flight.frame, False
                flight.waiting -= 1
                self._settle(flight)
                if frame is None:  # dropped meanwhile: alone, in the slot it holds
                    return await self._decode(slot, source, job, None)
                return await self._finish(slot, job, frame, flight), 0.0
        finally:
            if waiting:
                flight.waiting -= 1
                self._settle(flight)

    async def _lead(
        self, source: Source, job: RenderJob, flight: _Flight
    ) -> tuple[Rendered, float]:
        self._flights[flight.key] = flight
        if self.peers is not None:
            self.peers.claim(flight.key)
        try:
            async with self._slot(source, job) as slot:
                return await self._decode(slot, source, job, flight)
        finally:
            if not flight.decoded.done():
                flight.decoded.set_result(None)  # refused or failed before its decode
            flight.leading = False
            self._keep(flight)
            self._settle(flight)

    async def _decode(
        self, slot: Slot, source: Source, job: RenderJob, flight: _Flight | None
    ) -> tuple[Rendered, float]:
        began = time.perf_counter()
        data = await self._sources.read(source)
        fetched = time.perf_counter()
        try:
            decoded = await slot.within(job.budget, render.decode, data, job)
        except ImageProxyError as error:
            if flight is not None:
                flight.decoded.set_exception(error)
            raise
        del data  # the decoded frame is all the jobs need now
        self._metrics.decoded()
        frame = SharedFrame(decoded)
        if flight is not None:
            flight.frame = frame
            flight.decoded.set_result(None)
        seconds = time.perf_counter() - fetched
        rendered = await self._finish(slot, job, frame, flight)
        timings = {"decode": seconds, **rendered.timings}
        return dataclasses.replace(rendered, timings=timings), fetched - began

    async def _finish(
        self, slot: Slot, job: RenderJob, frame: SharedFrame, flight: _Flight | None
    ) -> Rendered:
        """The job from the frame; its transform's pixels are kept for the flight's other
        jobs of that transform (a WebP beside a JPEG) while their bytes can be counted."""
        key = frame.enter(job.transform)
        try:
            return await slot.within(job.budget, frame.render, job, key)
        finally:
            made = frame.leave(key)
            if made and not (
                flight is not None and flight.frame is frame and self._count(flight, made)
            ):
                frame.drop(key)

    def _slot(
        self, source: Source, job: RenderJob, *, first: bool = False
    ) -> AbstractAsyncContextManager[Slot]:
        nbytes = render.working_bytes(source.info, job)
        return self._executor.slot(nbytes, lane=source.mount.name, first=first)

    def _keep(self, flight: _Flight) -> None:
        """The frame past its leader's slot, for the jobs waiting for theirs and any that
        arrive while it lingers (a version asked as a set), if its bytes are free at once
        (else they decode alone)."""
        frame = flight.frame
        linger = self._linger > 0 and hash(flight.key[:3]) in self._sets
        if frame is None or not (flight.waiting or linger):
            return
        if not self._count(flight, frame.nbytes):
            flight.frame = None
            return
        if linger:
            flight.lingering = True
            asyncio.get_running_loop().call_later(self._linger, self._lingered, flight)

    def _count(self, flight: _Flight, nbytes: int) -> bool:
        """`nbytes` more kept for the flight, if within linger_bytes and free at once. Bytes
        a job waits for come before bytes kept in case: lingering frames make room for them
        (under 32 clients a page's lingering frames had filled linger_bytes, and a fifth of
        the renditions waiting for a frame found it dropped)."""
        if flight.waiting:
            for other in list(self._flights.values()):
                if self._kept + nbytes <= self._linger_bytes:
                    break
                if other is not flight and other.kept and not (other.waiting or other.leading):
                    self._drop(other)
        if self._kept + nbytes > self._linger_bytes or not self._executor.take_now(nbytes):
            return False
        self._kept += nbytes
        flight.kept += nbytes
        return True

    def _reclaim(self) -> None:
        """A render waits for bytes: every kept frame gives its bytes back at once. Kept bytes
        never make a render wait, least of all a job of their own flight, which would wait
        for the bytes its flight holds for it (a 4096 px AVIF joining a lingering decode
        did, for ever); a job that then finds its flight's frame gone decodes alone."""
        for flight in list(self._flights.values()):
            if flight.kept:
                self._drop(flight)

    def _drop(self, flight: _Flight) -> None:
        flight.frame = None
        self._kept -= flight.kept
        kept, flight.kept = flight.kept, 0
        self._executor.give_back(kept)
        self._settle(flight)

    def _lingered(self, flight: _Flight) -> None:
        flight.lingering = False
        self._settle(flight)

    def _settle(self, flight: _Flight) -> None:
        """New jobs stop joining a flight with no frame to share once its leader is done;
        a frame no job holds or awaits is dropped, and its bytes given back."""
        if flight.leading:
            return
        held = flight.lingering or flight.waiting
        if (flight.frame is None or not held) and self._flights.get(flight.key) is flight:
            del self._flights[flight.key]
            if self.peers is not None:
                self.peers.release(flight.key)
        if not held:
            flight.frame = None
            if flight.kept:
                self._kept -= flight.kept
                self._executor.give_back(flight.kept)
                flight.kept = 0


def _retrieved(done: asyncio.Future[None]) -> None:
    if not done.cancelled():
        done.exception()  # a decode error no other job awaited is not "never retrieved"
