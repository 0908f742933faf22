"""Red-team findings, each a request (or a file) a production deployment meets, through the
core with plain values or the ASGI app."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import threading
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from imgproxy import ImageProxy, StoredFile, pipeline
from imgproxy.errors import NotFound
from imgproxy.messages import ImageRequest, ImageResponse
from imgproxy.services import Services
from imgproxy.stores import FileSystemStore
from tests.support import images, settings_for
from tests.support.processes import free_port, running, serving_children


def get(services: Services, path: str, query: str = "", **headers: str) -> ImageResponse:
    request = ImageRequest("GET", path, query, {k.replace("_", "-"): v for k, v in headers.items()})
    return asyncio.run(pipeline.serve(services, request))


def mpo() -> bytes:
    """A JPEG with a multi-picture index (APP2 MPF), as most phones and many cameras write:
    Pillow opens it as "MPO"."""
    out = io.BytesIO()
    first, second = images.photo((64, 48)), images.photo((64, 48))
    first.save(out, "MPO", save_all=True, append_images=[second])
    return out.getvalue()


@pytest.mark.parametrize("formats", [None, ["*"]])
@pytest.mark.parametrize("query", ["", "w=32", "w=32&fm=webp", "fm=json"])
def test_a_multi_picture_jpeg_is_a_jpeg(media: Path, formats: list[str] | None, query: str) -> None:
    """Was 415 "MPO is not an allowed image format" under the default policy, and a 503
    "the source changed" on every request under "*" (sniffed JPEG != probed MPO)."""
    (media / "phone.jpg").write_bytes(mpo())
    extra: dict[str, Any] = {"policy": {"approved_image_formats": formats}} if formats else {}
    services = Services.build(settings_for(media, **extra))
    response = get(services, "/media/phone.jpg", query)
    assert response.status == 200, response.body
    headers = dict(response.headers)
    if query == "fm=json":
        assert b'"format": "jpeg"' in response.body
        assert b'"frames": 1' in response.body
    elif query.endswith("webp"):
        assert images.decode(response.body).format == "WEBP"
        assert images.frames(images.decode(response.body)) == 1  # not an animation
    else:
        assert headers["content-type"] == "image/jpeg"
    asyncio.run(services.close())


def asgi_get(app: ImageProxy, path: str) -> tuple[int, list[tuple[bytes, bytes]]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [],
        "root_path": "",
    }
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], sent[0]["headers"]


@pytest.mark.parametrize("name", ["照片.jpg", "Ⅻ.jpg", "café.jpg"])
def test_a_non_ascii_file_name_is_served(media: Path, name: str) -> None:
    """Content-Disposition kept every str.isalnum() character in its ASCII fallback: a CJK
    name made a header value latin-1 cannot encode, a 500 (UnicodeEncodeError) at send."""
    (media / name).write_bytes(images.jpeg((20, 10)))
    app = ImageProxy(settings_for(media))
    status, headers = asgi_get(app, "/media/" + "".join(f"%{b:02X}" for b in name.encode()))
    assert status == 200
    disposition = dict(headers)[b"content-disposition"]
    assert disposition.isascii()


def test_a_file_name_that_is_not_utf8_on_disk_is_served(media: Path) -> None:
    """A link with a plain name to a file whose name is not UTF-8 (surrogate escapes once
    decoded): quote() raised UnicodeEncodeError, a 500."""
    target = os.fsdecode(b"caf\xe9.jpg")
    (media / target).write_bytes(images.jpeg((20, 10)))
    (media / "link.jpg").symlink_to(media / target)
    status, headers = asgi_get(ImageProxy(settings_for(media)), "/media/link.jpg")
    assert status == 200
    assert dict(headers)[b"content-disposition"].isascii()


@pytest.mark.parametrize("query", ["", "w=10"])
def test_an_unreadable_file_is_not_found(
    media: Path, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    """A file the server may stat but not open (mode 0600, another owner: tests run as
    root, so the refusal is simulated): the head's pread raised PermissionError, a 500 with
    a traceback on every request. stat's own OSError is already a 404 "cannot read"."""
    locked = media / "locked.jpg"
    locked.write_bytes(images.jpeg((20, 10)))
    real_open = os.open

    def refuse(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    services = Services.build(settings_for(media))
    assert get(services, "/media/locked.jpg", query).status == 404
    assert get(services, "/media/photo.jpg", query).status == 200


def test_head_of_a_fifo_does_not_block(media: Path) -> None:
    """A FIFO where stat() saw a file (swapped in between, or a Python caller's StoredFile):
    os.open(O_RDONLY) blocked the event loop until a writer came, for ever."""
    os.mkfifo(media / "pipe.jpg")
    store = FileSystemStore(media)
    file = StoredFile(path="pipe.jpg", version="x", approved=True, size=100)
    outcome: list[object] = []

    def head() -> None:
        try:
            outcome.append(asyncio.run(store.head(file, 32)))
        except Exception as exc:
            outcome.append(exc)

    worker = threading.Thread(target=head, daemon=True)
    worker.start()
    worker.join(5)
    assert outcome and isinstance(outcome[0], NotFound)


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    """`serve --workers 2` whose supervisor is SIGKILLed (the OOM killer, `kill -9`, a unit
    with KillMode=process): the workers served on for ever, orphans on the port, beside the
    ones a restarted supervisor starts (SO_REUSEPORT lets both bind)."""
    import psutil

    config = tmp_path / "imgproxy.toml"
    config.write_text("")
    port = free_port()
    command = [sys.executable, "-m", "imgproxy", "serve", "--config", str(config)]
    with running([*command, "--workers", "2", "--port", str(port)], port, "imgproxy") as server:
        deadline = time.monotonic() + 30
        workers: list[psutil.Process] = []
        while len(workers) < 2 and time.monotonic() < deadline:
            workers = serving_children(server.pid)
            time.sleep(0.05)
        assert len(workers) == 2
        server.kill()
        server.wait(5)
        _, alive = psutil.wait_procs(workers, timeout=15)
        for orphan in alive:
            orphan.kill()
        assert alive == []
