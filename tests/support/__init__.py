"""What the tests share: building settings and servers, the signature as SPEC §3 states it,
a store that counts its reads, hostile inputs, and config files for real processes.

The modules beside it: `images` (generated test images), `hostile` (hostile files built at
test time), `origin` (a real HTTP origin), `processes` (redis, PostgreSQL, nginx and imgproxy
processes on free loopback ports), `stores` (one adapter per store kind for the contract
suite), `architecture` (the package's import graph and layers).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import shutil
import socket
import string
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from imgproxy import ImageProxy, Settings, StoredFile
from imgproxy.stores.filesystem import FileSystemStore
from tests.support import images

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


def proxy_app(folder: Path, **sections: Any) -> ImageProxy:
    return ImageProxy(settings_for(folder, **sections))


def never_reading(port: int, targets: list[str]) -> list[socket.socket]:
    """One client per target that asks for it on loopback and reads nothing of its answer
    (a 4 KB receive buffer): a server holds what the client has not taken. Close them."""
    clients = []
    for target in targets:
        conn = socket.socket()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.connect(("127.0.0.1", port))
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: pics\r\n\r\n".encode())
        clients.append(conn)
    return clients


def raw_get(url: str, target: str, headers: str = "", *, source: str = "") -> tuple[int, bytes]:
    """Send a request line exactly as written (httpx would normalise `..` away), from the
    `source` address when given (127.0.0.2: loopback on Linux, but another host to an ACL
    that names 127.0.0.1)."""
    host, port = url.removeprefix("http://").split(":")
    origin = (source, 0) if source else None
    with socket.create_connection((host, int(port)), timeout=10, source_address=origin) as conn:
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


KEY = "s3cret-key"


def spec_signature(key: str, path: str, params: dict[str, str], length: int = 32) -> str:
    """SPEC §3, transcribed: message = path + "?" + params but s, sorted by name, values
    percent-encoded per RFC 3986 (unreserved kept), joined by "&"; base64url(HMAC-SHA256),
    unpadded, first `length` characters."""
    unreserved = string.ascii_letters + string.digits + "-._~"
    pairs = []
    for name in sorted(params):
        value = "".join(
            ch if ch in unreserved else "".join(f"%{b:02X}" for b in ch.encode())
            for ch in params[name]
        )
        pairs.append(f"{name}={value}")
    text = path + "?" + "&".join(pairs)
    digest = hmac.new(key.encode(), text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:length]


class CountingStore(FileSystemStore):
    """The real filesystem store, counting metadata calls and content reads (a whole
    version's, and a head's: the first bytes a new file's facts are learned from)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, approved=True)
        self.stats = 0
        self.reads = 0
        self.heads = 0

    async def stat(self, path: str) -> StoredFile:
        self.stats += 1
        return await super().stat(path)

    async def head(self, file: StoredFile, size: int) -> bytes:
        self.heads += 1
        return await super().head(file, size)

    async def open(self, file: StoredFile) -> AsyncIterator[bytes]:
        self.reads += 1
        async for chunk in super().open(file):
            yield chunk

    async def stream(self, file: StoredFile) -> AsyncIterator[bytes]:
        self.reads += 1
        async for chunk in super().stream(file):
            yield chunk


TRAVERSALS = [
    "/media/../etc/passwd",
    "/media/sub/../../etc/passwd",
    "/media/%2e%2e/etc/passwd",
    "/media/%2E%2E/etc/passwd",
    "/media/.%2e/etc/passwd",
    "/media/..%2fetc%2fpasswd",
    "/media/..%2Fetc%2Fpasswd",
    "/media/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/media/..%5c..%5cetc%5cpasswd",
    "/media/..\\..\\etc\\passwd",
    "/media/a.jpg%00.png",
    "/media/a%0a.jpg",
    "/media/a%7f.jpg",
    "/media//etc/passwd",
    "/media/%2fetc%2fpasswd",
    "/media/./a.jpg",
    "/media/sub//a.jpg",
    "/media/%ff%fe.jpg",
]


BAD = [
    ("w=0", "w"),
    ("w=4097", "w"),
    ("w=-1", "w"),
    ("w=1.5", "w"),
    ("w=", "w"),
    ("w=abc", "w"),
    ("w=+5", "w"),
    ("w= 5", "w"),
    ("h=0", "h"),
    ("h=99999999999", "h"),
    ("dpr=0.5", "dpr"),
    ("dpr=4.01", "dpr"),
    ("dpr=x", "dpr"),
    ("dpr=nan", "dpr"),
    ("dpr=inf", "dpr"),
    ("fit=stretch", "fit"),
    ("fit=COVER", "fit"),
    ("enlarge=2", "enlarge"),
    ("enlarge=true", "enlarge"),
    ("g=middle", "g"),
    ("fx=1.1", "fx"),
    ("fx=-0.1", "fx"),
    ("fy=2", "fy"),
    ("fy=1e-1", "fy"),
    ("fm=bmp", "fm"),
    ("fm=JPEG", "fm"),
    ("q=0", "q"),
    ("q=101", "q"),
    ("q=", "q"),
    ("bg=12", "bg"),
    ("bg=ggg", "bg"),
    ("bg=#fff", "bg"),
    ("bg=12345", "bg"),
    ("v=", "v"),
    ("v=" + "a" * 65, "v"),
    ("v=a/b", "v"),
    ("p=nope", "p"),
    ("zoom=2", "zoom"),
    ("w=1&w=2", "w"),
    ("w", "w"),
    ("W=10", "W"),
]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(folder: Path, media: Path, **sections: dict[str, Any]) -> Path:
    tables = {"stores.media": {"kind": "fs", "root": str(media), "approved": True}}
    tables.update({"presets": {"small": "w=40&h=40&fit=cover", "auto": "w=50&fm=auto"}})
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    text = "".join(
        f"[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items())
        for name, values in tables.items()
    )
    path = folder / f"imgproxy-{len(list(folder.glob('imgproxy-*.toml')))}.toml"
    path.write_text(text)
    return path


def metric(base: str, name: str, labels: str = "") -> float:
    text = httpx.get(base + "/metrics").text
    pattern = rf"^{re.escape(name)}{re.escape('{' + labels + '}') if labels else ''} (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0
