"""`/readyz` tells a balancer the truth: 200 while every store and tier outside the process
answers, 503 naming each that does not (a stopped Redis, a dead origin, a PostgreSQL table
locked by a migration), always within server.ready_timeout, for many probes at once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from imgproxy import Settings
from imgproxy.server.app import create_app
from tests.support import LiveServer
from tests.support.origin import Origin
from tests.support.processes import redis_server
from tests.support.stores import TABLE

asyncpg = pytest.importorskip("asyncpg")
pytestmark = pytest.mark.service

DEADLINE = 1.0  # server.ready_timeout
PROBES = 24  # balancers, and anyone else, asking at once


def settings(tmp_path: Path, dsn: str, table: str, origin: str, redis: str) -> Settings:
    (tmp_path / "media").mkdir(exist_ok=True)
    web = {"kind": "http", "base_url": f"{origin}/files/", "allow_private_networks": True}
    db = {"kind": "sql", "url": dsn, **TABLE, "table": table, "timeout": 30}  # > the deadline
    return Settings.from_mapping(
        {
            "server": {"ready_timeout": DEADLINE},
            "stores": {
                "media": {"kind": "fs", "root": str(tmp_path / "media")},
                "web": web,
                "db": db,
            },
            "cache": {"disk_path": str(tmp_path / "cache"), "redis_url": redis},
        },
        env={},
    )


async def probes(base: str) -> list[tuple[int, dict[str, Any], float]]:
    async def one(client: httpx.AsyncClient) -> tuple[int, dict[str, Any], float]:
        began = time.monotonic()
        reply = await client.get("/readyz")
        return reply.status_code, reply.json(), time.monotonic() - began

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        return await asyncio.gather(*(one(client) for _ in range(PROBES)))


def test_readyz_is_200_when_every_part_answers_and_503_naming_each_that_does_not(
    tmp_path: Path, postgres_dsn: str, serve: Callable[..., LiveServer]
) -> None:
    table = f"images_{uuid.uuid4().hex[:8]}"
    origin = LiveServer(Origin()).__enter__()
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    redis = redis_server(redis_dir)
    redis_url = redis.__enter__()
    try:
        server = serve(create_app(settings(tmp_path, postgres_dsn, table, origin.url, redis_url)))

        async def scenario() -> None:
            setup = await asyncpg.connect(postgres_dsn)
            await setup.execute(
                f"CREATE TABLE {table} (user_id int PRIMARY KEY, data bytea,"
                " last_updated timestamptz, approved boolean)"
            )
            healthy = await probes(server.url)
            assert {status for status, _, _ in healthy} == {200}, healthy[0]
            parts = healthy[0][1]["parts"]
            assert parts == {
                "stores.media": "ok",
                "stores.web": "ok",
                "stores.db": "ok",
                "cache.disk": "ok",
                "cache.redis": "ok",
            }
            # A migration locks the table, Redis stops, the origin goes away.
            migration = setup.transaction()
            await migration.start()
            await setup.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            redis.__exit__(None, None, None)
            origin.__exit__()
            try:
                answers = await probes(server.url)
            finally:
                await migration.rollback()
                await setup.close()
            assert {status for status, _, _ in answers} == {503}
            assert max(seconds for _, _, seconds in answers) < DEADLINE + 1.0
            failed = answers[0][1]["parts"]
            assert failed["stores.media"] == "ok" and failed["cache.disk"] == "ok"
            assert failed["stores.db"].startswith("no answer within 1 s")
            assert failed["stores.web"].startswith("failed: UpstreamError")
            assert failed["cache.redis"].startswith("failed: ConnectionError")
            assert answers[0][1]["ready"] is False

        asyncio.run(scenario())
        assert httpx.get(f"{server.url}/healthz").status_code == 200  # still cheap and alive
    finally:
        origin.__exit__()
        redis.__exit__(None, None, None)
