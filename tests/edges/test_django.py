"""examples/django_site, started for real (uvicorn for ASGI, runserver for WSGI) on a fresh
SQLite database and media folder: Django storages served by imgproxy, uploads checked by
ImageValidator, thumbnails warmed on save and purged on replace and delete (instance,
queryset, cascade), fetch from a URL; and the lifecycle's edge cases inside the project."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imgproxy import render
from imgproxy.conditional import surrogate_key
from tests.support import LiveServer, hostile, images, metric
from tests.support.origin import Origin
from tests.support.processes import free_port, running, served

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "examples" / "django_site"
ACCEPTS = ("image/avif,image/webp,*/*", "image/webp,*/*", "*/*")  # a browser's, for fm=auto
# Each preset is fm=auto: AVIF (where Pillow has it), WebP and the source's own format.
VARIANTS = 3 if render.AVIF_AVAILABLE else 2
PHOTO_PRESETS = ("thumb", "card")


def _env(data: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "django_site.settings",
        "DJANGO_SITE_DATA": str(data),
        **extra,
    }


def _migrate(data: Path) -> None:
    command = [sys.executable, "manage.py", "migrate", "--verbosity", "0"]
    subprocess.run(command, cwd=SITE, env=_env(data), check=True, timeout=60)


@contextmanager
def site(data: Path, kind: str, **env: str) -> Iterator[str]:
    """The example site on a fresh database: `asgi` under uvicorn, `wsgi` under runserver."""
    _migrate(data)
    port = free_port()
    if kind == "asgi":
        command = [
            *(sys.executable, "-m", "uvicorn", "django_site.asgi:application"),
            *("--port", str(port), "--log-level", "warning", "--lifespan", "off"),
        ]
    else:
        command = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    with running(command, port, f"django {kind}", cwd=str(SITE), env=_env(data, **env)):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def django_asgi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with site(tmp_path_factory.mktemp("django"), "asgi") as base:
        yield base


def test_django_storage_files_are_served(django_asgi: str) -> None:
    page = httpx.get(django_asgi + "/")
    assert page.status_code == 200
    assert "/media/photos/chelsea.png?p=thumb" in page.text  # Django itself still answers
    thumb = httpx.get(
        django_asgi + "/media/photos/chelsea.png?p=thumb", headers={"accept": "image/webp"}
    )
    assert thumb.status_code == 200
    assert thumb.headers["content-type"] == "image/webp"
    assert images.decode(thumb.content).size == (240, 240)
    original = httpx.get(django_asgi + "/media/photos/rocket.jpg")
    assert original.content == (SITE.parent / "media" / "rocket.jpg").read_bytes()
    again = httpx.get(
        django_asgi + "/media/photos/rocket.jpg",
        headers={"if-none-match": original.headers["etag"]},
    )
    assert again.status_code == 304


def test_django_storage_refusals(django_asgi: str) -> None:
    assert httpx.get(django_asgi + "/media/photos/nope.jpg").status_code == 404
    assert httpx.get(django_asgi + "/media/photos/SOURCES.md").status_code == 415
    assert httpx.get(django_asgi + "/media/photos/rocket.jpg?w=10").status_code == 403  # unsigned
    assert httpx.get(django_asgi + "/mediax").status_code == 404  # Django's, not ours
    assert "application/json" not in httpx.get(django_asgi + "/mediax").headers.get(
        "content-type", ""
    )


class Browser:
    """A user of the gallery: forms posted with their CSRF token, pages parsed."""

    def __init__(self, base: str, data: Path) -> None:
        self.http = httpx.Client(base_url=base, timeout=30)
        self.data = data

    def post(
        self, action: str, files: dict[str, bytes] | None = None, **fields: str
    ) -> httpx.Response:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', self.http.get("/").text)
        assert token is not None
        uploads = {k: (f"{k}.png", v, "image/png") for k, v in (files or {}).items()}
        data = {"csrfmiddlewaretoken": token.group(1), **fields}
        return self.http.post(action, data=data, files=uploads)

    def photos(self) -> dict[int, str]:
        """photo id -> its file's name in the storage, as the home page lists them."""
        found = re.findall(r'data-photo="(\d+)" data-name="([^"]+)"', self.http.get("/").text)
        return {int(pk): name for pk, name in found}

    def cached(self, name: str) -> int:
        """Renditions of uploads/`name` in the disk tier (a purge removes its folder)."""
        key = surrogate_key("uploads", name)
        folder = self.data / "cache" / key[:2] / key
        return len(list(folder.iterdir())) if folder.is_dir() else 0

    def warmed(self, name: str, presets: tuple[str, ...] = PHOTO_PRESETS) -> None:
        deadline = time.monotonic() + 60
        while self.cached(name) < VARIANTS * len(presets):
            assert time.monotonic() < deadline, f"{name} was not warmed"
            time.sleep(0.05)

    def renders(self, name: str, presets: tuple[str, ...] = PHOTO_PRESETS) -> list[bool]:
        """For each request a browser sends for the presets: did it render (Server-Timing)?"""
        rendered = []
        for preset in presets:
            for accept in ACCEPTS:
                response = self.http.get(
                    f"/media/uploads/{name}?p={preset}", headers={"accept": accept}
                )
                assert response.status_code == 200, response.text
                rendered.append("render;" in response.headers.get("server-timing", ""))
        return rendered

    def error_codes(self, response: httpx.Response) -> list[str]:
        return re.findall(r'data-code="([^"]+)"', response.text)


def color_png(color: tuple[int, int, int]) -> bytes:
    return images.encode(Image.new("RGB", (480, 360), color), "PNG")


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_gallery_story(kind: str, tmp_path: Path) -> None:
    origin = Origin()
    origin.put("holiday snap.jpeg", images.jpeg((320, 240)))
    with (
        contextlib.ExitStack() as stack,
        LiveServer(origin, host="127.0.0.2") as remote,
        site(
            tmp_path,
            kind,
            GALLERY_FETCH_STORE="web",
            IMGPROXY_STORES__WEB__KIND="http",
            IMGPROXY_STORES__WEB__BASE_URL=remote.url + "/files/",
            IMGPROXY_STORES__WEB__ALLOWED_NETWORKS="127.0.0.2/32",
        ) as base,
    ):
        user = Browser(base, tmp_path)
        stack.callback(user.http.close)
        assert user.post("/albums", name="Trip").status_code == 303
        assert user.post("/albums", name="Home").status_code == 303

        # Upload: 303, then every preset is in the serving proxy's tiers: nothing renders.
        assert user.post("/photos", {"image": images.png((400, 300))}, album="1").status_code == 303
        (first,) = user.photos().values()
        user.warmed(first)
        assert user.renders(first) == [False] * 6

        # Hostile uploads: the form answers 400 with imgproxy's code; nothing is stored.
        refused = {
            "not_approved": images.encode(images.photo((20, 20)), "BMP"),
            "unsupported_format": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
            "undecodable": images.png((300, 300))[:400],
            "too_large": hostile.png_bomb(),
        }
        for code, data in refused.items():
            response = user.post("/photos", {"image": data}, album="1")
            assert (response.status_code, user.error_codes(response)) == (400, [code])
        assert len(user.photos()) == 1

        # Replace: the old file's renditions are gone from every tier (the file is kept, so
        # asking for them renders again), the new file's are warmed.
        (pk,) = user.photos()
        assert (
            user.post(f"/photos/{pk}/replace", {"image": color_png((200, 0, 0))}).status_code == 303
        )
        second = user.photos()[pk]
        assert second != first
        assert user.cached(first) == 0
        user.warmed(second)
        assert user.renders(second) == [False] * 6
        assert all(user.renders(first, ("thumb",)))

        # Fetch from a URL: refused for a private address unless allowed, named from the URL.
        response = user.post("/photos/fetch", album="1", url="http://127.0.0.1:9/cat.png")
        assert response.status_code == 400 and user.error_codes(response)
        fetched_url = remote.url + "/files/holiday%20snap.jpeg"
        response = user.post("/photos/fetch", album="2", url=fetched_url)
        assert response.status_code == 303, user.error_codes(response)
        fetched = [n for n in user.photos().values() if n.startswith("photos/holiday")]
        assert len(fetched) == 1 and fetched[0].endswith(".jpg")
        user.warmed(fetched[0])

        # Delete one photo: its renditions are gone.
        (pk,) = [p for p, n in user.photos().items() if n == second]
        assert user.post(f"/photos/{pk}/delete").status_code == 303
        assert user.cached(second) == 0 and all(user.renders(second, ("thumb",)))

        # 8 uploads at once: every one warmed, each thumbnail of its own image.
        colors = [(30 * i, 255 - 30 * i, 90) for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            posted = list(
                pool.map(lambda c: user.post("/photos", {"image": color_png(c)}, album="1"), colors)
            )
        assert [r.status_code for r in posted] == [303] * 8
        names = [n for n in user.photos().values() if n not in (first, *fetched)]
        assert len(names) == 8
        seen = set()
        for name in names:
            user.warmed(name)
            thumb = user.http.get(f"/media/uploads/{name}?p=thumb", headers={"accept": "*/*"})
            assert "render;" not in thumb.headers.get("server-timing", "")
            picture = images.decode(thumb.content).convert("RGB")
            assert picture.size == (240, 240)
            seen.add(min(colors, key=lambda c: _distance(c, picture.getpixel((120, 120)))))
        assert seen == set(colors)

        # A queryset delete (album 1's photos), then a cascade (album 2 and its photo).
        assert user.post("/albums/1/clear").status_code == 303
        assert user.post("/albums/2/delete").status_code == 303
        assert user.photos() == {}
        for name in [*names, *fetched]:
            assert user.cached(name) == 0
            assert all(user.renders(name, ("thumb",)))  # files kept: rendered anew, not cached


def _distance(a: tuple[int, ...], b: object) -> int:
    assert isinstance(b, tuple)
    return sum(abs(x - y) for x, y in zip(a, b, strict=False))


SCENARIO = r"""
import json, logging, threading, django
from django.core.files.base import ContentFile
from django.db import transaction
django.setup()
from gallery.models import Album, Photo
from imgproxy.contrib.django import lifecycle, serving, sweep
from tests.support import images

logs = []
class Keep(logging.Handler):
    def emit(self, record): logs.append(record.getMessage())
logging.getLogger("imgproxy.contrib.django.lifecycle").addHandler(Keep())
proxy = serving.current().proxy
store = proxy.services.mounts["uploads"].store
out = {}

def renders_now(name):
    async def ask(p):
        before = p.services.metrics.renders
        await p.warm("uploads", name, ["thumb"])
        return p.services.metrics.renders - before
    return serving.current().run(ask)

album = Album.objects.create(name="a")
try:
    with transaction.atomic():
        Photo.objects.create(album=album, image=ContentFile(images.png((64, 64)), "gone.png"))
        raise RuntimeError("roll back")
except RuntimeError:
    pass
out["rolled_back_waiting"] = lifecycle.warmer.waiting

junk = Photo.objects.create(album=album, image=ContentFile(b"junk" * 50, "junk.png"))
out["junk_saved"] = Photo.objects.filter(pk=junk.pk).exists()

def save(i):
    Photo.objects.create(album=album, image=ContentFile(images.png((50 + i, 40)), f"p{i}.png"))
threads = [threading.Thread(target=save, args=(i,)) for i in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
out["warm_threads"] = sum(t.name == "imgproxy-warm" for t in threading.enumerate())
out["waiting_max"] = lifecycle.warmer.waiting
lifecycle.warmer.join()
out["renders_after_warm"] = [renders_now(p.image.name) for p in Photo.objects.exclude(pk=junk.pk)]
out["logs"] = logs

album.cover.save("cover.png", ContentFile(images.png((80, 80))))
lifecycle.warmer.join()
twin = Album.objects.create(name="b", cover=album.cover.name)  # a copied row: the same file
twin.delete()
sweep.sweeper.join()
out["shared_cover_kept"] = album.cover.storage.exists(album.cover.name)
cover, names = album.cover.name, [p.image.name for p in album.photos.all()]
album.delete()
sweep.sweeper.join()  # the old file is deleted a moment after the commit
out["cover_file_exists"] = album.cover.storage.exists(cover)
out["photo_files_exist"] = all(album.cover.storage.exists(n) for n in names)
def removed(name):
    return serving.current().run(lambda p: p.purge("uploads", name)).removed
out["removed_after_cascade"] = [removed(n) for n in [cover, *names]]
print(json.dumps(out))
"""


def test_lifecycle_inside_the_project(tmp_path: Path) -> None:
    """The cases a browser cannot show: a rolled-back save, a file the validator never saw,
    8 saves from 8 threads against one warm thread, an album's cover deleted with it."""
    _migrate(tmp_path)
    env = _env(tmp_path, PYTHONPATH=os.pathsep.join([str(SITE), str(ROOT)]))
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO],
        cwd=SITE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["rolled_back_waiting"] == 0
    assert out["junk_saved"] is True
    failures = [line for line in out["logs"] if "junk" in line]
    assert failures and all("415 unsupported_format" in line for line in failures), out["logs"]
    assert out["warm_threads"] == 1
    assert out["waiting_max"] <= 8
    assert out["renders_after_warm"] == [0] * 8
    assert out["shared_cover_kept"] is True  # delete_old never takes another row's file
    assert out["cover_file_exists"] is False  # delete_old=True for covers
    assert out["photo_files_exist"] is True  # and False for photos
    assert out["removed_after_cascade"] == [0] * 10  # the cover, 9 photos: all purged already


def test_the_warm_command_walks_a_django_storage(tmp_path: Path) -> None:
    """`manage.py imgproxy_warm` over the site's own proxy, whose `photos` store is a Django
    storage: every file it lists is rendered once; SOURCES.md is named as a failure."""
    _migrate(tmp_path)
    env = _env(tmp_path, PYTHONPATH=os.pathsep.join([str(SITE), str(ROOT)]))
    command = [sys.executable, "manage.py", "imgproxy_warm", "photos", "--preset", "thumb"]
    runs = [
        subprocess.run(command, cwd=SITE, env=env, capture_output=True, text=True, timeout=120)
        for _ in range(2)
    ]
    images_there = len([p for p in (SITE.parent / "media").iterdir() if p.suffix != ".md"])
    for run in runs:
        assert run.returncode == 1, run.stderr  # SOURCES.md is no image
        assert "failed: photos/SOURCES.md (p=thumb): 415" in run.stderr, run.stderr
    assert f"failed {len(ACCEPTS)}" in runs[0].stdout, runs[0].stdout
    assert f"skipped {images_there * len(ACCEPTS)}" in runs[1].stdout, runs[1].stdout


# The usual deployment: the site itself mounts no proxy (a plain Django WSGI application), and
# settings.IMGPROXY names the stores and shared tiers a separate `imgproxy serve` is given.
COMMON_SETTINGS = """
from django_site.settings import *  # noqa: F403

WSGI_APPLICATION = None  # Django's own application: nothing in the site serves images
IMGPROXY = {**IMGPROXY, "stores": {"uploads": {"kind": "fs", "root": str(MEDIA_ROOT)}}}
"""

# Saves photos and exits at once: its warms are done on the way out.
SAVER = """
import json, sys, django
django.setup()
from django.core.files.base import ContentFile
from gallery.models import Album, Photo
from tests.support import images

album = Album.objects.create(name="a")
names = []
for i in range(int(sys.argv[1])):
    data = ContentFile(images.png((300 + 20 * i, 200)), f"s{i}.png")
    names.append(Photo.objects.create(album=album, image=data).image.name)
print(json.dumps(names))
"""

DELETER = """
import sys, django
django.setup()
from gallery.models import Photo

Photo.objects.get(image=sys.argv[1]).delete()
"""

SERVER_CONFIG = """
[security]
keys = ["example-signing-key"]
[server]
timing = true
[cache]
disk_path = "{data}/cache"
redis_url = "{redis}"
[presets]
thumb = "w=240&h=240&fit=cover&fm=auto"
card = "w=480&h=320&fit=cover&fm=auto"
[stores.uploads]
kind = "fs"
root = "{data}/uploads"
"""


def _in_site(data: Path, args: list[str], redis: str) -> subprocess.CompletedProcess[str]:
    env = _env(
        data,
        PYTHONPATH=os.pathsep.join([str(data), str(SITE), str(ROOT)]),
        DJANGO_SETTINGS_MODULE="common_settings",
        IMGPROXY_CACHE__REDIS_URL=redis,
    )
    return subprocess.run(
        [sys.executable, *args], cwd=SITE, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_site_that_serves_nothing_warms_and_purges_a_separate_server(
    tmp_path: Path, redis: str
) -> None:
    """Django saves (a short-lived process that exits at once, and `manage.py imgproxy_warm`
    for a file saved before), a separate `imgproxy serve` sharing the disk tier and Redis
    serves: every preset a browser asks for is a hit there (no render), and a delete in
    another process purges the server's own memory tier through the broadcast."""
    (tmp_path / "common_settings.py").write_text(COMMON_SETTINGS)
    env = _env(tmp_path, PYTHONPATH=os.pathsep.join([str(tmp_path), str(SITE), str(ROOT)]))
    env["DJANGO_SETTINGS_MODULE"] = "common_settings"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=SITE,
        env=env,
        check=True,
        timeout=60,
    )
    (tmp_path / "uploads" / "photos").mkdir(parents=True)
    (tmp_path / "uploads" / "photos" / "before.png").write_bytes(images.png((320, 240)))
    config = tmp_path / "imgproxy.toml"
    config.write_text(SERVER_CONFIG.format(data=tmp_path, redis=redis))

    saved = _in_site(tmp_path, ["-c", SAVER, "4"], redis)
    assert saved.returncode == 0, saved.stderr
    assert "no ImageProxy" not in saved.stderr and "Traceback" not in saved.stderr, saved.stderr
    names = json.loads(saved.stdout)
    for name in names:  # warmed before the process exited, into the shared disk tier
        key = surrogate_key("uploads", name)
        folder = tmp_path / "cache" / key[:2] / key
        assert len(list(folder.iterdir())) >= VARIANTS * len(PHOTO_PRESETS), name
    warmed = _in_site(
        tmp_path, ["manage.py", "imgproxy_warm", "uploads", "--preset", "thumb,card"], redis
    )
    assert warmed.returncode == 0, warmed.stderr
    assert "failed 0" in warmed.stdout, warmed.stdout

    with served(config) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        for name in ["photos/before.png", *names]:
            for preset in PHOTO_PRESETS:
                for accept in ACCEPTS:
                    answer = http.get(f"/uploads/{name}?p={preset}", headers={"accept": accept})
                    assert answer.status_code == 200, (name, answer.text)
                    assert "render;" not in answer.headers.get("server-timing", ""), name
        assert metric(server.url, "imgproxy_renders_total") == 0

        # The server now holds names[0]'s thumb in its memory tier too: a delete in
        # another process reaches it through Redis (the file is kept: it renders anew).
        thumb = f"/uploads/{names[0]}?p=thumb"
        assert "render;" not in http.get(thumb).headers.get("server-timing", "")
        deleted = _in_site(tmp_path, ["-c", DELETER, names[0]], redis)
        assert deleted.returncode == 0, deleted.stderr
        deadline = time.monotonic() + 10
        while "render;" not in http.get(thumb).headers.get("server-timing", ""):
            assert time.monotonic() < deadline, "the server still answers from its memory"
            time.sleep(0.05)
