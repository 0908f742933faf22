"""The `sql` store on PostgreSQL through asyncpg: a native asyncio driver with a pool and the
binary protocol, so bytea arrives as bytes, and no libpq to install. Every call has one
deadline, the store's `timeout` (connection, pool wait and statement alike): a table locked
by a migration is a 504 after it, never an unbounded wait (SPEC §11.1)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from imgproxy.errors import NotFound, UpstreamError, UpstreamTimeout
from imgproxy.extras import require
from imgproxy.stores.base import StoredFile
from imgproxy.stores.sql_rows import CHUNK, Columns, stored_file, too_slow


class PostgresStore:
    """An asyncpg pool, created on first use in the running event loop (a pool cannot
    outlive or change its loop); the key is converted to the key column's type. A call past
    its deadline is cancelled, and asyncpg cancels its statement on the server too."""

    def __init__(
        self, dsn: str, columns: Columns, *, approved: bool = False, timeout: float = 5.0
    ) -> None:
        require("asyncpg", extra="postgres", feature="a postgresql:// store")
        self.dsn = dsn
        self.columns = columns
        self.approved = approved
        self.timeout = timeout
        self._pool: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._key_type = "text"
        self._meta = columns.metadata_query("$1", rowid=False)
        self._data = f"SELECT {columns.data} FROM {columns.table} WHERE {columns.key} = $1"  # noqa: S608

    async def _connect(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._loop is not loop:
            self._abandon()
            self._pool, self._loop = loop.create_task(self._create()), loop
        try:
            return await asyncio.shield(self._pool)
        except (UpstreamError, UpstreamTimeout):
            self._pool = None  # try again on the next request
            raise

    async def _create(self) -> Any:
        import asyncpg

        try:
            # `timeout` bounds each new connection; command_timeout each statement, also
            # of work that outlives a request (a pool's reset of a returned connection).
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=8,
                timeout=self.timeout,
                command_timeout=self.timeout,
            )
            async with pool.acquire(timeout=self.timeout) as connection:
                statement = await connection.prepare(self._meta)
                self._key_type = statement.get_parameters()[0].name
        except TimeoutError:
            raise too_slow(self.timeout) from None
        except database_errors() as exc:
            raise UpstreamError(f"the database is unavailable ({exc})") from None
        return pool

    @contextlib.asynccontextmanager
    async def _deadline(self) -> AsyncIterator[Any]:
        """The pool, and one deadline for the pool, a connection from it and the statement.
        A restarting database fails in many ways (refused, reset, shutting down, a
        connection dropped mid-reply): each is a 502, never a 500."""
        try:
            async with asyncio.timeout(self.timeout):
                yield await self._connect()
        except TimeoutError:
            raise too_slow(self.timeout) from None
        except database_errors() as exc:
            raise UpstreamError(f"the database failed ({type(exc).__name__})") from None

    def _abandon(self) -> None:
        """Drop a pool of another (finished) loop without awaiting it."""
        old, self._pool = self._pool, None
        if old is not None and old.done() and not old.cancelled() and old.exception() is None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nothing to abort
                old.result().terminate()

    def _key(self, path: str) -> Any:
        if self._key_type in ("int2", "int4", "int8"):
            if not path.isdigit() or len(path) > 18:
                raise NotFound("no such row")
            return int(path)
        return path

    async def stat(self, path: str) -> StoredFile:
        async with self._deadline() as pool:
            row = await pool.fetchrow(self._meta, self._key(path))
        if row is None:
            raise NotFound("no such row")
        length, updated, approved = row[0], row[1], row[2]
        return stored_file(path, length, updated, approved, self.approved, (row[3], row[4]))

    async def open(self, file: StoredFile) -> AsyncIterator[bytes]:
        async with self._deadline() as pool:
            value = await pool.fetchval(self._data, self._key(file.path))
        if value is None:
            raise NotFound("the row disappeared")
        data = bytes(value)
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]

    async def close(self) -> None:
        if self._pool is not None and self._loop is asyncio.get_running_loop():
            pool, self._pool = self._pool, None
            if not pool.done() or pool.exception() is None:
                await (await pool).close()
        self._abandon()


def database_errors() -> tuple[type[Exception], ...]:
    """What asyncpg raises when the server or the connection fails (imported on use)."""
    import asyncpg

    return (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
