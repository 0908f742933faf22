"""Cache work outside a request: purge one source's renditions, warm presets for one source
or a whole store (the CLI, `ImageProxy.warm`/`.purge`, the Django lifecycle).

All of it runs the services and pipeline it is given, so what it writes is what the server
reads; given a serving proxy's services, it fills and clears that proxy's memory tier too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from imgproxy import cdn, pipeline
from imgproxy.conditional import surrogate_key
from imgproxy.errors import ConfigError
from imgproxy.messages import ImageRequest, ImageResponse
from imgproxy.params import AUTO, expand_preset
from imgproxy.services import Services
from imgproxy.stores import Listable
from imgproxy.urls import url_for

# fm=auto renditions differ by Accept: warm each variant a browser may ask for.
SOURCES_AHEAD = 4  # sources warmed at once per render slot, so the next is ready when one ends
AUTO_ACCEPTS = ("image/avif,image/webp,*/*", "image/webp,*/*", "*/*")


@dataclass
class WarmSummary:
    made: int = 0
    failed: int = 0
    skipped: int = 0  # already cached


@dataclass(frozen=True, slots=True)
class Outcome:
    """One warmed rendition: its source path, preset and status; `detail` says why not 200."""

    path: str
    preset: str
    status: int
    detail: str = ""
    made: bool = False  # rendered now, not found in a tier


@dataclass(frozen=True, slots=True)
class Purged:
    """What a purge removed from the tiers, and each HTTP cache's answer (`cache.purge_urls`)."""

    removed: int
    answers: tuple[cdn.Answer, ...]

    @property
    def failed(self) -> list[cdn.Answer]:
        return [answer for answer in self.answers if not answer.ok]


async def purge(services: Services, store: str, path: str) -> Purged:
    """Remove every cached rendition of `store/path` from the cache tiers, proportional to that
    source's renditions, not to the cache; then ask the HTTP caches in front to drop it.
    Tiers first: a cache that refetches at once must miss them too."""
    _check_store(services, store)
    key = surrogate_key(store, path)
    removed = await services.cache.purge(key)
    return Purged(removed, await cdn.purge(services.settings.cache.purge_urls, key))


async def warm(
    services: Services,
    store: str,
    presets: Sequence[str],
    *,
    on_total: Callable[[int], None] = lambda n: None,
    on_done: Callable[[Outcome], None] = lambda outcome: None,
) -> WarmSummary:
    """Every file a listable store holds, source by source (`warm_source`), at most as many
    renditions at once as there are render slots: more would only fill the render queue.
    The store is listed twice, to count and to warm, and at most SOURCES_AHEAD sources per
    slot are in hand at once: memory does not grow with the store (a list of every path and
    a task each held 1.1 GB for 100,000 files)."""
    _check(services, store, presets)
    listable = _listable(services, store)
    sources = await _count(listable)
    on_total(sources * sum(len(_accepts(services, preset)) for preset in presets))
    summary = WarmSummary()
    await _warm_each(services, store, listable, presets, on_done=_tally(summary, on_done))
    return summary


def _listable(services: Services, store: str) -> Listable:
    """The store, if it can list its files: warming a whole store needs nothing else."""
    listable = services.mounts[store].store
    if not isinstance(listable, Listable):
        raise ConfigError(f"stores.{store}: this kind of store cannot list its files")
    return listable


async def _count(listable: Listable) -> int:
    """How many files the store lists, counted as they come and never held."""
    sources = 0
    async for _ in listable.paths():
        sources += 1
    return sources


def _tally(summary: WarmSummary, on_done: Callable[[Outcome], None]) -> Callable[[Outcome], None]:
    """`on_done`, after counting each outcome into `summary`."""

    def done(outcome: Outcome) -> None:
        if outcome.status != 200:
            summary.failed += 1
        elif outcome.made:
            summary.made += 1
        else:
            summary.skipped += 1
        on_done(outcome)

    return done


async def _warm_each(
    services: Services,
    store: str,
    listable: Listable,
    presets: Sequence[str],
    *,
    on_done: Callable[[Outcome], None],
) -> None:
    """`warm_source` for each listed file, as it is listed: a render slot's worth of
    renditions at once, and at most SOURCES_AHEAD sources per slot in hand."""
    gate = asyncio.Semaphore(services.executor.concurrency)
    ahead = asyncio.Semaphore(services.executor.concurrency * SOURCES_AHEAD)

    async def source(path: str) -> None:
        try:
            await warm_source(services, store, path, presets, gate=gate, on_done=on_done)
        finally:
            ahead.release()

    async with asyncio.TaskGroup() as group:
        async for path in listable.paths():
            await ahead.acquire()
            group.create_task(source(path))


async def warm_source(
    services: Services,
    store: str,
    path: str,
    presets: Sequence[str],
    *,
    gate: asyncio.Semaphore | None = None,
    on_done: Callable[[Outcome], None] = lambda outcome: None,
) -> list[Outcome]:
    """Render `presets` of one source into the tiers, through `pipeline.serve` with the
    requests a browser sends (fm=auto: one per Accept variant), so the next such request is
    a hit. Any store kind: only `stat` and `open` are used. Never raises for one failed
    rendition: its Outcome carries the status and the error's code and detail."""
    _check(services, store, presets)
    gate = gate or asyncio.Semaphore(services.executor.concurrency)

    async def one(preset: str, accept: str) -> Outcome:
        url = urlsplit(url_for(store, path, settings=services.settings, p=preset))
        request = ImageRequest("GET", url.path, url.query, {"accept": accept})
        async with gate:
            before = services.metrics.renders  # a count, so `made` is a guess under concurrency
            response = await pipeline.serve(services, request)
            made = response.status == 200 and services.metrics.renders > before
        outcome = Outcome(path, preset, response.status, _detail(response), made)
        on_done(outcome)
        return outcome

    jobs = [(preset, accept) for preset in presets for accept in _accepts(services, preset)]
    return list(await asyncio.gather(*(one(*job) for job in jobs)))


def _accepts(services: Services, preset: str) -> tuple[str, ...]:
    values = expand_preset(preset, services.settings.presets)
    return AUTO_ACCEPTS if values.get("fm") == AUTO else ("*/*",)


def _check_store(services: Services, store: str) -> None:
    if store not in services.mounts:
        configured = ", ".join(services.mounts) or "none"
        raise ConfigError(f"stores.{store}: no such store (configured: {configured})")


def _check(services: Services, store: str, presets: Sequence[str]) -> None:
    _check_store(services, store)
    for name in presets:
        if name not in services.settings.presets:
            raise ConfigError(f"presets.{name}: no such preset")


def _detail(response: ImageResponse) -> str:
    """The error response's `code: detail` (SPEC §5); empty for a rendition."""
    if response.status == 200:
        return ""
    try:
        body = json.loads(response.body)
        return f"{body['error']}: {body['detail']}"
    except (ValueError, TypeError, KeyError):
        return ""
