"""SQL store specifics: identifiers from config are validated, the metadata query never
selects the BLOB, naive timestamps are UTC, and config errors name their key."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imgproxy.errors import ConfigError
from imgproxy.settings import Settings
from imgproxy.stores import SQLStore, build_store
from imgproxy.stores.postgres import PostgresStore
from imgproxy.stores.sql_rows import Columns, timestamp
from imgproxy.stores.sqlite import SQLiteStore
from tests.support import images
from tests.support.stores import TABLE


@pytest.mark.parametrize(
    "bad", ['users"; DROP TABLE x; --', "a b", "1abc", "", "x" * 64, "tbl.col", "naïve"]
)
def test_identifiers_are_validated(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"^table: must be a plain SQL identifier"):
        SQLStore("sqlite:///app.db", **TABLE | {"table": bad})


def profile_database(database: Path, image: bytes) -> Path:
    """An SQLite file with the `profile_picture` table of TABLE and user 1's picture."""
    with sqlite3.connect(database) as db:
        db.execute(
            "CREATE TABLE profile_picture (user_id INTEGER PRIMARY KEY, data BLOB,"
            " last_updated TEXT, approved INTEGER)"
        )
        db.execute("INSERT INTO profile_picture VALUES (1, ?, '2026-01-01 12:00:00', 1)", (image,))
    return database


def test_the_metadata_query_never_selects_the_blob(tmp_path: Path) -> None:
    database = profile_database(tmp_path / "app.db", images.jpeg((32, 32)))
    store = SQLiteStore(database, Columns.from_names(**TABLE), approved=False)
    statements: list[str] = []

    def traced(path: str) -> object:
        connection = store._connection()
        connection.set_trace_callback(statements.append)
        return store._fetch_row(path)

    row = asyncio.run(store._run(traced, "1"))
    assert row is not None
    assert len(statements) == 1
    assert 'length("data")' in statements[0]
    assert statements[0].count('"data"') == 1  # only inside length()
    file = asyncio.run(store.stat("1"))
    assert file.modified == datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp()  # naive = UTC
    assert file.approved is True  # the column wins over the store's default
    asyncio.run(store.close())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-01 12:00:00", datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp()),
        ("2026-01-01T12:00:00+02:00", datetime(2026, 1, 1, 10, tzinfo=UTC).timestamp()),
        (datetime(2026, 1, 1, 12), datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp()),
        (1_700_000_000, 1_700_000_000.0),
        ("not a date", None),
        (None, None),
    ],
)
def test_timestamps(value: object, expected: float | None) -> None:
    assert timestamp(value) == expected


@pytest.mark.parametrize(
    ("store", "key"),
    [
        ({"url": "mysql://x"}, "stores.a.url"),
        ({"url": "sqlite:///missing.db"}, "stores.a.url"),
        ({"url": "sqlite:///app.db", "colour": "red"}, "stores.a.colour"),
        ({"url": "sqlite:///app.db", "key_column": "id; --"}, "stores.a.key_column"),
        ({"url": "sqlite:///app.db", "approved_column": ""}, "stores.a.approved_column"),
        ({"url": "sqlite:///app.db", "table": 7}, "stores.a.table"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, store: dict[str, object], key: str) -> None:
    sqlite3.connect(tmp_path / "app.db").close()
    options = {**TABLE, **store, "kind": "sql"}

    def start() -> None:
        settings = Settings.from_mapping({"stores": {"a": options}}, base_dir=tmp_path, env={})
        build_store(settings.stores["a"], settings)

    with pytest.raises(ConfigError) as caught:
        start()
    assert str(caught.value).startswith(key)


def test_the_url_picks_the_backend(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "app.db").close()
    table = {**TABLE, "kind": "sql", "url": "sqlite:///app.db"}
    settings = Settings.from_mapping({"stores": {"a": table}}, base_dir=tmp_path, env={})
    store = build_store(settings.stores["a"], settings)
    assert isinstance(store, SQLStore)
    assert isinstance(store.backend, SQLiteStore)
    assert store.backend.database == str(tmp_path / "app.db")  # relative to the config
    asyncio.run(store.close())
    remote = SQLStore("postgresql://app@db.internal/app", **TABLE)
    assert isinstance(remote.backend, PostgresStore)  # connects on first use, not here
    with pytest.raises(ConfigError, match=r"^url: must start with sqlite:/// or postgresql://"):
        SQLStore("mysql://db.internal/app", **TABLE)
