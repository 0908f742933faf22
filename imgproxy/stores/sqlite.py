"""The `sql` store on SQLite (stdlib): each call on the store's own thread, so the event loop
never blocks, and within the store's `timeout` (SPEC §11.1): a table another connection
holds locked is a 504 after it. The BLOB is read in pieces, only on a cache miss."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from imgproxy.errors import NotFound, UpstreamError
from imgproxy.memo import Memo
from imgproxy.stores.base import StoredFile
from imgproxy.stores.sql_rows import CHUNK, Columns, stored_file, too_slow

SQLITE_WAITED = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED: another connection's lock outlasted us


class SQLiteStore:
    """One connection, owned by one thread: every query runs there, never on the loop."""

    def __init__(
        self,
        database: str | Path,
        columns: Columns,
        *,
        approved: bool = False,
        timeout: float = 5.0,
    ) -> None:
        self.database = str(database)
        self.columns = columns
        self.approved = approved
        self.timeout = timeout
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="imgproxy-sqlite")
        self._local = threading.local()
        self._query = columns.metadata_query("?", rowid=True)
        self._rowids: Memo[str, int] = Memo(50_000)  # version+path -> rowid, from stat

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            uri = f"file:{self.database}?mode=ro"
            # A writer's lock is waited for at most `timeout` (the busy timeout), so the one
            # thread is never held longer than a request's deadline.
            connection = sqlite3.connect(uri, uri=True, timeout=self.timeout)
            self._local.connection = connection
        return connection

    async def _run(self, fn: Any, *args: Any) -> Any:
        """On the store's thread, within the deadline, the wait for the thread included (a
        call that has not started when its deadline passes never runs)."""
        try:
            async with asyncio.timeout(self.timeout):
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._thread, fn, *args)
        except TimeoutError:
            raise too_slow(self.timeout) from None
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", None) in SQLITE_WAITED:
                raise too_slow(self.timeout) from None
            raise UpstreamError(f"the database failed ({type(exc).__name__})") from None

    async def stat(self, path: str) -> StoredFile:
        row = await self._run(self._fetch_row, path)
        if row is None:
            raise NotFound("no such row")
        rowid, length, updated, approved, focal_x, focal_y = row
        file = stored_file(path, length, updated, approved, self.approved, (focal_x, focal_y))
        self._rowids[file.version + "\0" + path] = rowid
        return file

    def _fetch_row(self, path: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._connection().execute(self._query, (path,)).fetchone()
        return row

    async def open(self, file: StoredFile) -> AsyncIterator[bytes]:
        rowid = self._rowids.get(file.version + "\0" + file.path)
        if rowid is None:
            rowid = (await self._run(self._fetch_row, file.path) or (None,))[0]
        if rowid is None:
            raise NotFound("the row disappeared")
        offset = 0
        while chunk := await self._run(self._read_blob, rowid, offset):
            offset += len(chunk)
            yield chunk

    def _read_blob(self, rowid: int, offset: int) -> bytes:
        """Incremental BLOB I/O: a chunk at a time, never the whole value in one allocation."""
        table, column = self.columns.table.strip('"'), self.columns.data.strip('"')
        with self._connection().blobopen(table, column, rowid, readonly=True) as blob:
            blob.seek(offset)
            return blob.read(CHUNK)

    async def close(self) -> None:
        self._thread.shutdown(wait=False)
