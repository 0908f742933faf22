"""Fixtures: a store folder of generated images and real uvicorn servers on loopback ports."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from imgproxy import ImageProxy, Settings
from imgproxy.server import create_app
from tests import images

REQUIRE_SERVICES = os.environ.get("IMGPROXY_REQUIRE_SERVICES") == "1"
Serve = Callable[[Any], "LiveServer"]


def need_binary(name: str) -> str:
    """The binary's path; skips loudly without it, or fails when CI requires services."""
    path = shutil.which(name)
    if path is None:
        message = f"*** {name} is not installed: this test needs the real server ***"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (IMGPROXY_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    return path


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


def settings_for(folder: Path, **sections: Any) -> Settings:
    data: dict[str, Any] = {
        "limits": {"render_concurrency": 2},
        "presets": {"small": "w=64&h=64&fit=cover"},
        "stores": {"media": {"kind": "fs", "root": str(folder), "approved": True}},
    }
    for name, values in sections.items():
        if name == "store":
            data["stores"]["media"].update(values)
        else:
            data.setdefault(name, {}).update(values)
    return Settings.from_mapping(data, base_dir=folder.parent, env={})


class LiveServer:
    """uvicorn serving an ASGI app on a free loopback port, in a thread of this process."""

    def __init__(self, app: Any, host: str = "127.0.0.1") -> None:
        self.socket = socket.socket()
        self.socket.bind((host, 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(
            app, loop="uvloop", http="httptools", log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()


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


def proxy_app(folder: Path, **sections: Any) -> ImageProxy:
    return ImageProxy(settings_for(folder, **sections))


def raw_get(url: str, target: str, headers: str = "") -> tuple[int, bytes]:
    """Send a request line exactly as written (httpx would normalise `..` away)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            f"GET {target} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode(
                "latin-1"
            )
        )
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, data


def assert_healthy(client: httpx.Client) -> None:
    """The server still serves a real rendition after whatever came before."""
    response = client.get("/media/photo.jpg?w=32")
    assert response.status_code == 200
    assert images.decode(response.content).size == (32, 24)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, for the whole session."""
    from tests.services import redis_server

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
    from tests.services import postgres_server

    with postgres_server(tmp_path_factory.mktemp("postgres")) as dsn:
        yield dsn
