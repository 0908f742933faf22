"""Renditions in an object store (S3, R2, MinIO, SeaweedFS), shared by every instance of a
fleet, below Redis (SPEC §12.2): larger and cheaper than Redis, and it outlives it.

Keys: `{prefix}{source}/{rendition}.{ext}`, so a purge lists one source's folder only. An
object is written by one PUT of the whole body, which S3 makes visible all at once or not at
all: an instance killed mid-write leaves nothing half-written for another to serve. An outage
opens a breaker for a few seconds, as for Redis, so requests do not each wait for a timeout.
"""

from __future__ import annotations

import logging
import time

from imgproxy import extras
from imgproxy.cache import SOURCE_ID, CacheKey, Rendition
from imgproxy.settings import CacheSettings

extras.require("obstore", extra="s3", feature="cache.s3_bucket")
import obstore  # noqa: E402
from obstore.exceptions import BaseError, NotFoundError  # noqa: E402

from imgproxy.stores.s3 import object_store  # noqa: E402

log = logging.getLogger(__name__)

MISSING = (NotFoundError, FileNotFoundError)
RETRY_AFTER = 5.0  # seconds the breaker stays open
TIMEOUT = 5.0


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
        self._open_until = 0.0

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
        try:
            found = await obstore.get_async(self.client, _path(key))
            body = await found.bytes_async()
        except MISSING:
            return None
        except (BaseError, OSError) as exc:
            self._failed(exc)
            return None
        return Rendition(body.to_bytes(), key.media_type) if len(body) else None

    async def put(self, key: CacheKey, value: Rendition) -> None:
        if not self._available():
            return
        try:
            await obstore.put_async(
                self.client,
                _path(key),
                value.body,
                attributes={"Content-Type": value.media_type},
                use_multipart=False,  # one PUT: the object appears whole or not at all
            )
        except (BaseError, OSError) as exc:
            self._failed(exc)

    async def purge(self, source: str) -> int:
        """Every object in the source's folder; failures raise (a purge must not lie)."""
        if not SOURCE_ID.fullmatch(source):  # a prefix of other sources' folders, or worse
            return 0
        listed = await obstore.list(self.client, f"{source}/").collect_async()
        paths = [meta["path"] for meta in listed]
        if paths:
            await obstore.delete_async(self.client, paths)
        return len(paths)


def _path(key: CacheKey) -> str:
    return f"{key.source}/{key.name}"
