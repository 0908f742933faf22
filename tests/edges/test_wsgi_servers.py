"""The WSGI middleware under a real pre-forking server: gunicorn --preload builds the app in
the master, then forks its workers, which must each serve images (none may hang)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from tests.support import images
from tests.support.processes import free_port, running

APP = """
from imgproxy import ImageProxy, Settings
from imgproxy.wsgi import ImageProxyMiddleware


def site(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"site"]


settings = Settings.from_mapping(
    {{"stores": {{"media": {{"kind": "fs", "root": {root!r}, "approved": True}}}}}}, env={{}}
)
application = ImageProxyMiddleware(site, ImageProxy(settings), prefix="/media")
{warm}
"""

# Serving before the fork starts the master's loop and render threads, which a child lacks.
WARM = """
def _warm():
    import io, sys
    seen = {}
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/media/media/photo.jpg",
               "QUERY_STRING": "w=20", "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr}
    application(environ, lambda status, headers: seen.setdefault("status", status))
    assert seen["status"] == "200 OK", seen
_warm()
"""


def serve_under_gunicorn(tmp_path: Path, *, warm: bool) -> None:
    gunicorn = str(Path(sys.executable).parent / "gunicorn")  # a dev dependency
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(images.jpeg((400, 300)))
    (tmp_path / "preloaded.py").write_text(APP.format(root=str(folder), warm=WARM if warm else ""))
    port = free_port()
    command = [gunicorn, "--preload", "-w", "2", "-b", f"127.0.0.1:{port}", "preloaded:application"]
    with running(command, port, "gunicorn", cwd=str(tmp_path)):
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(base + "/", timeout=10).text == "site"
        for n in range(12):  # new connections: both workers get some
            response = httpx.get(f"{base}/media/media/photo.jpg?w={40 + n}", timeout=10)
            assert response.status_code == 200
            assert images.decode(response.content).width == 40 + n


def test_gunicorn_preload_serves_images_in_every_worker(tmp_path: Path) -> None:
    serve_under_gunicorn(tmp_path, warm=False)


def test_gunicorn_preload_after_the_master_served(tmp_path: Path) -> None:
    serve_under_gunicorn(tmp_path, warm=True)
