"""The `s3` store against a real S3 server (SeaweedFS, request signing enforced): what is
fetched (SeaweedFS's own byte counters prove a 304 and a hit download nothing), errors, two
accounts side by side, the prefix as a fence, settings from the environment (SPEC §12.1)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from imgproxy import ImageProxy, Settings
from imgproxy.errors import SourceChanged
from imgproxy.source import HEADER_BYTES
from imgproxy.stores import S3Store
from tests.stages.test_load import grainy_jpeg
from tests.support import LiveServer, Serve, assert_healthy, images, raw_get
from tests.support.objects import ACCOUNTS, S3Server
from tests.support.stalls import stalled_endpoint


def settings(s3: S3Server, media: Path, **stores: dict[str, Any]) -> Settings:
    data = {
        "limits": {"render_concurrency": 2},
        "stores": {"media": {"kind": "fs", "root": str(media), "approved": True}, **stores},
    }
    return Settings.from_mapping(data, env={})


def uploads(s3: S3Server, prefix: str, account: str = "alice", **more: Any) -> dict[str, Any]:
    key, secret = ACCOUNTS[account]
    return {
        "kind": "s3",
        "bucket": "media",
        "prefix": prefix,
        "endpoint_url": s3.endpoint,
        "access_key_id": key,
        "secret_access_key": secret,
        "approved": True,
        **more,
    }


@pytest.fixture
def prefix() -> str:
    return f"u{uuid.uuid4().hex[:12]}/"


def test_a_304_and_a_repeated_hit_download_no_body(
    s3: S3Server, media: Path, serve: Serve, prefix: str
) -> None:
    photo = images.jpeg((320, 240))
    s3.put("media", prefix + "photo.jpg", photo)
    proxy = ImageProxy(settings(s3, media, uploads=uploads(s3, prefix)))
    with httpx.Client(base_url=serve(proxy).url) as http:
        before = s3.sent_bytes("media")
        first = http.get("/uploads/photo.jpg?w=100")
        assert first.status_code == 200
        assert images.decode(first.content).size == (100, 75)
        fetched = s3.sent_bytes("media") - before
        assert fetched >= len(photo)  # the first sight downloads it (learn, then render)
        settled = s3.sent_bytes("media")
        for _ in range(3):
            again = http.get("/uploads/photo.jpg?w=100")
            assert again.content == first.content
            revalidated = http.get(
                "/uploads/photo.jpg?w=100", headers={"if-none-match": first.headers["etag"]}
            )
            assert revalidated.status_code == 304
        original = http.get("/uploads/photo.jpg", headers={"if-none-match": '"x"'})
        assert original.content == photo
        assert s3.sent_bytes("media") - settled == len(photo)  # only the original's body


def test_approval_comes_from_object_metadata(
    s3: S3Server, media: Path, serve: Serve, prefix: str
) -> None:
    s3.put("media", prefix + "held.png", images.png((20, 20)), approved="false")
    s3.put("media", prefix + "fine.bmp", _bmp(), approved="true")
    s3.put("media", prefix + "plain.bmp", _bmp())
    store = uploads(s3, prefix, approved=False)
    proxy = ImageProxy(settings(s3, media, uploads=store))
    with httpx.Client(base_url=serve(proxy).url) as http:
        assert http.get("/uploads/held.png?w=10").status_code == 200  # PNG needs no approval
        assert http.get("/uploads/fine.bmp?w=10").status_code == 200  # approved by metadata
        refused = http.get("/uploads/plain.bmp?w=10")  # BMP needs approval; the default: no
        assert refused.status_code == 403
        assert refused.json()["error"] == "not_approved"


def test_metadata_written_by_boto3_is_read_by_the_store_and_the_server(
    s3: S3Server, media: Path, serve: Serve, prefix: str
) -> None:
    """boto3, the aws CLI and the consoles send `x-amz-meta-approved`/`x-amz-meta-focal`;
    objects written through obstore under the whole header name are still read too."""
    writer = s3.writer()
    metadata = {"approved": "true", "focal": "0.3,0.7"}
    writer.put_object(Bucket="media", Key=prefix + "tool.bmp", Body=_bmp(), Metadata=metadata)
    shouted = {"Approved": "TRUE", "Focal": "0.25,0.5"}  # S3 names are case-insensitive
    writer.put_object(Bucket="media", Key=prefix + "shouted.bmp", Body=_bmp(), Metadata=shouted)
    refused = {"approved": "false"}
    writer.put_object(Bucket="media", Key=prefix + "held.bmp", Body=_bmp(), Metadata=refused)
    headers = {f"x-amz-meta-{name}": value for name, value in metadata.items()}
    asyncio.run(_obstore_put(s3, prefix + "legacy.bmp", _bmp(), headers))
    store = S3Store("media", prefix=prefix, endpoint_url=s3.endpoint, **s3.credentials())
    for name, focal in [("tool", (0.3, 0.7)), ("shouted", (0.25, 0.5)), ("legacy", (0.3, 0.7))]:
        found = asyncio.run(store.stat(name + ".bmp"))
        assert (found.approved, found.focal) == (True, focal), name
    default_yes = S3Store(
        "media", prefix=prefix, endpoint_url=s3.endpoint, approved=True, **s3.credentials()
    )
    assert asyncio.run(default_yes.stat("held.bmp")).approved is False
    proxy = ImageProxy(settings(s3, media, uploads=uploads(s3, prefix, approved=False)))
    urls = [f"/uploads/{name}.bmp?w={w}" for name in ("tool", "shouted", "held") for w in (8, 9)]
    with httpx.Client(base_url=serve(proxy).url, timeout=30) as http:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(lambda url: http.get(url).status_code, urls * 4))
        assert statuses == [200, 200, 200, 200, 403, 403] * 4
        assert_healthy(http)


async def _obstore_put(s3: S3Server, key: str, data: bytes, attributes: dict[str, str]) -> None:
    import obstore

    await obstore.put_async(s3.client(), key, data, attributes=attributes)


def _bmp() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (20, 20), "teal").save(out, "BMP")
    return out.getvalue()


def test_bad_credentials_and_a_missing_bucket_are_502_with_no_secret(
    s3: S3Server, media: Path, serve: Serve, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    s3.put("media", prefix + "a.jpg", images.jpeg((20, 20)))
    wrong = uploads(s3, prefix, secret_access_key="not-the-secret-" + "z" * 20)
    missing = uploads(s3, prefix, bucket="no-such-bucket")
    proxy = ImageProxy(settings(s3, media, wrong=wrong, missing=missing))
    caplog.set_level(logging.DEBUG)
    with httpx.Client(base_url=serve(proxy).url) as http:
        for url in ("/wrong/a.jpg", "/wrong/a.jpg?w=10", "/missing/a.jpg", "/missing/nothing.jpg"):
            response = http.get(url)
            assert response.status_code == 502, url
            assert response.json()["error"] == "upstream_error"
            for secret in ("not-the-secret", ACCOUNTS["alice"][1], ACCOUNTS["alice"][0]):
                assert secret not in response.text
                assert secret not in str(response.headers)
        assert http.get("/missing/a.jpg").json()["detail"].endswith("no such bucket")
        assert_healthy(http)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in ("not-the-secret", ACCOUNTS["alice"][1]):
        assert secret not in logged


def test_two_stores_with_two_accounts_stay_isolated(
    s3: S3Server, media: Path, serve: Serve, prefix: str
) -> None:
    s3.put("media", prefix + "alice.jpg", images.jpeg((30, 20)))
    s3.put("bobs", prefix + "bob.jpg", images.jpeg((20, 30)))
    alices = uploads(s3, prefix)
    bobs = uploads(s3, prefix, account="bob", bucket="bobs")
    bob_in_alices = uploads(s3, prefix, account="bob")  # bob's key on alice's bucket
    proxy = ImageProxy(settings(s3, media, alices=alices, bobs=bobs, trespass=bob_in_alices))
    with httpx.Client(base_url=serve(proxy).url) as http:
        assert images.decode(http.get("/alices/alice.jpg").content).size == (30, 20)
        assert images.decode(http.get("/bobs/bob.jpg").content).size == (20, 30)
        assert http.get("/alices/bob.jpg").status_code == 404
        assert http.get("/bobs/alice.jpg").status_code == 404
        assert http.get("/trespass/alice.jpg").status_code == 502  # bob may not read it


@pytest.mark.parametrize(
    "path",
    [
        "../secret.jpg",
        "a/../../secret.jpg",
        "%2e%2e/secret.jpg",
        "..%2fsecret.jpg",
        "..%5csecret.jpg",
    ],
)
def test_a_path_cannot_climb_out_of_the_prefix(
    s3: S3Server, media: Path, serve: Serve, prefix: str, path: str
) -> None:
    s3.put("media", prefix + "inner/a.jpg", images.jpeg((10, 10)))
    s3.put("media", prefix + "secret.jpg", images.jpeg((10, 10)))
    proxy = ImageProxy(settings(s3, media, uploads=uploads(s3, prefix + "inner/")))
    with httpx.Client() as http:
        url = serve(proxy).url
        assert http.get(url + "/uploads/a.jpg").status_code == 200
        status, _ = raw_get(url, "/uploads/" + path)  # as sent: httpx would drop the `..`
        assert status in (400, 404), path


def test_an_object_replaced_between_stat_and_read_is_never_mixed(s3: S3Server, prefix: str) -> None:
    s3.put("media", prefix + "a.jpg", images.jpeg((10, 10)))
    store = S3Store("media", prefix=prefix, endpoint_url=s3.endpoint, **s3.credentials())

    async def scenario() -> None:
        seen = await store.stat("a.jpg")
        await asyncio.to_thread(s3.put, "media", prefix + "a.jpg", images.jpeg((12, 12)))
        with pytest.raises(SourceChanged):  # If-Match on the stat's ETag
            b"".join([chunk async for chunk in store.open(seen)])
        with pytest.raises(SourceChanged):  # a head too: facts never of another version
            await store.head(seen, 100)
        fresh = await store.stat("a.jpg")
        assert fresh.version != seen.version
        body = b"".join([chunk async for chunk in store.open(fresh)])
        assert images.decode(body).size == (12, 12)
        assert await store.head(fresh, 100) == body[:100]
        assert await store.head(fresh, 10**6) == body  # a range past the end: the object

    asyncio.run(scenario())


@pytest.fixture
def silent() -> Iterator[str]:
    """An endpoint that accepts connections and never answers."""
    with stalled_endpoint() as (url, _):
        yield url


def test_a_silent_object_store_is_a_504_within_the_timeout(
    s3: S3Server, media: Path, serve: Serve, silent: str
) -> None:
    store = uploads(s3, "p/", endpoint_url=silent, timeout=0.5)
    proxy = ImageProxy(settings(s3, media, uploads=store))
    with httpx.Client(base_url=serve(proxy).url, timeout=10) as http:
        response = http.get("/uploads/a.jpg")
        assert response.status_code == 504
        assert response.elapsed.total_seconds() < 5
        assert_healthy(http)


def test_credentials_from_the_environment_and_masked_in_check(
    s3: S3Server, tmp_path: Path, prefix: str
) -> None:
    key, secret = ACCOUNTS["alice"]
    env = {
        "IMGPROXY_STORES__UPLOADS__ACCESS_KEY_ID": key,
        "IMGPROXY_STORES__UPLOADS__SECRET_ACCESS_KEY": secret,
    }
    table = {"kind": "s3", "bucket": "media", "endpoint_url": s3.endpoint, "prefix": prefix}
    loaded = Settings.from_mapping({"stores": {"uploads": table}}, env=env)
    described = loaded.stores["uploads"].describe()
    assert secret not in described and "secret_access_key='***'" in described
    assert secret not in repr(loaded)
    s3.put("media", prefix + "a.jpg", images.jpeg((10, 10)))
    store = ImageProxy(loaded).services.mounts["uploads"].store
    assert asyncio.run(store.stat("a.jpg")).size


def test_one_credential_without_the_other_is_refused() -> None:
    from imgproxy.errors import ConfigError

    table = {"kind": "s3", "bucket": "media", "access_key_id": "AKIA"}
    with pytest.raises(ConfigError, match=r"^stores\.u\.secret_access_key"):
        Settings.from_mapping({"stores": {"u": table}}, env={})


def test_concurrent_cold_requests_share_one_download(
    s3: S3Server, media: Path, serve: Serve, prefix: str
) -> None:
    """A new photo written by boto3 crosses the network once and a head: its facts are
    learned from a ranged GET of its first 64 KiB (its scan starts there), its render reads
    it whole; 32 requests at once share both."""
    photo = grainy_jpeg((1600, 1000))
    assert len(photo) > 4 * HEADER_BYTES
    s3.put("media", prefix + "photo.jpg", photo)
    proxy = ImageProxy(settings(s3, media, uploads=uploads(s3, prefix)))
    with httpx.Client(base_url=serve(proxy).url, timeout=30) as http:
        before = s3.sent_bytes("media")

        def fetch(_: int) -> int:
            return http.get("/uploads/photo.jpg?w=64").status_code

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(fetch, range(32))) == {200}
        # One head read and one render read, whatever the concurrency (two whole reads
        # before the store read heads).
        assert s3.sent_bytes("media") - before == HEADER_BYTES + len(photo)
        assert_healthy(http)


def test_a_key_past_s3s_limit_with_the_prefix_is_a_400(
    s3: S3Server, media: Path, serve: Serve
) -> None:
    from imgproxy.errors import BadRequest

    prefix = "p" * 1000 + "/"
    store = S3Store("media", prefix=prefix, endpoint_url=s3.endpoint, **s3.credentials())
    with pytest.raises(BadRequest):
        asyncio.run(store.stat("x" * 30))  # 1031 bytes with the prefix: S3 allows 1024


class _RangeBlind:
    """An S3-compatible endpoint that answers every GET whole, Range or not (some do), and
    checks no signature: enough for obstore's HEAD and GET of the objects it holds."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.ranges: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = self.objects.get(scope["path"].removeprefix("/media/"))
        if body is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        self.ranges += [v.decode() for k, v in scope["headers"] if k == b"range"]
        headers = [
            (b"etag", b'"v1"'),
            (b"last-modified", b"Sat, 05 Dec 2026 07:00:00 GMT"),
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"image/jpeg"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )


def test_a_server_that_answers_a_range_whole_still_serves_new_photos(
    media: Path, serve: Serve
) -> None:
    """obstore refuses a 200 to its ranged GET: the head then comes from a plain GET, cut at
    its size, where every new photo was a 502; 8 requests at once."""
    photo = grainy_jpeg((1600, 1000))
    endpoint = _RangeBlind({"photo.jpg": photo})
    with LiveServer(endpoint) as server:
        table = {
            "kind": "s3",
            "bucket": "media",
            "endpoint_url": server.url,
            "access_key_id": "k",
            "secret_access_key": "s",
            "approved": True,
        }
        proxy = ImageProxy(Settings.from_mapping({"stores": {"blind": table}}, env={}))
        url = serve(proxy).url
        with httpx.Client(base_url=url, timeout=30) as http, ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda _: http.get("/blind/photo.jpg?w=100"), range(8)))
    assert [r.status_code for r in replies] == [200] * 8, replies[0].text[:200]
    assert images.decode(replies[0].content).size == (100, 62)
    assert endpoint.ranges  # the range was asked
