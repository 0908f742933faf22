"""SPEC §11.1 store isolation for `sql` stores, against real databases and many clients at
once: a table locked by a migration is a 504 after `timeout` (memory hits included: the
stat comes first, for freshness), and a database restart under load is never a 500."""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from imgproxy import ImageProxy, Settings
from tests.stores.test_sql import profile_database
from tests.support import images
from tests.support.processes import postgres
from tests.support.stores import TABLE

asyncpg = pytest.importorskip("asyncpg")

TIMEOUT = 0.5


def proxy(url: str, **store: Any) -> ImageProxy:
    options = {"kind": "sql", "url": url, **TABLE, "approved": True, "timeout": TIMEOUT, **store}
    return ImageProxy(Settings.from_mapping({"stores": {"db": options}}, env={}))


async def timed(client: httpx.AsyncClient, target: str) -> tuple[int, str, float]:
    began = time.monotonic()
    reply = await client.get(target)
    code = reply.json()["error"] if reply.status_code != 200 else ""
    return reply.status_code, code, time.monotonic() - began


async def burst(base: str, targets: list[str]) -> list[tuple[int, str, float]]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        return await asyncio.gather(*(timed(client, target) for target in targets))


# Half are memory hits of the warmed rendition, half cold renders: each waits for the stat.
TARGETS = [f"/db/1?w={10 if n % 2 else 20 + n}" for n in range(12)]


def test_a_locked_postgres_table_is_a_504_after_the_timeout(postgres_dsn: str, serve: Any) -> None:
    table = f"images_{uuid.uuid4().hex[:8]}"
    server = serve(proxy(postgres_dsn, table=table))

    async def scenario() -> None:
        setup = await asyncpg.connect(postgres_dsn)
        await setup.execute(
            f"CREATE TABLE {table} (user_id int PRIMARY KEY, data bytea,"
            " last_updated timestamptz, approved boolean)"
        )
        photo = images.jpeg((64, 48))
        await setup.execute(f"INSERT INTO {table} VALUES (1, $1, now(), true)", photo)
        assert [s for s, _, _ in await burst(server.url, ["/db/1?w=10"])] == [200]
        migration = setup.transaction()
        await migration.start()
        await setup.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            # Without a deadline every request waits for the lock: 6 s is then a failure.
            answers = await asyncio.wait_for(burst(server.url, TARGETS), 6)
            assert {(s, code) for s, code, _ in answers} == {(504, "upstream_timeout")}
            assert max(seconds for _, _, seconds in answers) < TIMEOUT + 2.5
            # The statements were cancelled on the server too: none still waits in line
            # behind the migration (where it would block every later reader).
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            for _ in range(40):
                if await setup.fetchval(waiting) == 0:
                    break
                await asyncio.sleep(0.05)
            assert await setup.fetchval(waiting) == 0
        finally:
            await migration.rollback()
        after = await burst(server.url, ["/db/1?w=10", "/db/1?w=77"])
        assert [s for s, _, _ in after] == [200, 200]  # the pool recovered its connections
        await setup.execute(f"DROP TABLE {table}")
        await setup.close()

    asyncio.run(scenario())


def test_a_postgres_restart_under_load_is_never_a_500(tmp_path: Path, serve: Any) -> None:
    """16 clients ask for cold renditions (a stat and a read each) while the server stops
    and starts: failures are 502/503/504, never a 500, and the store recovers."""
    with postgres(tmp_path) as database:
        server = serve(proxy(database.dsn, table="images", timeout=2.0))

        async def scenario() -> collections.Counter[int]:
            setup = await asyncpg.connect(database.dsn)
            await setup.execute(
                "CREATE TABLE images (user_id int PRIMARY KEY, data bytea,"
                " last_updated timestamptz, approved boolean)"
            )
            for key in range(1, 21):
                photo = images.jpeg((40 + key, 30))
                await setup.execute("INSERT INTO images VALUES ($1, $2, now(), true)", key, photo)
            await setup.close()
            counts: collections.Counter[int] = collections.Counter()
            stop = asyncio.Event()

            async def client(k: int, http: httpx.AsyncClient) -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    reply = await http.get(f"/db/{1 + (n + k) % 20}?w={8 + (n * 16 + k) % 400}")
                    counts[reply.status_code] += 1

            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                clients = [asyncio.create_task(client(k, http)) for k in range(16)]
                await asyncio.sleep(0.8)
                await asyncio.to_thread(database.stop)
                await asyncio.sleep(0.8)
                await asyncio.to_thread(database.start)
                await asyncio.sleep(1.0)
                stop.set()
                await asyncio.gather(*clients)
                for _ in range(50):  # the pool reconnects on its own
                    if (await http.get("/db/3?w=5")).status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError("the store never recovered")
            return counts

        counts = asyncio.run(scenario())
    assert 500 not in counts, counts
    assert counts[200] > 0 and counts[502] + counts[503] + counts[504] > 0, counts
    assert set(counts) <= {200, 502, 503, 504}, counts


def test_a_locked_sqlite_database_is_a_504_after_the_timeout(tmp_path: Path, serve: Any) -> None:
    """A writer's exclusive lock: every reader waited the busy timeout in turn (5 s each,
    one thread); now each request gives up after its own deadline."""
    database = profile_database(tmp_path / "app.db", images.jpeg((64, 48)))
    server = serve(proxy(f"sqlite:///{database}"))
    assert httpx.get(server.url + "/db/1?w=10").status_code == 200
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        answers = asyncio.run(asyncio.wait_for(burst(server.url, TARGETS), 20))
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert {(s, code) for s, code, _ in answers} == {(504, "upstream_timeout")}
    assert max(seconds for _, _, seconds in answers) < TIMEOUT + 2.5
    assert httpx.get(server.url + "/db/1?w=11").status_code == 200
