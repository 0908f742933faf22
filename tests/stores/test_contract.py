"""The Store contract, for every store kind against its real backend (SPEC §4, §7, §8)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imgproxy import ImageProxy, Store
from imgproxy.errors import BadRequest, NotFound
from imgproxy.stores import Listable, StoredFile
from tests.support import Serve, images, settings_for
from tests.support.stores import (
    Backend,
    Counting,
    DjangoBackend,
    FsBackend,
    HttpBackend,
    PostgresBackend,
    S3Backend,
    SQLiteBackend,
)

KINDS = ["fs", "sqlite", "postgres", "http", "django", "s3"]


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made: Backend
    if request.param == "fs":
        made = FsBackend(tmp_path)
    elif request.param == "sqlite":
        made = SQLiteBackend(tmp_path)
    elif request.param == "http":
        made = HttpBackend()
    elif request.param == "django":
        made = DjangoBackend(tmp_path)
    elif request.param == "s3":
        made = S3Backend(request.getfixturevalue("s3"))
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        made = PostgresBackend(dsn, "s" + uuid.uuid4().hex[:12])
    yield made
    made.close()


async def read(store: Store, file: StoredFile) -> bytes:
    return b"".join([chunk async for chunk in store.open(file)])


def test_stat_then_open(backend: Backend) -> None:
    data = images.jpeg((64, 48))
    key = backend.keys[0]
    backend.put(key, data)

    async def scenario() -> None:
        file = await backend.store.stat(key)
        assert file.path == key
        assert file.size == len(data)
        assert file.modified is not None
        assert file.approved is True
        assert await read(backend.store, file) == data

    backend.run(scenario())


def test_a_listable_store_lists_every_file_it_serves(backend: Backend) -> None:
    """What `imgproxy warm` and `manage.py imgproxy_warm` walk: every key, nothing else."""
    if not isinstance(backend.store, Listable):
        pytest.skip("this kind of store cannot list its files")
    for key in backend.keys:
        backend.put(key, images.jpeg((16, 16)))

    async def scenario() -> list[str]:
        assert isinstance(backend.store, Listable)
        return [path async for path in backend.store.paths()]

    assert sorted(backend.run(scenario())) == sorted(backend.keys)


def test_missing_is_not_found(backend: Backend) -> None:
    async def scenario() -> None:
        for key in backend.keys:
            with pytest.raises(NotFound):
                await backend.store.stat(key)

    backend.run(scenario())


def test_version_changes_with_the_content_only(backend: Backend) -> None:
    key = backend.keys[1]
    backend.put(key, images.jpeg((64, 48)))
    first = backend.run(backend.store.stat(key))
    assert backend.run(backend.store.stat(key)).version == first.version
    backend.put(key, images.jpeg((64, 49)))
    changed = backend.run(backend.store.stat(key))
    assert changed.version != first.version
    assert changed.modified != first.modified


def test_a_same_size_rewrite_is_a_new_version(backend: Backend) -> None:
    """The version must not lean on the size: a rewrite keeping it still changes it."""
    key = backend.keys[1]
    backend.put(key, b"A" * 1000)  # stat never reads content: any bytes will do
    first = backend.run(backend.store.stat(key))
    backend.put(key, b"B" * 1000)
    assert backend.run(backend.store.stat(key)).version != first.version


def test_approval_per_file_overrides_the_store_default(backend: Backend) -> None:
    key = backend.keys[2]
    backend.put(key, images.png((10, 10)), approved=False)
    if not backend.approval_per_file:  # SPEC §4: an http source has the store's setting
        assert backend.run(backend.store.stat(key)).approved is True
        return
    assert backend.run(backend.store.stat(key)).approved is False
    backend.put(key, images.png((10, 10)), approved=True)
    assert backend.run(backend.store.stat(key)).approved is True


HOSTILE_KEYS = [
    "1 OR 1=1",
    "1; DROP TABLE profile_picture",
    "' OR ''='",
    '"; --',
    "../../etc/passwd",
    "9" * 40,
    "-1",
    "1e3",
    "é",
    "%00",
    "a" * 5000,
]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_find_nothing_and_harm_nothing(backend: Backend, key: str) -> None:
    backend.put(backend.keys[0], images.jpeg((8, 8)))

    async def scenario() -> None:
        with pytest.raises((NotFound, BadRequest)):
            await backend.store.stat(key)
        assert (await backend.store.stat(backend.keys[0])).size  # the table is intact

    backend.run(scenario())


def test_served_end_to_end_and_304_reads_nothing(
    backend: Backend, media: Path, serve: Serve
) -> None:
    key = backend.keys[0]
    backend.put(key, images.jpeg((120, 90)))
    counting = Counting(backend.store)
    proxy = ImageProxy(settings_for(media), stores={"media": counting})
    with httpx.Client(base_url=serve(proxy).url) as http:
        original = http.get(f"/media/{key}")
        assert original.status_code == 200
        assert original.headers["content-type"] == "image/jpeg"
        rendition = http.get(f"/media/{key}?w=60")
        assert images.decode(rendition.content).size == (60, 45)
        reads = counting.reads
        for url, response in ((f"/media/{key}", original), (f"/media/{key}?w=60", rendition)):
            again = http.get(url, headers={"if-none-match": response.headers["etag"]})
            assert again.status_code == 304
        assert http.get(f"/media/{key}?w=60").content == rendition.content  # a cache hit
        assert counting.reads == reads  # neither the 304s nor the hit read a byte
        assert http.get(f"/media/{backend.keys[1]}?w=60").status_code == 404


def test_errors_inside_a_store_are_never_500s(tmp_path: Path, serve: Serve, media: Path) -> None:
    backend = SQLiteBackend(tmp_path)
    backend.put("1", images.jpeg((10, 10)))
    backend.path.write_bytes(b"this is not a database" * 100)
    proxy = ImageProxy(settings_for(media), stores={"media": backend.store})
    with httpx.Client(base_url=serve(proxy).url) as http:
        response = http.get("/media/1")
    assert response.status_code == 502
    assert response.json()["error"] == "upstream_error"
    backend.close()
