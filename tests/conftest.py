"""Fixtures: a store folder of generated images and real uvicorn servers on loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from imgproxy.server.app import create_app
from tests.support import LiveServer, images, settings_for

if TYPE_CHECKING:
    from tests.support.objects import S3Server


@pytest.fixture
def media(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(images.jpeg((640, 480)))
    (folder / "wide.png").write_bytes(images.png((400, 200)))
    (folder / "alpha.png").write_bytes(images.rgba_png())
    (folder / "anim.gif").write_bytes(images.gif(3))
    (folder / "sub").mkdir()
    (folder / "sub" / "nested.jpg").write_bytes(images.jpeg((100, 100)))
    (folder / "me now.jpg").write_bytes(images.jpeg((50, 40)))
    return folder


@pytest.fixture
def serve() -> Iterator[Callable[..., LiveServer]]:
    """serve(app) -> a started LiveServer, stopped after the test."""
    started: list[LiveServer] = []

    def start(app: Any) -> LiveServer:
        server = LiveServer(app).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__()


@pytest.fixture
def server(media: Path, serve: Callable[..., LiveServer]) -> LiveServer:
    """The standalone app over the generated media folder."""
    return serve(create_app(settings_for(media)))


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, for the whole session."""
    from tests.support.processes import redis_server

    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis(redis_url: str) -> str:
    """The session's redis-server, emptied for this test."""
    import redis as redis_client

    with redis_client.Redis.from_url(redis_url) as client:
        client.flushall()
    return redis_url


@pytest.fixture(scope="session")
def postgres_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server: initdb + pg_ctl on a free loopback port in a temp folder."""
    from tests.support.processes import postgres_server

    with postgres_server(tmp_path_factory.mktemp("postgres")) as dsn:
        yield dsn


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS's `weed mini`) with two accounts, for the whole session."""
    from tests.support.objects import seaweedfs

    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
