"""Blocking work -> a bounded thread pool, admitted before any source byte is read.

A request that needs a source's bytes first takes a Slot in its store's lane: one of
`render_concurrency` places of that store and its share of the `inflight_bytes` budget. Up
to `render_queue` requests of a store wait for one, holding nothing; beyond that the request
is refused at once with 503 + Retry-After, before it reads a byte (SPEC §11). So memory is
bounded by the slots, not by the queue, and nothing piles up latency.

A slot reads its source, then runs the CPU work on one of `render_concurrency` threads that
every store shares, taken only for that work (SPEC §11.1): a store whose bytes stall holds
its own places and bytes, never a thread, so it delays only its own requests.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

from imgproxy.errors import Overloaded, Undecodable
from imgproxy.forks import after_fork

T = TypeVar("T")


class Slot:
    """One admitted request's place and bytes; `run` hands work to a render thread, taken
    for that work alone."""

    __slots__ = ("_cpu", "_pool", "_running")

    def __init__(self, pool: ThreadPoolExecutor, cpu: asyncio.Semaphore) -> None:
        self._pool = pool
        self._cpu = cpu
        self._running: Future[object] | None = None

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.wrap_future(await self._start(fn, args))

    async def within(self, seconds: float, fn: Callable[..., T], *args: object) -> T:
        """`run`, answering 422 once `seconds` pass on its thread (limits.max_render_seconds).
        The work checks the same budget itself and stops at its next check; until its thread
        is done the slot and the thread stay taken, so abandoned work never oversubscribes
        the CPU."""
        future = await self._start(fn, args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), seconds)
        except TimeoutError:
            raise Undecodable(f"the image took more than {seconds:g} s to render") from None

    async def _start(self, fn: Callable[..., T], args: tuple[object, ...]) -> Future[T]:
        """A thread, once one is free: given back when the work is done, not when its
        request stops waiting for it."""
        await self._cpu.acquire()
        try:
            future = self._pool.submit(fn, *args)
        except BaseException:
            self._cpu.release()
            raise
        loop = asyncio.get_running_loop()
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._cpu.release))
        self._running = future  # type: ignore[assignment]
        return future

    def busy(self) -> Future[object] | None:
        """The thread's work if it outlived its request (cancelled while it ran)."""
        running = self._running
        return running if running is not None and not running.done() else None


class _Lane:
    """One store's `concurrency` places, and how many of its requests hold or await one. A
    place given back goes first to a request that carries on work already begun (`first`:
    a rendition of a version just decoded, whose frame is kept until it runs), then to the
    others in their order of arrival."""

    __slots__ = ("admitted", "first", "free", "waiting")

    def __init__(self, concurrency: int) -> None:
        self.free = concurrency
        self.admitted = 0
        self.first: deque[asyncio.Future[None]] = deque()
        self.waiting: deque[asyncio.Future[None]] = deque()

    async def acquire(self, *, first: bool) -> None:
        if self.free and not self.first and (first or not self.waiting):
            self.free -= 1
            return
        line = self.first if first else self.waiting
        turn = asyncio.get_running_loop().create_future()
        line.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.release()  # given, then cancelled before it could be used
            else:
                line.remove(turn)
            raise

    def release(self) -> None:
        for line in (self.first, self.waiting):
            while line:
                turn = line.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self.free += 1


class RenderExecutor:
    def __init__(self, *, concurrency: int, queue: int, inflight_bytes: int) -> None:
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="imgproxy-render")
        # Threads do not survive fork: a child (gunicorn --preload) gets a pool of its own.
        after_fork(self._new_pool)
        self.concurrency = concurrency
        self.capacity = concurrency + queue
        self.budget = inflight_bytes
        self._free_bytes = inflight_bytes
        self._cpu = asyncio.Semaphore(concurrency)  # the threads' turns, shared by every lane
        self._lanes: dict[str, _Lane] = {}  # by store name: as many as the configured stores
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._reclaimers: list[Callable[[], None]] = []
        self._sending: dict[int, list[Any]] = {}  # id(body) -> [body, responses sending it]
        self._admitted = 0  # waiting or holding a slot, in any lane
        self.running = 0

    @property
    def queued(self) -> int:
        return self._admitted - self.running

    @asynccontextmanager
    async def slot(
        self, nbytes: int, *, lane: str = "", first: bool = False
    ) -> AsyncIterator[Slot]:
        """A place in `lane` (the store's name) and `nbytes` of the in-flight budget, or 503
        at once when `render_queue` requests of that lane already wait. `first`: ahead of
        the requests that have begun nothing yet."""
        place = self._admit(lane)
        try:
            await place.acquire(first=first)
        except BaseException:
            place.admitted -= 1
            self._admitted -= 1
            raise
        try:
            share = await self._take(nbytes)
        except BaseException:
            self._free_slot(place)
            raise
        self.running += 1
        slot = Slot(self._pool, self._cpu)
        try:
            yield slot
        finally:
            self.running -= 1
            still = slot.busy()
            if still is None:
                self._free_slot(place)
                self._give(share)
            else:
                # A cancelled request's work still occupies its thread and memory: the slot
                # is free only when the thread is.
                loop = asyncio.get_running_loop()
                still.add_done_callback(
                    lambda _: loop.call_soon_threadsafe(self._free_late, place, share)
                )

    def can_start(self, lane: str, nbytes: int) -> bool:
        """Whether a request of `lane` needing `nbytes` would start now: a place with none
        waiting ahead, its bytes free and a thread idle. A free place alone is not enough: a
        place of one store is free while another store's renders hold every thread, or a
        large decode holds the in-flight budget, and the request then waits for those."""
        place = self._lanes.get(lane)
        if place is not None and not (place.free and not place.first and not place.waiting):
            return False
        share = min(max(nbytes, 0), self.budget)
        return not self._waiters and self._free_bytes >= share and not self._cpu.locked()

    @asynccontextmanager
    async def queued_for(self, lane: str) -> AsyncIterator[None]:
        """A place in `lane`'s queue while a request first waits for another's work (a
        shared decode) before it asks for a slot: it counts as queued, 503 past the queue."""
        place = self._admit(lane)
        try:
            yield
        finally:
            place.admitted -= 1
            self._admitted -= 1

    def _admit(self, lane: str) -> _Lane:
        place = self._lanes.get(lane) or self._lanes.setdefault(lane, _Lane(self.concurrency))
        if place.admitted >= self.capacity:
            raise Overloaded("too many images are being rendered; retry shortly")
        place.admitted += 1
        self._admitted += 1
        return place

    @asynccontextmanager
    async def reserve(self, nbytes: int) -> AsyncIterator[None]:
        """`nbytes` of the in-flight budget and no thread: for an original's bytes."""
        share = await self._take(nbytes)
        try:
            yield
        finally:
            self._give(share)

    def take_now(self, nbytes: int) -> bool:
        """`nbytes` of the in-flight budget if free now and nobody waits (they come first),
        else nothing: for memory that is kept only if it costs no render a wait. Given back
        with `give_back`."""
        if self._waiters or self._free_bytes < nbytes:
            return False
        self._free_bytes -= nbytes
        return True

    def give_back(self, nbytes: int) -> None:
        self._give(nbytes)

    @contextmanager
    def sending(self, body: bytes) -> Iterator[None]:
        """`body`, a response's, counted in the in-flight budget while it is sent, so that a
        client slow to read it holds its bytes inside the budget (SPEC §11.1): renders wait
        for them. They exist already: counted at once, past the budget if need be, and once
        however many responses send the same bytes (a memory hit's)."""
        key = id(body)
        held = self._sending.get(key)
        if held is None:
            self._sending[key] = held = [body, 0]
            self._free_bytes -= len(body)
        held[1] += 1
        try:
            yield
        finally:
            held[1] -= 1
            if not held[1]:
                del self._sending[key]
                self._give(len(body))

    def on_wait(self, reclaim: Callable[[], None]) -> None:
        """`reclaim` gives back what `take_now` kept, and is called whenever a request has to
        wait for bytes: kept memory is spare memory, never a reason to wait."""
        self._reclaimers.append(reclaim)

    async def _take(self, nbytes: int) -> int:
        """First come, first served. A source bigger than the whole budget takes the whole
        budget: it then runs alone rather than never."""
        share = min(max(nbytes, 0), self.budget)
        if not self._waiters and self._free_bytes >= share:
            self._free_bytes -= share
            return share
        granted = asyncio.get_running_loop().create_future()
        self._waiters.append((share, granted))
        for reclaim in self._reclaimers:
            reclaim()  # may grant this request at once
        try:
            await granted
        except BaseException:
            if granted.done() and not granted.cancelled():
                self._give(share)  # granted, then cancelled before it could be used
            elif (share, granted) in self._waiters:
                self._waiters.remove((share, granted))
                self._give(0)  # it may have been the head: the ones behind it may fit now
            raise
        return share

    def _give(self, share: int) -> None:
        self._free_bytes += share
        while self._waiters and self._waiters[0][0] <= self._free_bytes:
            wanted, granted = self._waiters.popleft()
            if not granted.done():
                self._free_bytes -= wanted
                granted.set_result(None)

    def _free_slot(self, place: _Lane) -> None:
        place.admitted -= 1
        self._admitted -= 1
        place.release()

    def _free_late(self, place: _Lane, share: int) -> None:
        self._free_slot(place)
        self._give(share)

    def _new_pool(self) -> None:
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="imgproxy-render")

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
