"""Renditions in an object store (S3, R2, MinIO, SeaweedFS), shared by every instance of a
fleet, below Redis (SPEC §12.2): larger and cheaper than Redis, and it outlives it.

Keys: `{prefix}{source}/{rendition}.{ext}`, so a purge lists one source's folder only. An
object is written by one PUT of the whole body, which S3 makes visible all at once or not at
all: an instance killed mid-write leaves nothing half-written for another to serve. An outage
opens a breaker for a few seconds, as for Redis, so requests do not each wait for a timeout.
Until the first failure opens it (up to TIMEOUT when the store stalls), at most
`cache.s3_concurrency` GETs and PUTs are in flight in a worker, each on its own connection
(inflight.py). The readiness probe and the sweep are apart from it: each runs one at a time.

Bounded by configuration, not by how many distinct URLs a fleet is asked for (SPEC §11.1):
- `cache.s3_max_age`: a GET carries `If-Modified-Since` that age ago, so an older object is
  a 304 from S3 (no body sent) and a miss here; its rendition is made and PUT again.
- `cache.s3_bytes`: each process sweeps the prefix after its first write, after every eighth
  of the budget it writes, and at least hourly while it writes. One LIST pass counts bytes by
  LastModified (in at most HISTOGRAM_SLOTS counts: fixed memory however many objects); a
  second deletes what is past the age and the oldest past the budget (DeleteObjects, 1000 a
  call). S3 keeps no access time, so the oldest written goes first, not the least used, and
  LastModified counts seconds, so one second's writes go together. A process whose sweep
  still runs when it has written another eighth keeps nothing more until it ends: however
  slow a LIST, the bucket holds at most the budget plus a quarter of it per instance.
  Several instances sweeping at once only delete the same keys twice. A sweep costs two
  LISTs of the prefix (a request per 1000 objects each).
- The bucket's lifecycle rule (Expiration on the prefix: the README's, which `imgproxy
  check` reads back) is what an S3 team sets anyway: free, and it needs no running
  instance. It counts days and AWS applies it within a day or so, so alone it would let a
  flood keep a day's writes; the sweep holds the byte budget, the rule is the backstop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from imgproxy import extras
from imgproxy.cache import SOURCE_ID, CacheKey, Rendition
from imgproxy.cache.inflight import InFlight
from imgproxy.settings import CacheSettings

extras.require("obstore", extra="s3", feature="cache.s3_bucket")
import obstore  # noqa: E402
from obstore.exceptions import BaseError, NotFoundError, NotModifiedError  # noqa: E402

from imgproxy.stores.s3 import object_store  # noqa: E402

log = logging.getLogger(__name__)

MISSING = (NotFoundError, FileNotFoundError, NotModifiedError)  # a 304: older than s3_max_age
RETRY_AFTER = 5.0  # seconds the breaker stays open
TIMEOUT = 5.0
SWEEP_SHARE = 8  # a process sweeps after writing this fraction (1/8) of the budget...
SWEEP_EVERY = 3600.0  # ...and at least this often (seconds) while it writes
HISTOGRAM_SLOTS = 16384  # the sweep's counts of bytes by age (~1.5 MB): coarser, never more
DELETE_BATCH = 1000  # S3's DeleteObjects takes at most 1000 keys


@dataclass(frozen=True, slots=True)
class Swept:
    kept: int  # bytes left under the prefix, as the first pass counted them
    removed: int  # objects deleted


class ObjectStoreTier:
    name = "s3"
    shared = True

    def __init__(self, settings: CacheSettings) -> None:
        self.client = object_store(
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            timeout=TIMEOUT,
        )
        self.max_bytes = settings.s3_bytes
        self.max_age = settings.s3_max_age
        self._in_flight = InFlight(settings.s3_concurrency)  # GETs and PUTs
        self._open_until = 0.0
        self._written = 0  # bytes this process PUT since its last sweep began
        self._next_sweep = 0.0  # monotonic: the first write sweeps
        self._sweeping: asyncio.Task[None] | None = None

    def _available(self) -> bool:
        return time.monotonic() >= self._open_until

    def _failed(self, exc: Exception) -> None:
        if self._available():
            kind = type(exc).__name__  # obstore's messages carry signed URLs: the kind only
            log.warning("object-store tier unavailable (%s); skipped for %ss", kind, RETRY_AFTER)
        self._open_until = time.monotonic() + RETRY_AFTER

    async def get(self, key: CacheKey) -> Rendition | None:
        if not self._available():
            return None
        oldest = datetime.fromtimestamp(time.time() - self.max_age, UTC)
        try:
            with self._in_flight.slot() as free:
                if not free:
                    return None
                found = await obstore.get_async(
                    self.client, _path(key), options={"if_modified_since": oldest}
                )
                body = await found.bytes_async()
        except MISSING:
            return None
        except (BaseError, OSError) as exc:
            self._failed(exc)
            return None
        return Rendition(body.to_bytes(), key.media_type) if len(body) else None

    async def probe(self) -> None:
        """A HEAD of a key never written: its 404 is an answer; anything else raises."""
        with contextlib.suppress(*MISSING):
            await obstore.head_async(self.client, "imgproxy-readyz")

    async def put(self, key: CacheKey, value: Rendition) -> None:
        if not self._available() or len(value.body) > self.max_bytes:
            return
        share = self.max_bytes // SWEEP_SHARE
        if self._sweeping is not None and self._written >= share:
            return  # its sweep is behind this process's writes: keep nothing more until done
        try:
            with self._in_flight.slot() as free:
                if not free:
                    return
                self._written += len(value.body)  # counted before the PUT: others see it
                await obstore.put_async(
                    self.client,
                    _path(key),
                    value.body,
                    attributes={"Content-Type": value.media_type},
                    use_multipart=False,  # one PUT: the object appears whole or not at all
                )
        except (BaseError, OSError) as exc:
            self._failed(exc)
            return
        due = self._written >= share or time.monotonic() >= self._next_sweep
        if due and self._sweeping is None:
            self._written = 0
            self._next_sweep = time.monotonic() + SWEEP_EVERY
            self._sweeping = asyncio.create_task(self._sweep_in_background())

    async def _sweep_in_background(self) -> None:
        try:
            await self.sweep()
        except (BaseError, OSError) as exc:
            log.warning("object-store tier sweep failed (%s)", type(exc).__name__)
        finally:
            self._sweeping = None

    async def sweep(self) -> Swept:
        """Delete every object past `s3_max_age`, then the oldest until the rest fit in
        `s3_bytes`. Objects written during it are newer than the cut, so they stay (unless
        the second it began in alone holds more than the budget)."""
        oldest = time.time() - self.max_age
        width = 1  # seconds per count: LastModified's resolution, doubled as counts grow
        counts: dict[int, int] = {}  # bytes written in each `width` seconds
        async for chunk in obstore.list(self.client, chunk_size=DELETE_BATCH):
            for meta in chunk:
                modified = meta["last_modified"].timestamp()
                if modified >= oldest:
                    slot = int(modified) // width
                    counts[slot] = counts.get(slot, 0) + meta["size"]
            while len(counts) > HISTOGRAM_SLOTS:
                width *= 2
                coarser: dict[int, int] = {}
                for slot, size in counts.items():
                    coarser[slot // 2] = coarser.get(slot // 2, 0) + size
                counts = coarser
        cut, kept = oldest, 0
        for slot in sorted(counts, reverse=True):  # newest first
            if kept + counts[slot] > self.max_bytes:
                cut = max(cut, (slot + 1) * width)  # this slot and all older go
                break
            kept += counts[slot]
        removed = 0
        async for chunk in obstore.list(self.client, chunk_size=DELETE_BATCH):
            doomed = [meta["path"] for meta in chunk if meta["last_modified"].timestamp() < cut]
            if doomed:
                await obstore.delete_async(self.client, doomed)
                removed += len(doomed)
        return Swept(kept, removed)

    async def purge(self, source: str) -> int:
        """Every object in the source's folder; failures raise (a purge must not lie)."""
        if not SOURCE_ID.fullmatch(source):  # a prefix of other sources' folders, or worse
            return 0
        listed = await obstore.list(self.client, f"{source}/").collect_async()
        paths = [meta["path"] for meta in listed]
        if paths:
            await obstore.delete_async(self.client, paths)
        return len(paths)

    async def close(self) -> None:
        """A sweep under way is stopped: the next process's sweep does it again."""
        if self._sweeping is not None:
            self._sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeping


def _path(key: CacheKey) -> str:
    return f"{key.source}/{key.name}"
