"""The render executor's byte budget: first come first served, and a cancelled waiter at the
head of the line lets the ones behind it through at once."""

from __future__ import annotations

import asyncio

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


def test_damaged_or_absurd_facts_are_not_believed() -> None:
    good = SourceInfo("JPEG", "image/jpeg", 64, 48, 1, False, 1000)
    assert SourceInfo.from_json(good.to_json()) == good
    assert SourceInfo.from_json(b"[" * 100_000 + b"]" * 100_000) is None  # RecursionError
    negative = good.to_json().replace(b'"width":64', b'"width":-64')
    assert SourceInfo.from_json(negative) is None
