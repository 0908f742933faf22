"""A table of BLOBs -> StoredFile metadata (one query that never selects the BLOB) and the
BLOB's bytes, read only on a cache miss. SQLite (stdlib, in its own thread so the event
loop never blocks) and PostgreSQL (asyncpg: a native asyncio driver with a pool and the
binary protocol, so bytea arrives as bytes, and no libpq to install).

Table and column names come from the config and are validated as plain identifiers, then
quoted; the key comes from the URL and is always a bound parameter. Every call has one
deadline, `timeout` (connection, pool wait and statement alike): a table locked by a
migration is a 504 after it, never an unbounded wait (SPEC §11.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imgproxy.errors import ConfigError, NotFound, UpstreamError, UpstreamTimeout
from imgproxy.extras import require
from imgproxy.memo import Memo
from imgproxy.store_options import SqlOptions
from imgproxy.stores.base import StoredFile, focal_point

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
CHUNK = 256 * 1024
SQLITE_WAITED = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED: another connection's lock outlasted us


def too_slow(seconds: float) -> UpstreamTimeout:
    return UpstreamTimeout(f"the database did not answer within {seconds:g} s")


@dataclass(frozen=True, slots=True)
class Columns:
    table: str
    key: str
    data: str
    updated: str
    approved: str | None
    focal: tuple[str, str] | None = None

    @classmethod
    def from_names(
        cls,
        *,
        table: str,
        key_column: str,
        data_column: str,
        updated_column: str,
        approved_column: str | None = None,
        focal_x_column: str | None = None,
        focal_y_column: str | None = None,
    ) -> Columns:
        """Validated, then quoted: the names reach SQL text, so nothing but a plain
        identifier may pass (errors name the option, e.g. `table: ...`)."""

        def quoted(option: str, value: str) -> str:
            if not IDENTIFIER.fullmatch(value):
                raise ConfigError(f"{option}: must be a plain SQL identifier")
            return f'"{value}"'

        return cls(
            table=quoted("table", table),
            key=quoted("key_column", key_column),
            data=quoted("data_column", data_column),
            updated=quoted("updated_column", updated_column),
            approved=None
            if approved_column is None
            else quoted("approved_column", approved_column),
            focal=None
            if focal_x_column is None or focal_y_column is None
            else (
                quoted("focal_x_column", focal_x_column),
                quoted("focal_y_column", focal_y_column),
            ),
        )

    def metadata_query(self, placeholder: str, *, rowid: bool) -> str:
        # length()/octet_length() read the BLOB's size from its header, not its content.
        length = "length" if rowid else "octet_length"
        approved = self.approved or "NULL"
        focal = ", ".join(self.focal) if self.focal else "NULL, NULL"
        first = "rowid, " if rowid else ""
        # Identifiers are validated and quoted (from_names); the key is a bound parameter.
        return (
            f"SELECT {first}{length}({self.data}), {self.updated}, {approved}, {focal} "  # noqa: S608
            f"FROM {self.table} WHERE {self.key} = {placeholder}"
        )


def timestamp(value: Any) -> float | None:
    """A column's update time as POSIX seconds; naive values are UTC (SPEC §7)."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
        except ValueError:
            return None
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.timestamp()
    return None


def stored_file(
    path: str,
    length: Any,
    updated: Any,
    approved: Any,
    default_approved: bool,
    focal: tuple[Any, Any] = (None, None),
) -> StoredFile:
    if length is None:
        raise NotFound("the row has no image")
    modified = timestamp(updated)
    return StoredFile(
        path=path,
        version=f"{modified!r}-{length:x}",
        approved=default_approved if approved is None else bool(approved),
        size=int(length),
        modified=modified,
        filename=path.rsplit("/", 1)[-1],
        focal=focal_point(*focal),
    )


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


class SQLStore:
    """The `sql` store kind: the URL's scheme picks the backend, which does the work."""

    def __init__(
        self,
        url: str,
        *,
        table: str,
        key_column: str,
        data_column: str,
        updated_column: str,
        approved_column: str | None = None,
        focal_x_column: str | None = None,
        focal_y_column: str | None = None,
        approved: bool = False,
        timeout: float = 5.0,
    ) -> None:
        columns = Columns.from_names(
            table=table,
            key_column=key_column,
            data_column=data_column,
            updated_column=updated_column,
            approved_column=approved_column,
            focal_x_column=focal_x_column,
            focal_y_column=focal_y_column,
        )
        self.backend: SQLiteStore | PostgresStore
        if url.startswith("sqlite:///"):
            # SQLAlchemy's convention: sqlite:///rel.db is relative, sqlite:////abs.db absolute.
            database = url.removeprefix("sqlite:///")
            self.backend = SQLiteStore(database, columns, approved=approved, timeout=timeout)
        elif url.startswith(("postgresql://", "postgres://")):
            self.backend = PostgresStore(url, columns, approved=approved, timeout=timeout)
        else:
            raise ConfigError("url: must start with sqlite:/// or postgresql://")

    @classmethod
    def from_settings(
        cls, options: SqlOptions, *, name: str, approved: bool, base_dir: Path
    ) -> SQLStore:
        """A relative SQLite file is relative to the config's folder, and must exist."""
        url = options.url
        if url.startswith("sqlite:///"):
            database = base_dir / url.removeprefix("sqlite:///")
            if not database.is_file():
                raise ConfigError(f"stores.{name}.url: no SQLite database at {database}")
            url = f"sqlite:///{database}"
        try:
            return cls(
                url,
                table=options.table,
                key_column=options.key_column,
                data_column=options.data_column,
                updated_column=options.updated_column,
                approved_column=options.approved_column,
                focal_x_column=options.focal_x_column,
                focal_y_column=options.focal_y_column,
                approved=approved,
                timeout=options.timeout,
            )
        except ConfigError as exc:
            raise ConfigError(f"stores.{name}.{exc}") from None

    async def stat(self, path: str) -> StoredFile:
        return await self.backend.stat(path)

    def open(self, file: StoredFile) -> AsyncIterator[bytes]:
        return self.backend.open(file)

    async def close(self) -> None:
        await self.backend.close()
