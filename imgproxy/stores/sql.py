"""The `sql` store kind: a table of BLOBs -> StoredFile metadata (one query that never
selects the BLOB) and the BLOB's bytes, read only on a cache miss. The URL's scheme picks
the backend: SQLite (sqlite.py) or PostgreSQL (postgres.py); what they share, the table's
columns as checked identifiers and a row as a StoredFile, is in sql_rows.py.

Every call has one deadline, `timeout` (connection, pool wait and statement alike): a table
locked by a migration is a 504 after it, never an unbounded wait (SPEC §11.1).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from imgproxy.errors import ConfigError
from imgproxy.store_options import SqlOptions
from imgproxy.stores.base import StoredFile
from imgproxy.stores.postgres import PostgresStore
from imgproxy.stores.sql_rows import Columns
from imgproxy.stores.sqlite import SQLiteStore


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
