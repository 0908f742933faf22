"""One adapter per store kind for the contract suite: how to put a file in, change it, and
set its approval, with the real backend underneath."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from imgproxy.stores import Closeable, FileSystemStore, SQLStore, Store, StoredFile

if TYPE_CHECKING:
    from tests.support.objects import S3Server


class Table(TypedDict):
    table: str
    key_column: str
    data_column: str
    updated_column: str
    approved_column: str


TABLE: Table = {
    "table": "profile_picture",
    "key_column": "user_id",
    "data_column": "data",
    "updated_column": "last_updated",
    "approved_column": "approved",
}


T = TypeVar("T")


class Backend:
    """A store over a real backend, driven from one event loop for its whole life (pools
    and connections belong to the loop that made them)."""

    store: Store
    keys: list[str]  # valid keys, e.g. "1" or "a.jpg"
    approval_per_file = True

    def __init__(self) -> None:
        self.runner = asyncio.Runner()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coroutine)

    def put(self, key: str, data: bytes, *, approved: bool | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if isinstance(self.store, Closeable):
            self.run(self.store.close())
        self.runner.close()


_ticks = itertools.count(1)


def write_file(path: Path, data: bytes) -> Path:
    """Write, with an mtime later than any before it (a rewrite is always a new version)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stamp = time.time() + next(_ticks)
    os.utime(path, (stamp, stamp))
    return path


class FsBackend(Backend):
    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.store: Store = FileSystemStore(folder, approved=True)
        self.keys = ["a.jpg", "sub/b.png", "c d.jpg"]

    def put(self, key: str, data: bytes, *, approved: bool | None = None) -> None:
        path = write_file(self.folder / key, data)
        sidecar = path.with_name(path.name + ".meta.json")
        if approved is None:
            sidecar.unlink(missing_ok=True)
        else:
            sidecar.write_text(json.dumps({"approved": approved}))


class SQLiteBackend(Backend):
    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.path = folder / "app.db"
        with sqlite3.connect(self.path) as db:
            db.execute(
                "CREATE TABLE profile_picture (user_id INTEGER PRIMARY KEY, data BLOB,"
                " last_updated TEXT, approved INTEGER)"
            )
        self.store: Store = SQLStore(f"sqlite:///{self.path}", **TABLE, approved=True)
        self.keys = ["1", "2", "42"]
        self._tick = 0

    def put(self, key: str, data: bytes, *, approved: bool | None = None) -> None:
        self._tick += 1
        updated = datetime(2026, 1, 1, 12, 0, self._tick).isoformat(sep=" ")  # naive: UTC
        with sqlite3.connect(self.path) as db:
            db.execute(
                "INSERT OR REPLACE INTO profile_picture VALUES (?, ?, ?, ?)",
                (int(key), data, updated, approved),
            )


class PostgresBackend(Backend):
    def __init__(self, dsn: str, schema: str) -> None:
        super().__init__()
        self.dsn = f"{dsn}?options=-csearch_path%3D{schema}"
        self.schema = schema
        self._sql(
            f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.profile_picture (user_id bigint"
            " PRIMARY KEY, data bytea, last_updated timestamp, approved boolean)"
        )
        self.store: Store = SQLStore(self.dsn, **TABLE, approved=True)
        self.keys = ["1", "2", "42"]
        self._tick = 0

    def _sql(self, query: str, *args: Any) -> None:
        import asyncpg

        async def run() -> None:
            connection = await asyncpg.connect(self.dsn)
            try:
                await connection.execute(query, *args)
            finally:
                await connection.close()

        self.run(run())

    def put(self, key: str, data: bytes, *, approved: bool | None = None) -> None:
        self._tick += 1
        updated = datetime(2026, 1, 1, 12, 0, self._tick, tzinfo=UTC).replace(tzinfo=None)
        self._sql(
            "INSERT INTO profile_picture VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE"
            " SET data = $2, last_updated = $3, approved = $4",
            int(key),
            data,
            updated,
            approved,
        )


class Counting:
    """Any store, counting its metadata calls and content reads."""

    def __init__(self, store: Store) -> None:
        self.inner = store
        self.stats = 0
        self.reads = 0

    async def stat(self, path: str) -> StoredFile:
        self.stats += 1
        return await self.inner.stat(path)

    async def open(self, file: StoredFile) -> AsyncIterator[bytes]:
        self.reads += 1
        async for chunk in self.inner.open(file):
            yield chunk

    async def close(self) -> None:
        if isinstance(self.inner, Closeable):
            await self.inner.close()


class HttpBackend(Backend):
    """A real local origin on 127.0.0.2 (allowed by address, as an internal CDN would be)."""

    approval_per_file = False  # SPEC §4: an http source's approval is the store's setting

    def __init__(self) -> None:
        from imgproxy.stores import HTTPStore
        from imgproxy.stores.addresses import AddressPolicy
        from tests.support import LiveServer
        from tests.support.origin import Origin

        super().__init__()
        self.origin = Origin()
        self.server = LiveServer(self.origin, host="127.0.0.2").__enter__()
        self.store = HTTPStore(
            self.server.url + "/files/",
            approved=True,
            addresses=AddressPolicy(allowed=["127.0.0.2/32"]),
        )
        self.keys = ["a.jpg", "b.png", "c.jpg"]

    def put(self, key: str, data: bytes, *, approved: bool | None = None) -> None:
        self.origin.put(key, data)

    def close(self) -> None:
        super().close()
        self.server.__exit__()


class DjangoBackend(Backend):
    """Django's FileSystemStorage; per-file approval through the adapter's `approval` hook."""

    def __init__(self, folder: Path) -> None:
        from django.conf import settings

        if not settings.configured:
            settings.configure(USE_TZ=True)
        from django.core.files.storage import FileSystemStorage

        from imgproxy.contrib.django import DjangoStorageStore

        super().__init__()
        self.folder = folder / "django"
        self.storage = FileSystemStorage(location=self.folder)
        self.approvals: dict[str, bool] = {}
        self.store = DjangoStorageStore(
            self.storage, approved=True, approval=lambda name: self.approvals.get(name, True)
        )
        self.keys = ["a.jpg", "photos/b.png", "c.jpg"]

    def put(self, key: str, data: bytes, *, approved: bool | None = None) -> None:
        write_file(self.folder / key, data)
        self.approvals[key] = True if approved is None else approved


class S3Backend(Backend):
    """A SeaweedFS bucket, under a prefix of its own; approval by `x-amz-meta-approved`."""

    def __init__(self, server: S3Server) -> None:
        from imgproxy.stores import S3Store

        super().__init__()
        self.server = server
        self.prefix = f"t{uuid.uuid4().hex[:12]}/"
        self.store = S3Store(
            "media",
            prefix=self.prefix,
            endpoint_url=server.endpoint,
            approved=True,
            **server.credentials(),
        )
        self.keys = ["a.jpg", "sub/b.png", "c d.jpg"]

        self._written: dict[str, float] = {}

    def put(self, key: str, data: bytes, *, approved: bool | None = None) -> None:
        # S3's Last-Modified has whole seconds: a rewrite lands in a later second, as the
        # contract's rewrites do for every other kind.
        wait = int(self._written.get(key, 0)) + 1 - time.time()
        if wait > 0:
            time.sleep(wait)
        metadata = {} if approved is None else {"approved": str(approved).lower()}
        self.server.put("media", self.prefix + key, data, **metadata)
        self._written[key] = time.time()
