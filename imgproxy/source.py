"""A stored file -> a judged Source: approval and format (403/415) and limits (413), from
what is already known about this version or else from its bytes (SPEC §4, §4.1, §10).

Facts are looked for in this process's memo, then in the shared cache tiers, and only then
learned from the bytes, inside a render slot: sniffed first, the declared size checked, then
the header parsed by Pillow (inspection.py: the same checks an upload gets). A version
already seen anywhere costs no read (SPEC §5). A new JPEG or PNG on a store that reads heads
is learned from its first 64 KiB when its image data starts there: its render is then its
only whole read.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass

from imgproxy import render
from imgproxy.cache import FACTS_EXTENSION, CacheKey, Rendition
from imgproxy.cache.flight import SingleFlight
from imgproxy.cache.tiered import TieredCache
from imgproxy.conditional import make_etag, surrogate_key
from imgproxy.errors import SourceChanged, TooLarge
from imgproxy.facts import SourceInfo
from imgproxy.formats import SNIFF_BYTES, sniff
from imgproxy.headers import header_end
from imgproxy.inspection import check_declared, judge, judge_head
from imgproxy.memo import Memo
from imgproxy.mounts import Mounted
from imgproxy.render.executor import RenderExecutor
from imgproxy.stores import Peekable, StoredFile, Streamable
from imgproxy.stores.base import focal_point

# What a Peekable store reads first of a new file: a photo's segments before its image data
# (Exif with its thumbnail, an ICC profile) usually fit; when they do not, the whole file is
# read, as for any other store.
HEADER_BYTES = 64 * 1024
# The facts remembered per version are bounded by their keys' characters too: a store path
# can be 2000 characters (an http origin that answers any path), and 100 000 of them would
# hold 200 MB beside facts of a few hundred bytes each.
KNOWN_CHARS = 4 * 2**20


def version_chars(ident: tuple[str, str, str], _: object = None) -> int:
    """A version's key's weight: the characters of its store's name, path and version."""
    return len(ident[0]) + len(ident[1]) + len(ident[2])


@dataclass(frozen=True, slots=True)
class Source:
    """A judged version of a stored file and its facts; never its bytes, which are read only
    inside a render slot (SPEC §11), so a request waiting for one holds none."""

    mount: Mounted
    file: StoredFile
    info: SourceInfo


class Sources:
    def __init__(self, executor: RenderExecutor, cache: TieredCache) -> None:
        self.executor = executor
        self.cache = cache
        self._known: Memo[tuple[str, str, str], SourceInfo] = Memo(
            100_000, weigh=version_chars, max_weight=KNOWN_CHARS
        )
        self._learning: SingleFlight[SourceInfo] = SingleFlight()
        self._points: Memo[str, tuple[float, float]] = Memo(100_000)
        self._judged: Memo[int, Source] = Memo(10_000)

    async def learn(self, mount: Mounted, file: StoredFile) -> Source:
        # A store that returns the same StoredFile for an unchanged file (fs) gets the same
        # judged Source back: a hit judges nothing twice. Kept by identity: the entry holds
        # the file, so its id is not reused while the entry lives.
        judged = self._judged.get(id(file))
        if judged is not None and judged.file is file and judged.mount is mount:
            return judged
        ident = (mount.name, file.path, file.version)
        info = self._known.get(ident)
        if info is None:
            info = await self._recall(mount, file)
            if info is None:  # concurrent first sights of one version share one read
                flight = "\0".join(ident)
                info = await self._learning.run(flight, lambda: self._learn(mount, file))
            self._known[ident] = info
        judge(mount.policy, mount.limits, file.approved, info)
        source = self._judged[id(file)] = Source(mount, file, info)
        return source

    async def read(self, source: Source) -> bytes:
        """The bytes of a version whose facts are known (call it inside a slot): exactly as
        many as its facts say, which its slot reserved. More or fewer, and the store sent
        another version under the same one (an origin whose HEAD and GET disagree, or that
        grew a body under one ETag): SourceChanged, never a read past what was reserved."""
        file, expected = source.file, source.info.bytes
        try:
            data = await read_capped(
                source.mount.store.open(file),
                limit=expected,
                on_head=lambda head: _same_format(source, head),
            )
        except TooLarge:
            raise SourceChanged("the source grew while it was being read") from None
        if len(data) != expected:
            raise SourceChanged("the source shrank while it was being read")
        return data

    async def stream(self, source: Source, first: int, last: int) -> AsyncGenerator[bytes]:
        """Bytes `first`..`last` of a version whose facts are known, as its store yields them.
        Each piece stays counted in the in-flight budget until the next is asked for, so a
        consumer that sends each to a client before asking for the next holds one piece
        while the client is slow, never the whole source (SPEC §11.1); one more store chunk
        is read ahead, uncounted (see `_one_behind`)."""
        store, file = source.mount.store, source.file
        chunks = store.stream(file) if isinstance(store, Streamable) else store.open(file)
        ahead = _one_behind(chunks)
        pending = b""  # the first bytes, until there are enough to judge the format by
        offset = 0  # where the next chunk starts in the source
        try:
            async for chunk in ahead:
                if len(pending) < SNIFF_BYTES:
                    chunk = pending + chunk if pending else chunk
                    if len(chunk) < SNIFF_BYTES:
                        pending = chunk
                        continue
                    _same_format(source, chunk[:SNIFF_BYTES])
                    pending = chunk[:SNIFF_BYTES]
                piece = chunk[max(first - offset, 0) : last + 1 - offset]
                offset += len(chunk)
                if piece:
                    async with self.executor.reserve(len(chunk)):
                        yield piece
                if offset > last and last < source.info.bytes - 1:  # a range that ends early
                    return
            if offset < SNIFF_BYTES:  # all of it is shorter than a format's signature
                _same_format(source, pending)
                offset = len(pending)
                yield pending[first : last + 1]
            if offset != source.info.bytes:
                raise SourceChanged("the source changed while it was being read")
        finally:
            await ahead.aclose()
            if isinstance(chunks, AsyncGenerator):  # a store's generator holds a file or socket
                await chunks.aclose()

    async def _learn(self, mount: Mounted, file: StoredFile) -> SourceInfo:
        """Sniffed from the first bytes, then the declared size checked, then the header
        parsed by Pillow; kept in the tiers for every process that shares them."""
        limits = mount.limits
        detected: list[str | None] = []  # sniffed once, from the head, for both uses

        def judge(head: bytes) -> None:
            detected.append(judge_head(mount.policy, limits, file.approved, file.size, head))

        share = file.size or limits.max_source_bytes
        # A head is a short read and a header parse: ahead of the renders, so every rendition
        # of a new photo reaches its shared decode (sharing.py) while that is still running.
        peek = mount.store if isinstance(mount.store, Peekable) else None  # ~15 us a check
        async with self.executor.slot(share, lane=mount.name, first=peek is not None) as slot:
            size: int | None = None  # the whole file's bytes, when only its head is read
            if peek is not None:  # judged before the file is read at all
                data = await peek.head(file, HEADER_BYTES)
                judge(data[:SNIFF_BYTES])
                if not _facts_within(detected[0], data, file.size):
                    data = await _read(mount, file, lambda head: None)
                else:
                    size = file.size
            else:
                data = await _read(mount, file, judge)
            check_declared(detected[0], data, limits)
            decoders = mount.policy.decoders(file.approved)
            info = await slot.within(
                limits.max_render_seconds,
                render.probe,
                data,
                decoders,
                limits.max_source_pixels,
                limits.max_frames,
                limits.max_render_seconds,
                size,
            )
        await self.cache.put(_facts_key(mount, file), Rendition(info.to_json(), "application/json"))
        return info

    async def smart_point(self, source: Source) -> tuple[float, float] | None:
        """The g=smart point of this version, if any process has found it (SPEC §13)."""
        key = _point_key(source.mount, source.file)
        point = self._points.get(key.rendition)
        if point is None:
            kept = await self.cache.recall(key)
            point = _point(kept.body) if kept is not None else None
            if point is not None:
                self._points[key.rendition] = point
        return point

    async def keep_smart_point(self, source: Source, point: tuple[float, float]) -> None:
        """Beside the facts, for every later size and every process sharing the tiers."""
        key = _point_key(source.mount, source.file)
        self._points[key.rendition] = point
        await self.cache.put(key, Rendition(json.dumps(list(point)).encode(), "application/json"))

    async def _recall(self, mount: Mounted, file: StoredFile) -> SourceInfo | None:
        kept = await self.cache.recall(_facts_key(mount, file))
        return SourceInfo.from_json(kept.body) if kept is not None else None


def _point_key(mount: Mounted, file: StoredFile) -> CacheKey:
    """The g=smart analysis of one version: found in its pixels, so independent of limits."""
    point = make_etag(mount.name, file.path, file.version, "smart-1").strip('"')
    return CacheKey(surrogate_key(mount.name, file.path), point, FACTS_EXTENSION)


def _point(body: bytes) -> tuple[float, float] | None:
    """A kept point, or None for anything else (a damaged entry is found again)."""
    try:
        x, y = json.loads(body)
    except (ValueError, TypeError, RecursionError):
        return None
    return focal_point(x, y)


async def _one_behind(chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes]:
    """Each chunk once the next has arrived, the last once the store has ended: a store's
    checks at the end (the file unchanged, still at its path) come before the last byte is
    sent, so a change they see cuts the answer short rather than after it is complete."""
    previous: bytes | None = None
    async for chunk in chunks:
        if previous is not None:
            yield previous
        previous = chunk
    if previous is not None:
        yield previous


def _facts_within(fmt: str | None, head: bytes, size: int | None) -> bool:
    """Whether a file's head holds all its facts, so the rest need not be read to learn
    them: the head is the whole file, or the image data starts within it. A new photo is
    then read once, by its render, not twice."""
    return size is not None and (len(head) == size or header_end(fmt, head) is not None)


def _same_format(source: Source, head: bytes) -> None:
    if (sniff(head) or render.identify(head)) != source.info.format:
        # The bytes changed under an unchanged version (a store whose version missed the
        # write): refuse rather than guess; a retry sees the new one.
        raise SourceChanged("the source changed while it was being read")


def _facts_key(mount: Mounted, file: StoredFile) -> CacheKey:
    """Beside the source's renditions, so a purge of the source forgets them too. Frames are
    counted only to max_frames + 1, so the facts hold for that limit only."""
    frames = str(mount.limits.max_frames)
    # "facts-2": facts kept before MPO files were judged as JPEG are never recalled.
    facts = make_etag(mount.name, file.path, file.version, "facts-2", frames).strip('"')
    return CacheKey(surrogate_key(mount.name, file.path), facts, FACTS_EXTENSION)


async def _read(mount: Mounted, file: StoredFile, on_head: Callable[[bytes], None]) -> bytes:
    return await read_capped(
        mount.store.open(file), limit=mount.limits.max_source_bytes, on_head=on_head
    )


async def read_capped(
    chunks: AsyncIterator[bytes], *, limit: int, on_head: Callable[[bytes], None]
) -> bytes:
    """Collect a stream, calling `on_head` with its first bytes (to sniff and judge the
    format before anything else) and stopping with 413 as soon as it passes `limit`. The
    chunks are joined once at the end: one copy, not a growing buffer and a copy of it."""
    parts: list[bytes] = []
    size = 0
    head_seen = False
    try:
        async for chunk in chunks:
            parts.append(chunk)
            size += len(chunk)
            if not head_seen and size >= SNIFF_BYTES:
                head_seen = True
                first = parts[0] if len(parts[0]) >= SNIFF_BYTES else b"".join(parts)
                on_head(first[:SNIFF_BYTES])
            if size > limit:
                raise TooLarge(f"the source is larger than {limit} bytes")
    finally:
        if isinstance(chunks, AsyncGenerator):  # a store's generator holds a file or socket
            await chunks.aclose()
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    if not head_seen:
        on_head(data)
    return data
