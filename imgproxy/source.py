"""A stored file -> a judged Source: approval and format (403/415) and limits (413), from
what is already known about this version or else from its bytes (SPEC §4, §4.1, §10).

Facts are looked for in this process's memo, then in the shared cache tiers, and only then
learned from the bytes: sniffed first, the declared size checked, then the header parsed by
Pillow in the render executor. A version already seen anywhere costs no read (SPEC §5).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass

from imgproxy import render
from imgproxy.cache import FACTS_EXTENSION, CacheKey, Rendition
from imgproxy.cache.tiered import TieredCache
from imgproxy.conditional import make_etag, surrogate_key
from imgproxy.errors import TooLarge, Undecodable
from imgproxy.facts import SourceInfo
from imgproxy.formats import SNIFF_BYTES, declared_size, sniff
from imgproxy.memo import Memo
from imgproxy.mounts import Mounted
from imgproxy.policy import check_bytes, check_pixels
from imgproxy.render.executor import RenderExecutor
from imgproxy.stores import StoredFile


@dataclass(frozen=True, slots=True)
class Source:
    mount: Mounted
    file: StoredFile
    info: SourceInfo
    data: bytes | None  # read already (first sight of this version), else None


class Sources:
    def __init__(self, executor: RenderExecutor, cache: TieredCache) -> None:
        self.executor = executor
        self.cache = cache
        self._known: Memo[tuple[str, str, str], SourceInfo] = Memo(100_000)

    async def learn(self, mount: Mounted, file: StoredFile) -> Source:
        ident = (mount.name, file.path, file.version)
        info = self._known.get(ident)
        if info is None:
            info = await self._recall(mount, file)
        if info is not None:
            _judge(mount, file, info)
            self._known[ident] = info
            return Source(mount, file, info, None)
        data = await _read(mount, file, lambda head: _judge_head(mount, file, head))
        detected = sniff(data[:SNIFF_BYTES]) or render.identify(data[:SNIFF_BYTES])
        declared = declared_size(detected, data)
        if declared is not None:
            check_pixels(declared, mount.limits.max_source_pixels)
        decoders = mount.policy.decoders(file.approved)
        info = await self.executor.run(render.probe, data, decoders, mount.limits.max_source_pixels)
        self._known[ident] = info
        await self.cache.put(_facts_key(mount, file), Rendition(info.to_json(), "application/json"))
        return Source(mount, file, info, data)

    async def read(self, source: Source) -> bytes:
        """The source's bytes: those read while learning it, or read again now."""
        if source.data is not None:
            return source.data

        def same_format(head: bytes) -> None:
            if (sniff(head) or render.identify(head)) != source.info.format:
                # The bytes changed under an unchanged version: refuse rather than guess.
                raise Undecodable("the source changed while it was being read")

        return await _read(source.mount, source.file, same_format)

    async def _recall(self, mount: Mounted, file: StoredFile) -> SourceInfo | None:
        kept = await self.cache.recall(_facts_key(mount, file))
        return SourceInfo.from_json(kept.body) if kept is not None else None


def _facts_key(mount: Mounted, file: StoredFile) -> CacheKey:
    """Beside the source's renditions, so a purge of the source forgets them too."""
    facts = make_etag(mount.name, file.path, file.version, "facts").strip('"')
    return CacheKey(surrogate_key(mount.name, file.path), facts, FACTS_EXTENSION)


def _judge(mount: Mounted, file: StoredFile, info: SourceInfo) -> None:
    mount.policy.check(info.format, file.approved)
    check_bytes(info.bytes, mount.limits)
    check_pixels((info.width, info.height), mount.limits.max_source_pixels)


def _judge_head(mount: Mounted, file: StoredFile, head: bytes) -> None:
    """Before any more is read: the format sniffed from the leading bytes, and the size the
    store declared."""
    mount.policy.check(sniff(head) or render.identify(head), file.approved)
    check_bytes(file.size, mount.limits)


async def _read(mount: Mounted, file: StoredFile, on_head: Callable[[bytes], None]) -> bytes:
    return await read_capped(
        mount.store.open(file), limit=mount.limits.max_source_bytes, on_head=on_head
    )


async def read_capped(
    chunks: AsyncIterator[bytes], *, limit: int, on_head: Callable[[bytes], None]
) -> bytes:
    """Collect a stream, calling `on_head` with its first bytes (to sniff and judge the
    format before anything else) and stopping with 413 as soon as it passes `limit`."""
    buffer = bytearray()
    head_seen = False
    try:
        async for chunk in chunks:
            buffer += chunk
            if not head_seen and len(buffer) >= SNIFF_BYTES:
                head_seen = True
                on_head(bytes(buffer[:SNIFF_BYTES]))
            if len(buffer) > limit:
                raise TooLarge(f"the source is larger than {limit} bytes")
    finally:
        if isinstance(chunks, AsyncGenerator):  # a store's generator holds a file or socket
            await chunks.aclose()
    if not head_seen:
        on_head(bytes(buffer))
    return bytes(buffer)
