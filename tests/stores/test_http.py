"""The `http` store against a real local origin: timeouts, redirects, body caps, and the
SSRF defence, where the internal server's own log proves what was never fetched."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from imgproxy import ImageProxy, Settings
from imgproxy.source import HEADER_BYTES
from tests.stages.test_load import grainy_jpeg
from tests.support import LiveServer, assert_healthy, images, need_binary
from tests.support.origin import FRAMINGS, Internal, Origin
from tests.support.processes import free_port, running


@pytest.fixture
def origin() -> Iterator[tuple[Origin, LiveServer]]:
    app = Origin()
    app.put("a.jpg", images.jpeg((200, 150)))
    app.put("real name.jpg", images.jpeg((40, 30)))
    with LiveServer(app, host="127.0.0.2") as server:
        yield app, server


@pytest.fixture
def internal() -> Iterator[tuple[Internal, LiveServer]]:
    app = Internal()
    with LiveServer(app, host="127.0.0.1") as server:
        yield app, server


def proxy_for(origin_url: str, media: Path, **store: Any) -> ImageProxy:
    data = {
        "limits": {"render_concurrency": 2, "max_source_bytes": 1_000_000},
        "stores": {
            "web": {
                "kind": "http",
                "base_url": origin_url + "/",
                "approved": True,
                "timeout": 1.5,
                "allowed_networks": ["127.0.0.2/32"],  # the test origin, and nothing else
                **store,
            },
            "media": {"kind": "fs", "root": str(media), "approved": True},
        },
    }
    return ImageProxy(Settings.from_mapping(data, env={}))


@pytest.fixture
def client(origin: tuple[Origin, LiveServer], media: Path, serve: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=serve(proxy_for(origin[1].url, media)).url, timeout=30) as http:
        yield http


def test_fetch_render_and_revalidate_without_the_body(
    client: httpx.Client, origin: tuple[Origin, LiveServer]
) -> None:
    app, _ = origin
    first = client.get("/web/files/a.jpg?w=50")
    assert first.status_code == 200
    assert images.decode(first.content).size == (50, 38)
    app.log.clear()
    again = client.get("/web/files/a.jpg?w=50", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304
    assert app.log == [("HEAD", "/files/a.jpg")]  # revalidated, nothing downloaded
    app.log.clear()
    assert client.get("/web/files/a.jpg?w=50").content == first.content
    assert app.log == [("HEAD", "/files/a.jpg")]  # a cache hit: still no GET


def test_a_changed_origin_image_is_a_new_version(
    client: httpx.Client, origin: tuple[Origin, LiveServer]
) -> None:
    app, _ = origin
    before = client.get("/web/files/a.jpg?w=50")
    app.put("a.jpg", images.jpeg((100, 200)))
    after = client.get("/web/files/a.jpg?w=50")
    assert after.headers["etag"] != before.headers["etag"]
    assert images.decode(after.content).size == (50, 100)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/web/files/nope.jpg", 404, "not_found"),
        ("/web/status/404", 404, "not_found"),
        ("/web/status/500", 502, "upstream_error"),
        ("/web/status/503", 502, "upstream_error"),
        ("/web/status/403", 502, "upstream_error"),
        ("/web/hop/2/a.jpg?w=10", 200, None),  # three redirects are fine
        ("/web/hop/3/a.jpg?w=10", 502, "upstream_error"),  # a fourth is not
        ("/web/loop/0", 502, "upstream_error"),
        ("/web/scheme/x", 502, "upstream_error"),
        ("/web/nohead/a.jpg?w=10", 200, None),  # no HEAD: a GET's headers, body unread
        ("/web/huge.jpg", 413, "too_large"),  # chunked, no length: cut while streaming
        ("/web/huge.jpg?w=10", 413, "too_large"),
    ],
)
def test_origin_answers_map_to_statuses(
    client: httpx.Client, path: str, status: int, code: str | None
) -> None:
    response = client.get(path)
    assert response.status_code == status, response.text[:200]
    if code:
        assert response.json()["error"] == code
    assert_healthy(client)


def at_once(client: httpx.Client, urls: list[str]) -> list[httpx.Response]:
    """Every URL requested at the same time, each from its own thread."""
    with ThreadPoolExecutor(len(urls)) as pool:
        return list(pool.map(client.get, urls))


@pytest.mark.parametrize("style", sorted(FRAMINGS))
def test_origins_framing_head_and_get_differently_serve_the_unchanged_image(
    client: httpx.Client, origin: tuple[Origin, LiveServer], style: str
) -> None:
    """A framing that differs between HEAD and GET is not a change of the image: every
    request, concurrent and repeated, is served under one version; a real change still
    gives a new one."""
    app, _ = origin
    queries = ["", "?w=50", "?fm=json"]
    urls = [f"/web/framed/{style}/a.jpg{q}" for q in queries] * 4
    answers = at_once(client, urls)
    assert [r.status_code for r in answers] == [200] * len(urls), answers[0].text[:200]
    etags: dict[str, set[str]] = {}
    for url, response in zip(urls, answers, strict=True):
        etags.setdefault(url, set()).add(response.headers["etag"])
    assert all(len(seen) == 1 for seen in etags.values())  # one version per URL
    assert images.decode(answers[1].content).size == (50, 38)
    again = client.get(urls[1], headers={"if-none-match": etags[urls[1]].pop()})
    assert again.status_code == 304
    app.put("a.jpg", images.jpeg((100, 200)))
    changed = client.get(urls[1])
    assert changed.status_code == 200
    assert images.decode(changed.content).size == (50, 100)
    assert_healthy(client)


@pytest.mark.parametrize(
    "target", ["xn--/80/x", "xn--a/80/x", "xn--zz-/80/x", "a/99999/x", "%25zz/80/x"]
)
def test_a_hostile_redirect_target_is_a_502(client: httpx.Client, target: str) -> None:
    """A Location whose host is bad Punycode (httpx decodes it while parsing the answer),
    a port out of range or an escaped host: a 502 for every client, never a 500."""
    answers = at_once(client, [f"/web/to/{target}{q}" for q in ("", "?w=10", "?fm=json")] * 4)
    for response in answers:
        assert response.status_code == 502, response.text[:200]
        assert response.json()["error"] == "upstream_error"
    assert_healthy(client)


def test_slow_drip_is_cut_at_the_total_timeout(client: httpx.Client) -> None:
    began = time.monotonic()
    response = client.get("/web/drip.jpg?w=10")
    elapsed = time.monotonic() - began
    assert response.status_code == 504
    assert response.json()["error"] == "upstream_timeout"
    assert elapsed < 1.5 + 5  # the store's total timeout bounds it (the drip lasts 60 s)
    assert_healthy(client)


def test_filename_comes_from_the_final_url(client: httpx.Client) -> None:
    response = client.get("/web/moved/whatever?w=10")
    assert response.status_code == 200
    assert 'filename="real_name.jpeg"' in response.headers["content-disposition"]


SPELLINGS = [
    "127.1",
    "0x7f000001",
    "2130706433",
    "[::ffff:127.0.0.1]",
    "localhost.",
    "localhost",
    "127.0.0.1",
    "[::1]",
]


@pytest.mark.parametrize("host", SPELLINGS)
def test_redirects_to_loopback_spellings_are_refused(
    client: httpx.Client, internal: tuple[Internal, LiveServer], host: str
) -> None:
    app, server = internal
    response = client.get(f"/web/to/{host}/{server.port}/secret?w=10")
    assert response.status_code == 502
    assert response.json()["error"] == "upstream_error"
    assert app.log == []  # the internal server never saw a request
    assert "SECRET" not in response.text


def test_a_store_pointing_at_loopback_is_refused(
    internal: tuple[Internal, LiveServer], media: Path, serve: Any
) -> None:
    app, server = internal
    for base in (server.url, f"http://localhost:{server.port}", f"http://127.1:{server.port}"):
        proxy = ImageProxy(
            Settings.from_mapping(
                {"stores": {"web": {"kind": "http", "base_url": base, "approved": True}}}, env={}
            )
        )
        with httpx.Client(base_url=serve(proxy).url) as http:
            response = http.get("/web/secret.jpg")
        assert response.status_code == 502
    assert app.log == []


def test_allowed_hosts_narrow_the_hosts(
    origin: tuple[Origin, LiveServer], media: Path, serve: Any
) -> None:
    app, server = origin
    proxy = proxy_for(server.url, media, allowed_hosts=["*.example.com"])
    with httpx.Client(base_url=serve(proxy).url) as http:
        assert http.get("/web/files/a.jpg").status_code == 502
    assert app.log == []


def test_allow_private_networks_opens_loopback(
    internal: tuple[Internal, LiveServer], serve: Any
) -> None:
    app, server = internal
    proxy = ImageProxy(
        Settings.from_mapping(
            {
                "stores": {
                    "web": {
                        "kind": "http",
                        "base_url": server.url,
                        "approved": True,
                        "allow_private_networks": True,
                    }
                }
            },
            env={},
        )
    )
    with httpx.Client(base_url=serve(proxy).url) as http:
        response = http.get("/web/secret.jpg")
    assert response.status_code == 415  # reached, and "SECRET" is no image
    assert app.log


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::7f00:1", False),
        ("2002:7f00:1::", False),
        ("::127.0.0.1", False),
        ("ff02::1", False),
    ],
)
def test_address_policy(address: str, public: bool) -> None:
    from imgproxy.stores.addresses import AddressPolicy

    assert AddressPolicy().permits(address) is public


class Resetting:
    """A raw TCP origin on 127.0.0.2 that breaks the connection at a chosen moment: after
    accepting, after reading the request, mid-answer; with a RST (SO_LINGER 0) or a FIN."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.body = images.jpeg((64, 48))
        self.listener = socket.create_server(("127.0.0.2", 0))
        self.url = f"http://127.0.0.2:{self.listener.getsockname()[1]}"
        self.stopping = False
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self) -> Resetting:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping = True
        with contextlib.suppress(OSError):
            socket.create_connection(self.listener.getsockname(), timeout=1).close()
        self.thread.join(5)
        self.listener.close()

    def run(self) -> None:
        while not self.stopping:
            conn, _ = self.listener.accept()
            with contextlib.suppress(OSError), conn:
                self.answer(conn)

    def answer(self, conn: socket.socket) -> None:
        head = b"" if self.mode == "accept" else self.read_head(conn)
        if self.mode in ("body", "chunk") and head.startswith(b"HEAD"):  # the GET breaks
            conn.sendall(self.status_line(len(self.body)))
            head = self.read_head(conn)
        if self.mode == "body":
            conn.sendall(self.status_line(len(self.body)) + self.body[:100])
        elif self.mode == "chunk":  # a chunked GET, cut inside its first chunk
            start = b'HTTP/1.1 200 OK\r\nETag: "v1"\r\nTransfer-Encoding: chunked\r\n\r\n'
            conn.sendall(start + b"%x\r\n" % len(self.body) + self.body[:100])
        elif self.mode == "partial":
            conn.sendall(b"HTTP/1.1 2")
        elif self.mode == "garbage":
            conn.sendall(b"\x00\xffNOT HTTP\r\n\r\n")
        if self.mode != "fin":  # a RST instead of a FIN
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def read_head(self, conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        return data

    def status_line(self, length: int) -> bytes:
        return (
            b'HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nETag: "v1"\r\n'
            b"Content-Length: %d\r\n\r\n" % length
        )


# The store's timeout is 30 s and the client's 10 s: a regression that waits for the
# deadline fails by timing out the client, with no wall-clock threshold in the test.
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "mode", ["accept", "request", "partial", "garbage", "fin", "body", "chunk"]
)
@pytest.mark.parametrize("query", ["", "?w=10", "?fm=json"])
def test_a_broken_connection_is_a_502_at_once(
    mode: str, query: str, media: Path, serve: Any
) -> None:
    with Resetting(mode) as origin:
        proxy = serve(proxy_for(origin.url, media, timeout=30.0))
        with httpx.Client(base_url=proxy.url, timeout=10) as client:
            # A reset just after accepting races the client's set-up (a 500 once): try often.
            for _ in range(40 if mode == "accept" else 3):
                response = client.get("/web/a.jpg" + query)
                assert response.status_code == 502, response.text[:200]
                assert response.json()["error"] == "upstream_error"
            for response in at_once(client, [f"/web/a{n}.jpg{query}" for n in range(12)]):
                assert response.status_code == 502, response.text[:200]  # 12 clients at once
            assert_healthy(client)


@pytest.mark.timeout(60)
def test_a_refused_connection_is_a_502_at_once(media: Path, serve: Any) -> None:
    with socket.create_server(("127.0.0.2", 0)) as closed:
        port = closed.getsockname()[1]  # closed again before the request: nothing listens
    proxy = serve(proxy_for(f"http://127.0.0.2:{port}", media, timeout=30.0))
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        response = client.get("/web/a.jpg?w=10")
        assert response.status_code == 502, response.text[:200]
        assert "ConnectError" in response.json()["detail"]


def test_a_stalled_origin_delays_only_its_own_requests(
    origin: tuple[Origin, LiveServer], media: Path, serve: Any
) -> None:
    """SPEC §11.1: 4 requests (2x render_concurrency) whose origin stalls mid-body for 2 s
    hold no render thread: fs renders (milliseconds alone) keep answering meanwhile, and the
    stalled ones still finish."""
    app, server = origin
    app.stall_seconds = 2.0
    for n in range(4):
        app.put(f"s{n}.jpg", images.jpeg((120 + n, 90)))
    proxy = serve(proxy_for(server.url, media, timeout=10.0))

    async def scenario() -> tuple[list[float], bool, list[int]]:
        async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
            assert (await client.get("/media/photo.jpg?w=5")).status_code == 200
            stalled = [
                asyncio.create_task(client.get(f"/web/stall/s{n}.jpg?w={20 + n}")) for n in range(4)
            ]
            while sum(m == "GET" and p.startswith("/stall/") for m, p in app.log) < 2:
                await asyncio.sleep(0.01)  # as many bodies as render threads have begun
            await asyncio.sleep(0.1)  # and stall

            async def fs(width: int) -> float:
                began = time.monotonic()
                reply = await client.get(f"/media/photo.jpg?w={width}")
                assert reply.status_code == 200
                return time.monotonic() - began

            seconds = await asyncio.gather(*(fs(30 + n) for n in range(8)))
            during = not any(task.done() for task in stalled)
            return seconds, during, [(await task).status_code for task in stalled]

    seconds, during, statuses = asyncio.run(scenario())
    # Before, the fs renders waited behind the stalled reads for a slot: 3.9 s and more.
    assert max(seconds) < 2.0, seconds
    assert during  # the fs renders were answered while the origin stalled
    assert statuses == [200] * 4
    with httpx.Client(base_url=proxy.url) as client:
        assert_healthy(client)


@contextlib.contextmanager
def static_nginx(folder: Path, root: Path) -> Iterator[tuple[str, Path]]:
    """nginx serving `root` as a stock static origin (it honours Range itself); its access
    log: each answer's status, body bytes sent and the Range asked."""
    port = free_port()
    log = folder / "access.log"
    user = "user root;\n" if os.geteuid() == 0 else ""
    config = folder / "nginx.conf"
    config.write_text(
        f"{user}worker_processes 1;\ndaemon off;\nerror_log {folder}/error.log;\n"
        f"pid {folder}/nginx.pid;\nevents {{ worker_connections 64; }}\n"
        "http {\n  log_format sent '$status $body_bytes_sent \"$http_range\"';\n"
        f"  access_log {log} sent;\n  client_body_temp_path {folder}/body;\n"
        f"  server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n"
    )
    with running([need_binary("nginx"), "-c", str(config)], port, "nginx"):
        yield f"http://127.0.0.1:{port}", log


def test_a_new_photo_crosses_from_the_origin_once_and_a_head(
    tmp_path: Path, media: Path, serve: Any
) -> None:
    """Through a stock nginx origin: a new photo's facts come from a ranged GET of its first
    64 KiB (a 206), its render reads it whole (a 200), so the origin sends it once and a
    head; before, twice. 16 requests at once share both."""
    root = tmp_path / "origin"
    root.mkdir()
    photo = grainy_jpeg((1600, 1000))
    assert len(photo) > 4 * HEADER_BYTES
    (root / "photo.jpg").write_bytes(photo)
    with static_nginx(tmp_path, root) as (url, log):
        proxy = proxy_for(url, media, timeout=10, allowed_networks=["127.0.0.1/32"])
        with httpx.Client(base_url=serve(proxy).url, timeout=30) as http:
            with ThreadPoolExecutor(16) as pool:
                replies = list(pool.map(lambda _: http.get("/web/photo.jpg?w=100"), range(16)))
            assert {r.status_code for r in replies} == {200}
            assert images.decode(replies[0].content).size == (100, 62)
        answers = [line.split(" ", 2) for line in log.read_text().splitlines()]
    gets = [(status, int(sent), asked) for status, sent, asked in answers if sent != "0"]
    assert sorted(gets) == [
        ("200", len(photo), '"-"'),
        ("206", HEADER_BYTES, f'"bytes=0-{HEADER_BYTES - 1}"'),
    ]


def test_an_origin_whose_head_understates_its_body_is_never_read_past_it(
    origin: tuple[Origin, LiveServer], media: Path, serve: Any
) -> None:
    """A HEAD that says 1000 bytes, and a GET that streams a whole 700 KB photo (chunked,
    no length, the same ETag): the render's slot reserved what the facts said, so its read
    stops there and the answer is a 503 (the source changed), not a render of 700 times what
    was reserved."""
    app, server = origin
    app.put("liar.jpg", grainy_jpeg((1600, 1000)))
    proxy = proxy_for(server.url, media)
    with httpx.Client(base_url=serve(proxy).url, timeout=30) as http:
        answer = http.get("/web/understated/liar.jpg?w=100")
        assert answer.status_code == 503, answer.text[:200]
        assert "grew while it was being read" in answer.json()["detail"]
        assert_healthy(http)


def test_a_head_answered_from_another_offset_never_becomes_the_facts(
    origin: tuple[Origin, LiveServer], media: Path, serve: Any
) -> None:
    """An origin (or a cache before it) that answers the head's `Range: bytes=0-65535` with
    a 206 from byte 22, under the version's own ETag: there sits a 40x30 thumbnail (a JPEG
    in an APP15 segment, as EXIF thumbnails are), whose facts are not the 1600x1000 photo's.
    Refused as a 502, as without an ETag, for 8 requests at once (the facts asked, and
    renders); never facts or a render from those bytes."""
    app, server = origin
    thumb = images.jpeg((40, 30))
    photo = grainy_jpeg((1600, 1000))
    segment = b"\xff\xef" + struct.pack(">H", len(thumb) + 2) + thumb
    app.put("thumbed.jpg", photo[:2] + segment + photo[2:])
    at = 2 + 4
    proxy = proxy_for(server.url, media)
    with httpx.Client(base_url=serve(proxy).url, timeout=30) as http:
        with ThreadPoolExecutor(8) as pool:
            asked = [f"/web/offset/{at}/thumbed.jpg?fm=json"] * 4
            asked += [f"/web/offset/{at}/thumbed.jpg?w={400 + n}" for n in range(4)]
            replies = list(pool.map(http.get, asked))
        for reply in replies:
            assert reply.status_code == 502, (reply.status_code, reply.content[:300])
            assert "Content-Range" in reply.json()["detail"]
        facts = http.get("/web/files/thumbed.jpg?fm=json").json()  # an honest origin's
        assert (facts["width"], facts["height"]) == (1600, 1000)
        assert_healthy(http)


def test_an_origin_that_refuses_every_range_still_serves_its_photos(
    origin: tuple[Origin, LiveServer], media: Path, serve: Any
) -> None:
    """A 416 is "nothing in range": true of an empty body only. An origin that answers it
    to the head's `bytes=0-65535` of a 700 KB photo (its HEAD gave the length) has broken
    ranges, and its photo is learned from a plain GET, 8 requests at once, not refused."""
    app, server = origin
    app.put("photo.jpg", grainy_jpeg((1600, 1000)))
    proxy = proxy_for(server.url, media)
    with httpx.Client(base_url=serve(proxy).url, timeout=30) as http:
        with ThreadPoolExecutor(8) as pool:
            asked = [f"/web/unranged/photo.jpg?w={100 + n}" for n in range(8)]
            replies = list(pool.map(http.get, asked))
        for n, reply in enumerate(replies):
            assert reply.status_code == 200, (reply.status_code, reply.text[:200])
            assert images.decode(reply.content).size[0] == 100 + n
        assert_healthy(http)
