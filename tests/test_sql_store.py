"""SQL store specifics: identifiers from config are validated, the metadata query never
selects the BLOB, naive timestamps are UTC, and config errors name their key."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imgproxy.errors import ConfigError
from imgproxy.pipeline import Pipeline
from imgproxy.settings import Settings
from imgproxy.stores.sql import Columns, SQLiteStore, timestamp
from tests import images
from tests.stores import TABLE


@pytest.mark.parametrize(
    "bad", ['users"; DROP TABLE x; --', "a b", "1abc", "", "x" * 64, "tbl.col", "naïve"]
)
def test_identifiers_are_validated(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"^t\.table: must be a plain SQL identifier"):
        Columns.from_options({**TABLE, "table": bad}, "t")


def test_the_metadata_query_never_selects_the_blob(tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    with sqlite3.connect(database) as db:
        db.execute(
            "CREATE TABLE profile_picture (user_id INTEGER PRIMARY KEY, data BLOB,"
            " last_updated TEXT, approved INTEGER)"
        )
        db.execute(
            "INSERT INTO profile_picture VALUES (1, ?, '2026-01-01 12:00:00', 1)",
            (images.jpeg((32, 32)),),
        )
    store = SQLiteStore(database, Columns.from_options(TABLE, "t"), approved=False)
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
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, store: dict[str, str], key: str) -> None:
    sqlite3.connect(tmp_path / "app.db").close()
    options = {**TABLE, **store, "kind": "sql"}
    settings = Settings.from_mapping({"stores": {"a": options}}, base_dir=tmp_path, env={})
    with pytest.raises(ConfigError) as caught:
        Pipeline(settings)
    assert str(caught.value).startswith(key)
