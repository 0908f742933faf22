"""`/readyz`: whether this worker can serve, for a load balancer. `/healthz` says only that
the process answers; this asks each store and each tier outside the process to answer a
cheap question within `server.ready_timeout`: a store the stat of a path that need not exist
(its NotFound is an answer), a tier the read of a key never written.

Every part is asked at once, so an answer comes within the deadline whatever fails; and
requests that arrive while a check runs share it, so a flood of probes makes no more calls
to the stores and tiers than one probe does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable
from dataclasses import dataclass

from imgproxy.cache import Probing
from imgproxy.errors import NotApproved, NotFound
from imgproxy.services import Services

# A path no one needs to have (a NotFound is an answer, and so is a file), in digits: a sql
# store keyed by integers refuses any other name without asking its database.
PROBE_PATH = "0"


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    parts: dict[str, str]  # "stores.media", "cache.redis"... -> "ok" or why not

    def body(self) -> bytes:
        return json.dumps({"ready": self.ready, "parts": self.parts}, indent=1).encode()


class ReadinessCheck:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.deadline = services.settings.server.ready_timeout
        self._running: asyncio.Task[Readiness] | None = None

    async def __call__(self) -> Readiness:
        """This check's answer, or the one under way when it was asked."""
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().create_task(self._check())
        return await asyncio.shield(self._running)

    async def _check(self) -> Readiness:
        questions: dict[str, Awaitable[object]] = {
            f"stores.{name}": _stat(mount.store.stat(PROBE_PATH))
            for name, mount in self.services.mounts.items()
        }
        for tier in self.services.cache.tiers:
            if isinstance(tier, Probing):
                questions[f"cache.{tier.name}"] = tier.probe()
        names = list(questions)
        answers = await asyncio.gather(*(self._within(questions[name]) for name in names))
        parts = dict(zip(names, answers, strict=True))
        return Readiness(all(answer == "ok" for answer in answers), parts)

    async def _within(self, question: Awaitable[object]) -> str:
        try:
            await asyncio.wait_for(question, self.deadline)
        except TimeoutError:
            return f"no answer within {self.deadline:g} s (server.ready_timeout)"
        except Exception as exc:  # what failed is the answer: named, never raised
            detail = getattr(exc, "detail", "") or str(exc) or "no detail"
            return f"failed: {type(exc).__name__}: {detail}"[:300]
        return "ok"


async def _stat(stat: Awaitable[object]) -> None:
    with contextlib.suppress(NotFound, NotApproved):  # the store answered
        await stat
