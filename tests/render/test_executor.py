"""The render executor's byte budget: first come first served, and a cancelled waiter at the
head of the line lets the ones behind it through at once. Each store waits in its own lane,
where work already begun goes first; the render threads are shared and taken for CPU work
alone."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest

from imgproxy.errors import Overloaded
from imgproxy.facts import SourceInfo
from imgproxy.render.executor import RenderExecutor


def test_a_cancelled_head_waiter_lets_a_smaller_one_through() -> None:
    async def scenario() -> None:
        executor = RenderExecutor(concurrency=1, queue=4, inflight_bytes=100)
        async with executor.reserve(80):
            big = asyncio.create_task(_hold(executor, 100))
            await asyncio.sleep(0.01)
            small = asyncio.create_task(_hold(executor, 10))
            await asyncio.sleep(0.01)
            assert not small.done()  # first come, first served: behind the big one
            big.cancel()
            await asyncio.wait_for(small, 1)  # 20 bytes were free all along
        executor.shutdown()

    asyncio.run(scenario())


async def _hold(executor: RenderExecutor, nbytes: int) -> None:
    async with executor.reserve(nbytes):
        pass


def test_a_place_given_back_goes_first_to_work_already_begun() -> None:
    """`first` waiters (renditions of a version just decoded) take freed places before the
    requests that arrived earlier but have begun nothing; each line keeps its own order, and
    a cancelled waiter gives up its turn without losing a place."""

    async def scenario() -> list[str]:
        executor = RenderExecutor(concurrency=1, queue=8, inflight_bytes=100)
        order: list[str] = []

        async def take(name: str, first: bool) -> None:
            async with executor.slot(1, first=first):
                order.append(name)
                await asyncio.sleep(0.01)

        async with executor.slot(1):  # the one place, held while the others queue
            tasks = [asyncio.create_task(take("new-1", False))]
            await asyncio.sleep(0.01)
            tasks.append(asyncio.create_task(take("new-2", False)))
            gone = asyncio.create_task(take("gone", True))
            await asyncio.sleep(0.01)
            tasks += [asyncio.create_task(take(f"begun-{n}", True)) for n in (1, 2)]
            await asyncio.sleep(0.01)
            gone.cancel()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        async with executor.slot(1):  # every place came back
            pass
        assert executor.queued == 0
        executor.shutdown()
        return order

    assert asyncio.run(scenario()) == ["begun-1", "begun-2", "new-1", "new-2"]


def test_damaged_or_absurd_facts_are_not_believed() -> None:
    good = SourceInfo("JPEG", "image/jpeg", 64, 48, 1, False, 1000, 0)
    assert SourceInfo.from_json(good.to_json()) == good
    assert SourceInfo.from_json(b"[" * 100_000 + b"]" * 100_000) is None  # RecursionError
    negative = good.to_json().replace(b'"width":64', b'"width":-64')
    assert SourceInfo.from_json(negative) is None


def test_a_stalled_lane_holds_no_thread_and_the_lanes_share_the_threads() -> None:
    """A store whose read stalls holds its own places, never a render thread: another store
    renders at once, the stalled store's next request is refused (its queue is full), and
    the CPU work of all stores together never runs on more than `concurrency` threads."""
    running, most = [0], [0]
    lock = threading.Lock()

    def work() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    async def render(executor: RenderExecutor, lane: str) -> None:
        async with executor.slot(10, lane=lane) as slot:
            await slot.within(5, work)

    async def scenario() -> None:
        executor = RenderExecutor(concurrency=1, queue=0, inflight_bytes=100)
        reading = asyncio.Event()

        async def stalled() -> None:
            async with executor.slot(10, lane="web"):
                reading.set()
                await asyncio.sleep(30)  # a store's bytes that never come

        stuck = asyncio.create_task(stalled())
        await reading.wait()
        await asyncio.wait_for(render(executor, "media"), 2)
        with pytest.raises(Overloaded):
            await render(executor, "web")
        await asyncio.gather(*(render(executor, f"store{n}") for n in range(6)))
        assert most[0] == 1
        stuck.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stuck
        assert executor.running == executor.queued == 0
        executor.shutdown()

    asyncio.run(scenario())
