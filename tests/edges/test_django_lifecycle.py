"""`delete_old=True` under concurrent saves, in examples/django_site on the real PostgreSQL:
the last row naming a shared file deleted while another row naming it is created never
loses the file, and concurrent replacements of one row's file leave no file unnamed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "examples" / "django_site"
ROUNDS = 50  # of each kind

SETTINGS = """
from django_site.settings import *  # noqa: F403

WSGI_APPLICATION = None  # the site's own proxy, from IMGPROXY: it purges the uploads store
IMGPROXY = {{
    **IMGPROXY,
    "stores": {{"uploads": {{"kind": "fs", "root": str(MEDIA_ROOT)}}}},
    # One small PNG per warm: the renders are not what is tested here.
    "presets": {{"thumb": "w=16&h=16&fm=png", "card": "w=32&h=32&fm=png"}},
}}
DATABASES = {{"default": {{
    "ENGINE": "django.db.backends.postgresql", "NAME": {name!r},
    "USER": "postgres", "HOST": "127.0.0.1", "PORT": {port!r},
}}}}
"""

# Each round on its own file and rows, on two threads at once, ten rounds at a time, half
# of them in a transaction; then the deletes still queued are done and every file counted.
SCENARIO = r"""
import collections, contextlib, json, sys, threading, time, django
django.setup()
from django.core.files.base import ContentFile
from django.db import connections, transaction
from gallery.models import Album
from imgproxy.contrib.django import sweep
from tests.support import images

rounds = int(sys.argv[1])
storage = Album._meta.get_field("cover").storage
png = images.png((32, 32))
refused = []

def at_once(*calls):
    barrier = threading.Barrier(len(calls))
    def run(call):
        try:
            barrier.wait()
            call()
        except FileNotFoundError:  # the file went with its last row before this one
            refused.append(1)
        finally:
            connections.close_all()
    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    [t.start() for t in threads]
    [t.join() for t in threads]

def maybe_atomic(i):
    return transaction.atomic() if i % 2 else contextlib.nullcontext()

# 1. The last row naming a shared file deleted while a new row naming it is created: at
# once (the row is seen, the file kept) or once its file is being deleted (the create must
# not commit). The delete takes 20 ms, as a remote storage's does, and is not deferred.
sweep.sweeper.delay = 0.0
delete_now = storage.delete
deleting = collections.defaultdict(threading.Event)
def slow_delete(name):
    deleting[name].set()
    time.sleep(0.02)
    delete_now(name)
storage.delete = slow_delete
shared = [storage.save(f"covers/default{i}.png", ContentFile(png)) for i in range(rounds)]
calls = []
for i, name in enumerate(shared):
    last = Album.objects.create(name="last", cover=name)
    def create(i=i, name=name):
        if i % 4 < 2:
            deleting[name].wait(2)
        with maybe_atomic(i):
            Album.objects.create(name="new", cover=name)
    def delete(i=i, last=last):
        with maybe_atomic(i):
            last.delete()
    calls += [delete, create]
for batch in range(0, len(calls), 20):  # 10 rounds at a time
    at_once(*calls[batch : batch + 20])

# 2. One row's file replaced by two saves at once: one file stays, the other two go.
sweep.sweeper.join()
storage.delete = delete_now
sweep.sweeper.delay = sweep.SWEEP_SECONDS
rows = [Album.objects.create(name="r", cover=ContentFile(png, f"r{i}.png")) for i in range(rounds)]
calls = []
for i, row in enumerate(rows):
    def replace(i=i, pk=row.pk, side="ab"):
        with maybe_atomic(i):
            album = Album.objects.get(pk=pk)
            album.cover.save(f"r{i}{side}.png", ContentFile(png))
    calls += [lambda r=replace: r(side="a"), lambda r=replace: r(side="b")]
for batch in range(0, len(calls), 20):
    at_once(*calls[batch : batch + 20])

sweep.sweeper.join()
named = set(Album.objects.values_list("cover", flat=True))
on_disk = {"covers/" + f for f in storage.listdir("covers")[1]}
print(json.dumps({
    "lost": sorted(name for name in named if not storage.exists(name)),
    "orphans": sorted(on_disk - named),
    "shared_named": sum(name in named for name in shared),
    "refused": len(refused),
}))
"""


def test_delete_old_never_deletes_a_file_a_committed_row_names(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """50 rounds of each on two threads: no row names a missing file (a create that came
    after its file was deleted is refused, not committed), no file is left that no row
    names once the deferred deletes are done."""
    dsn = urlsplit(postgres_dsn)
    database = f"lifecycle_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
    (tmp_path / "pg_settings.py").write_text(SETTINGS.format(name=database, port=dsn.port))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "pg_settings",
        "DJANGO_SITE_DATA": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(SITE), str(ROOT)]),
    }
    migrate = [sys.executable, "manage.py", "migrate", "--verbosity", "0"]
    subprocess.run(migrate, cwd=SITE, env=env, check=True, timeout=60)
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO, str(ROUNDS)],
        cwd=SITE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["lost"] == []
    assert out["orphans"] == []
    # Either order happened: rows kept their file, or the create was refused.
    assert out["shared_named"] + out["refused"] == ROUNDS, out
