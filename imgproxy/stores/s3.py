"""Objects in an S3-compatible bucket -> StoredFile metadata (a HEAD: the object's ETag is the
version, so a 304 or a hit of a known version never GETs the body) and the body, streamed
(SPEC §12.1).

The client is obstore (Rust's object_store): one small wheel with no Python dependencies, an
asyncio API, request signing and connection pooling done natively. boto3 is synchronous and
aiobotocore pins botocore to the patch release, which fights every other AWS user in a
project.

What S3 answers is mapped once here: a missing object is a 404; bad credentials, a missing
bucket or any other failure a 502 that names the failure's kind only (never a key, a secret
or the signed URL); a timeout a 504.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgproxy import extras
from imgproxy.errors import (
    BadRequest,
    ImageProxyError,
    NotFound,
    SourceChanged,
    UpstreamError,
    UpstreamTimeout,
)
from imgproxy.store_options import S3Options
from imgproxy.stores.base import StoredFile, first_bytes
from imgproxy.stores.s3_metadata import approved_in, focal_in

extras.require("obstore", extra="s3", feature="s3 stores")
import obstore  # noqa: E402
from obstore.exceptions import (  # noqa: E402
    BaseError,
    InvalidPathError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)
from obstore.store import S3Store as ObjectStore  # noqa: E402

if TYPE_CHECKING:
    from obstore import GetResult

# What a ranged GET can fail with that a plain GET would fail with too.
REFUSALS = (PreconditionError, InvalidPathError, PermissionDeniedError, UnauthenticatedError)
# obstore raises Python's own FileNotFoundError for a 404 (its NotFoundError for some paths).
MISSING = (NotFoundError, FileNotFoundError)
MAX_KEY_BYTES = 1024  # S3's own limit on a key
CHUNK = 256 * 1024  # streamed in pieces: the byte cap stops a big object early
BUCKET_SEEN_FOR = 60.0  # seconds a bucket found to exist is not asked about again


def object_store(
    *,
    bucket: str,
    prefix: str,
    endpoint_url: str,
    region: str,
    access_key_id: str,
    secret_access_key: str,
    timeout: float,
) -> ObjectStore:
    """An obstore S3 client with bounded retries: object_store's default retries for three
    minutes, far past any request's patience. Shared with the object-store cache tier."""
    config: dict[str, Any] = {"region": region}
    if endpoint_url:
        config["endpoint"] = endpoint_url.rstrip("/")
        config["virtual_hosted_style_request"] = False  # MinIO, SeaweedFS: bucket in the path
    if access_key_id:
        config["access_key_id"] = access_key_id
        config["secret_access_key"] = secret_access_key
    client_options: dict[str, Any] = {
        "timeout": timedelta(seconds=timeout),
        "connect_timeout": timedelta(seconds=min(2.0, timeout)),
        "allow_http": endpoint_url.startswith("http://"),
    }
    retry_config: dict[str, Any] = {
        "max_retries": 2,
        "retry_timeout": timedelta(seconds=timeout),
        "backoff": {"init_backoff": timedelta(milliseconds=50), "base": 2},
    }
    return ObjectStore(
        bucket,
        prefix=prefix or None,
        config=config,  # type: ignore[arg-type]  # a plain dict of S3Config's keys
        client_options=client_options,  # type: ignore[arg-type]
        retry_config=retry_config,  # type: ignore[arg-type]
    )


class S3Store:
    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str = "",
        region: str = "us-east-1",
        access_key_id: str = "",
        secret_access_key: str = "",
        approved: bool = False,
        approved_metadata: str = "approved",
        timeout: float = 10.0,
    ) -> None:
        self.approved = approved
        self.timeout = timeout
        self.approved_metadata = approved_metadata.lower()
        self.key_room = MAX_KEY_BYTES - len(prefix.encode())  # S3 counts the whole key
        self.client = object_store(
            bucket=bucket,
            prefix=prefix,
            endpoint_url=endpoint_url,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            timeout=timeout,
        )
        self._bucket_seen = 0.0  # monotonic time the bucket was last found to exist

    @classmethod
    def from_settings(
        cls, options: S3Options, *, name: str, approved: bool, base_dir: Path
    ) -> S3Store:
        return cls(
            options.bucket,
            prefix=options.prefix,
            endpoint_url=options.endpoint_url,
            region=options.region,
            access_key_id=options.access_key_id,
            secret_access_key=options.secret_access_key,
            approved=approved,
            approved_metadata=options.approved_metadata,
            timeout=options.timeout,
        )

    async def stat(self, path: str) -> StoredFile:
        key = _key(path, self.key_room)
        try:
            async with asyncio.timeout(self.timeout):
                found = await obstore.get_async(self.client, key, options={"head": True})
        except MISSING:
            await self._check_bucket()
            raise NotFound("the bucket has no such object") from None
        except (TimeoutError, BaseError, OSError) as exc:
            raise _failed(exc) from None
        meta = found.meta
        e_tag = meta["e_tag"]
        size = meta["size"]
        modified = meta["last_modified"].timestamp()
        version = f"s3:{e_tag}" if e_tag else f"s3-lm:{modified!r}:{size}"
        approved = approved_in(found.attributes, self.approved_metadata, self.approved)
        name = path.rsplit("/", 1)[-1]
        focal = focal_in(found.attributes)
        return StoredFile(path, version, approved, size, modified, name, focal)

    async def head(self, file: StoredFile, size: int) -> bytes:
        """The first `size` bytes of exactly the version `stat` saw (a ranged GET, If-Match
        on its ETag): a new photo's facts are learned from its head, so its body crosses the
        network once, for its render, not twice. A server whose ranges obstore cannot take
        (an S3-compatible one that answers a range whole) gives the head of a plain GET."""
        if file.size == 0:
            return b""  # S3 refuses a range of an empty object
        options = {**self._exactly(file), "range": (0, size)}
        try:
            async with asyncio.timeout(self.timeout):
                result: GetResult = await obstore.get_async(
                    self.client,
                    _key(file.path, self.key_room),
                    options=options,  # type: ignore[arg-type]
                )
                return bytes(await result.bytes_async())
        except MISSING:
            raise SourceChanged("the object was deleted while it was being read") from None
        except (TimeoutError, OSError, *REFUSALS) as exc:
            raise _failed(exc) from None
        except BaseError:
            pass
        return await first_bytes(self.open(file), size)

    @staticmethod
    def _exactly(file: StoredFile) -> dict[str, Any]:
        """If-Match on the version's ETag: an object replaced since `stat` is SourceChanged
        (retried), never a torn mix of two."""
        return {"if_match": file.version[3:]} if file.version.startswith("s3:") else {}

    async def open(self, file: StoredFile) -> AsyncGenerator[bytes, None]:
        """The body of exactly the version `stat` saw (`_exactly`)."""
        options = self._exactly(file)
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            async with asyncio.timeout_at(deadline):
                result: GetResult = await obstore.get_async(
                    self.client,
                    _key(file.path, self.key_room),
                    options=options,  # type: ignore[arg-type]
                )
            chunks = result.stream(min_chunk_size=CHUNK)
            while True:
                # The deadline wraps each await, never a `yield` (see stores/http.py).
                async with asyncio.timeout_at(deadline):
                    chunk = await anext(chunks, None)
                if chunk is None:
                    return
                yield bytes(chunk)
        except MISSING:
            raise SourceChanged("the object was deleted while it was being read") from None
        except (TimeoutError, BaseError, OSError) as exc:
            raise _failed(exc) from None

    async def paths(self) -> AsyncIterator[str]:
        """Every object under the prefix (what `imgproxy warm` renders)."""
        try:
            async for batch in obstore.list(self.client, chunk_size=1000):
                for meta in batch:
                    yield meta["path"]
        except (BaseError, OSError) as exc:
            raise _failed(exc) from None

    async def _check_bucket(self) -> None:
        """S3 answers a HEAD for a missing bucket and a missing key with the same bare 404:
        ask the bucket itself (one LIST, remembered for a minute) before calling it a 404."""
        if time.monotonic() - self._bucket_seen < BUCKET_SEEN_FOR:
            return
        try:
            async with asyncio.timeout(self.timeout):
                listing = obstore.list(self.client, chunk_size=1)
                await anext(aiter(listing), None)
        except (TimeoutError, BaseError, OSError) as exc:
            if isinstance(exc, MISSING) or "NoSuchBucket" in str(exc):
                raise UpstreamError("the object store has no such bucket") from None
            raise _failed(exc) from None
        self._bucket_seen = time.monotonic()


def _key(path: str, room: int = MAX_KEY_BYTES) -> str:
    """`path` as a key under the store's prefix: no segment may be empty, `.` or `..` (so a
    path cannot climb out of the prefix, whatever the server in front normalises)."""
    if len(path.encode("utf-8", "surrogatepass")) > room:
        raise BadRequest("path: too long for an object key")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise BadRequest("path: empty, '.' and '..' segments are not allowed")
    if "\\" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise BadRequest("path: control characters and backslashes are not allowed")
    return path


def _failed(exc: BaseException) -> ImageProxyError:
    """What the client raised -> the error the client of imgproxy sees. The detail names
    the failure's kind only: obstore's messages carry URLs and request details."""
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout("the object store did not answer in time")
    if isinstance(exc, PreconditionError):
        return SourceChanged("the object changed while it was being read")
    if isinstance(exc, InvalidPathError):
        return BadRequest("path: not a valid object key")
    if isinstance(exc, PermissionDeniedError | UnauthenticatedError):
        return UpstreamError("the object store refused this server's credentials")
    if "timed out" in str(exc):  # the client's own timeouts (its messages carry no code)
        return UpstreamTimeout("the object store did not answer in time")
    return UpstreamError(f"the object store failed ({type(exc).__name__})")
