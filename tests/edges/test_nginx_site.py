"""The shipped config/nginx.conf as shipped, in a real nginx in front of a real imgproxy,
under concurrent clients (SPEC §6, §11): the edge server caches and revalidates, the origin
server sends disk hits with X-Accel-Redirect, and the site passes `nginx -t` on Debian."""

from __future__ import annotations

import asyncio
import os
import pwd
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import KEY, images, metric, need_binary, raw_get, spec_signature, write_config
from tests.support.edge_flood import (
    accept_values,
    flood,
    send_host_spellings,
    signed_params,
    spellings,
)
from tests.support.processes import (
    ROOT,
    SITE_SUBSTITUTIONS,
    NginxSite,
    free_port,
    imgproxy_process,
    nginx,
    nginx_servers,
)

CLIENTS = 32
# A burst that a cache lock would queue past its 5 s timeout (waiters poll every 0.5 s): nginx
# then logs "cache lock timeout" for many of them, which lock_waits() reports.
CROWD = 96


@contextmanager
def site_over(
    tmp_path: Path, media: Path, *, security: dict[str, Any] | None = None, **cache: Any
) -> Iterator[tuple[str, NginxSite]]:
    """imgproxy with a disk tier and accel_redirect configured, and the shipped site in front."""
    disk = tmp_path / "disk"
    settings = {"disk_path": str(disk), "accel_redirect": "/_accel/", "memory_bytes": 0, **cache}
    config = write_config(tmp_path, media, cache=settings, security=security or {})
    with imgproxy_process(config) as upstream:
        port = int(upstream.rsplit(":", 1)[1])
        with nginx_servers(tmp_path, port, disk) as site:
            yield upstream, site


def burst(urls: list[str], headers: dict[str, str] | None = None) -> list[httpx.Response]:
    """Every URL requested at once, each by its own connection."""

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(urls), max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            return list(await asyncio.gather(*(http.get(url, headers=headers) for url in urls)))

    return asyncio.run(run())


def statuses(responses: list[httpx.Response]) -> Counter[str | None]:
    return Counter(r.headers.get("x-cache-status") for r in responses)


def lock_waits(site: NginxSite) -> list[str]:
    """nginx logs each request that gave up waiting on the cache lock (at `info`)."""
    return [line for line in site.error_log.read_text().splitlines() if "cache lock" in line]


def cache_keys(site: NginxSite) -> Counter[str]:
    """The key of every entry in the proxy_cache folder (each file's `KEY:` header line)."""
    keys: Counter[str] = Counter()
    for path in site.cache.rglob("*"):
        if path.is_file():
            head = path.read_bytes()[:4096]
            keys[head.split(b"\nKEY: ", 1)[1].split(b"\n", 1)[0].decode()] += 1
    return keys


def test_a_cold_burst_renders_once_per_url_and_fills_the_cache(media: Path, tmp_path: Path) -> None:
    with site_over(tmp_path, media) as (upstream, site):
        hot = "/media/photo.jpg?w=120&fm=webp"
        widths = range(40, 72, 4)  # 640x480 scales to whole pixels
        others = [f"/media/photo.jpg?w={w}&fm=png" for w in widths]
        uris = [hot] * CLIENTS + [uri for uri in others for _ in range(4)]
        # Half of them already on imgproxy's disk (after an nginx restart, or `imgproxy warm`):
        # still answered with bytes that nginx stores, never with X-Accel-Redirect.
        for uri in others[::2]:
            assert httpx.get(upstream + uri).status_code == 200
        responses = burst([site.edge + uri for uri in uris])
        assert {r.status_code for r in responses} == {200}
        by_uri: dict[str, set[bytes]] = {}
        for uri, response in zip(uris, responses, strict=True):
            by_uri.setdefault(uri, set()).add(response.content)
        assert all(len(bodies) == 1 for bodies in by_uri.values())  # one rendition per URL
        assert images.decode(next(iter(by_uri[hot]))).size == (120, 90)
        for width, uri in zip(widths, others, strict=True):
            decoded = images.decode(next(iter(by_uri[uri])))
            assert (decoded.format, decoded.size) == ("PNG", (width, width * 3 // 4))
        seen = statuses(responses)
        assert set(seen) <= {"MISS", "HIT"} and seen["MISS"] >= len(by_uri)
        # Every MISS is one request imgproxy answered, every HIT none; nobody waited on a lock.
        warmed = len(others[::2])
        assert metric(upstream, "imgproxy_requests_total", 'status="200"') == seen["MISS"] + warmed
        assert metric(upstream, "imgproxy_renders_total") == len(by_uri)
        assert lock_waits(site) == []
        again = burst([site.edge + uri for uri in by_uri])
        assert statuses(again) == {"HIT": len(by_uri)}
        assert [r.content for r in again] == [next(iter(by_uri[uri])) for uri in by_uri]
        assert metric(upstream, "imgproxy_requests_total", 'status="200"') == seen["MISS"] + warmed
        keys = cache_keys(site)
        assert sorted(keys.values()) == [1] * len(by_uri)  # one file per URL in the cache folder
        assert {key.rsplit("|", 1)[1] for key in keys} == {"*/*"}  # the Accept imgproxy got


def test_a_burst_of_errors_never_waits_on_a_cache_lock(media: Path, tmp_path: Path) -> None:
    with site_over(tmp_path, media) as (upstream, site):
        responses = burst([site.edge + "/media/nope.jpg?w=50"] * CROWD)
        assert {r.status_code for r in responses} == {404}
        assert {r.json()["error"] for r in responses} == {"not_found"}
        assert statuses(responses) == {"MISS": CROWD}  # `no-store`: never kept
        assert metric(upstream, "imgproxy_requests_total", 'status="404"') == CROWD
        assert lock_waits(site) == []
        assert cache_keys(site) == Counter()


def test_private_renditions_are_never_stored_at_the_edge(media: Path, tmp_path: Path) -> None:
    with site_over(tmp_path, media, cache_control="private, max-age=600") as (upstream, site):
        responses = burst([site.edge + "/media/photo.jpg?w=60"] * CROWD)
        assert {r.status_code for r in responses} == {200}
        assert len({r.content for r in responses}) == 1
        assert statuses(responses) == {"MISS": CROWD}
        assert metric(upstream, "imgproxy_renders_total") == 1
        assert lock_waits(site) == []
        assert cache_keys(site) == Counter()


def test_expired_entries_are_revalidated_with_imgproxys_etag(media: Path, tmp_path: Path) -> None:
    # The entry's lifetime is imgproxy's Cache-Control, so the site needs no substitution.
    with site_over(tmp_path, media, cache_control="public, max-age=1") as (upstream, site):
        url = site.edge + "/media/photo.jpg?w=80&fm=webp"
        first = httpx.get(url)
        assert first.headers["x-cache-status"] == "MISS"
        assert httpx.get(url).headers["x-cache-status"] == "HIT"
        assert metric(upstream, "imgproxy_requests_total", 'status="304"') == 0
        # nginx counts whole seconds: after 2.1 s a 1 s entry has certainly expired.
        asyncio.run(asyncio.sleep(2.1))
        responses = burst([url] * CLIENTS)
        assert {r.status_code for r in responses} == {200}
        assert {r.content for r in responses} == {first.content}
        assert {r.headers["etag"] for r in responses} == {first.headers["etag"]}
        seen = statuses(responses)
        assert set(seen) <= {"REVALIDATED", "UPDATING", "HIT"} and seen["REVALIDATED"] >= 1
        # Each revalidation was one conditional request that imgproxy answered 304, no render.
        assert metric(upstream, "imgproxy_requests_total", 'status="304"') == seen["REVALIDATED"]
        assert metric(upstream, "imgproxy_requests_total", 'status="200"') == 1
        assert metric(upstream, "imgproxy_renders_total") == 1
        assert lock_waits(site) == []
        # A rewritten source has a new ETag: the next revalidation brings the new rendition.
        (media / "photo.jpg").write_bytes(images.jpeg((300, 600)))
        asyncio.run(asyncio.sleep(2.1))
        changed = httpx.get(url)
        assert changed.headers["x-cache-status"] == "EXPIRED"
        assert images.decode(changed.content).size == (80, 160)
        assert changed.headers["etag"] != first.headers["etag"]
        assert httpx.get(url).headers["x-cache-status"] == "HIT"


def test_the_edge_strips_a_client_supplied_accel_opt_in(media: Path, tmp_path: Path) -> None:
    with site_over(tmp_path, media) as (upstream, site):
        uri = "/media/photo.jpg?w=70&fm=webp"
        assert httpx.get(upstream + uri).status_code == 200  # now on imgproxy's disk
        opt_in = {"x-imgproxy-accel": "on"}
        assert "x-accel-redirect" in httpx.get(upstream + uri, headers=opt_in).headers
        responses = burst([site.edge + uri] * CLIENTS, headers=opt_in)
        assert {r.status_code for r in responses} == {200}
        disk_file = next((tmp_path / "disk").rglob("*.webp")).read_bytes()
        assert {r.content for r in responses} == {disk_file}  # imgproxy's bytes, stored
        assert "accept-ranges" not in responses[0].headers  # not sent by nginx from disk
        assert httpx.get(site.edge + uri, headers=opt_in).headers["x-cache-status"] == "HIT"
        assert lock_waits(site) == []


def test_the_origin_sends_disk_hits_itself_under_a_burst(media: Path, tmp_path: Path) -> None:
    with site_over(tmp_path, media) as (upstream, site):
        uri = "/media/photo.jpg?w=110&fm=webp"
        made = httpx.get(upstream + uri)
        disk_file = next((tmp_path / "disk").rglob("*.webp")).read_bytes()
        assert made.content == disk_file
        responses = burst([site.origin + uri] * CLIENTS)
        assert {r.status_code for r in responses} == {200}
        assert {r.content for r in responses} == {disk_file}
        for response in responses:
            h = response.headers
            assert h["accept-ranges"] == "bytes"  # nginx's static module sent the file
            assert h["etag"] == made.headers["etag"]
            assert h["cache-control"] == made.headers["cache-control"]
            assert h["surrogate-key"] == made.headers["surrogate-key"]
            assert "x-accel-redirect" not in h and "x-cache-status" not in h
        # Nothing cached in nginx: imgproxy checked every request, and rendered once.
        assert metric(upstream, "imgproxy_requests_total", 'status="200"') == CLIENTS + 1
        assert metric(upstream, "imgproxy_cache_hits_total", 'tier="disk"') == CLIENTS
        assert metric(upstream, "imgproxy_renders_total") == 1
        assert cache_keys(site) == Counter()


def test_nginx_proxy_cache_keys_on_the_accept_class(media: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, media)
    with imgproxy_process(config) as upstream:
        port = int(upstream.rsplit(":", 1)[1])
        with nginx(tmp_path, port, tmp_path / "unused", cache=True) as front:
            url = front + "/media/photo.jpg?w=70&fm=auto"
            webp = httpx.get(url, headers={"accept": "image/webp,*/*"})
            jpeg = httpx.get(url, headers={"accept": "*/*"})
            again = httpx.get(url, headers={"accept": "image/webp,*/*"})
            assert webp.headers["content-type"] == again.headers["content-type"] == "image/webp"
            assert jpeg.headers["content-type"] == "image/jpeg"
            assert [r.headers["x-cache-status"] for r in (webp, jpeg, again)] == [
                "MISS",
                "MISS",
                "HIT",
            ]
            assert metric(upstream, "imgproxy_renders_total") == 2
            assert metric(upstream, "imgproxy_requests_total", 'status="200"') == 2  # 3rd: nginx


def signed_uri(**params: str) -> str:
    return "/media/photo.jpg?" + "&".join(f"{n}={v}" for n, v in signed_params(params))


def test_made_up_accept_values_keep_one_file_per_class(media: Path, tmp_path: Path) -> None:
    """300 distinct Accept values on one fm=auto URL, at once, after a WebP client filled it:
    each gets what imgproxy itself answers that value (so never a format it refused), and
    the edge keeps one file per class imgproxy tells apart (avif and webp each admitted or
    not: four), though imgproxy's `Vary: Accept` still reaches the client."""
    values = accept_values(300)
    with site_over(tmp_path, media, security={"keys": [KEY]}) as (upstream, site):
        uri = signed_uri(w="64", fm="auto")
        filled = httpx.get(site.edge + uri, headers={"accept": "image/webp,*/*"})
        assert filled.headers["content-type"] == "image/webp"
        assert filled.headers["x-cache-status"] == "MISS"
        sent = [[("accept", value)] for value in values]
        # Several Accept lines, which imgproxy joins: nginx 1.22 reads the first alone, so
        # it may admit fewer formats than imgproxy would, never more.
        sent.append([("accept", "image/webp;q=0"), ("accept", "*/*")])
        responses = flood(site.edge, [(uri, headers) for headers in sent])
        assert [r.status_code for r in responses] == [200] * len(sent)
        with httpx.Client(base_url=upstream) as direct:
            for headers, response in zip(sent, responses, strict=True):
                expected = direct.get(uri, headers=headers).headers["content-type"]
                assert response.headers["content-type"] == expected, headers
                assert response.headers["vary"] == "Accept"
        assert {r.headers["content-type"] for r in responses} == {
            "image/avif",
            "image/webp",
            "image/jpeg",
        }
        assert sorted(cache_keys(site).values()) == [1] * 4
        assert metric(upstream, "imgproxy_renders_total") == 3  # one per format


def test_spellings_of_one_url_and_host_names_keep_one_file(media: Path, tmp_path: Path) -> None:
    """300 spellings of one signed URL's query (orders, %-escapes, `&&`) and 300 Host names
    for another URL, each lot at once: all answered alike, and the edge keeps one file for
    each URL."""
    pairs = signed_params({"w": "64", "h": "48", "fit": "cover", "q": "70", "fm": "webp"})
    queries = spellings(pairs, 300)
    with site_over(tmp_path, media, security={"keys": [KEY]}) as (upstream, site):
        responses = flood(site.edge, [(f"/media/photo.jpg?{query}", []) for query in queries])
        assert [r.status_code for r in responses] == [200] * len(queries)
        assert len({r.content for r in responses}) == 1
        assert sorted(cache_keys(site).values()) == [1]
        assert metric(upstream, "imgproxy_renders_total") == 1
        # A changed value is another rendition (or a bad signature), never the stored one.
        tampered = httpx.get(site.edge + "/media/photo.jpg?" + queries[0].replace("w=64", "w=65"))
        assert tampered.status_code == 403

        uri = signed_uri(w="80")
        send_host_spellings(site.edge, uri)
        assert sorted(cache_keys(site).values()) == [1, 1]
        assert metric(upstream, "imgproxy_renders_total") == 2


@pytest.fixture
def behind_nginx(media: Path, tmp_path: Path) -> Any:
    disk = tmp_path / "disk"
    config = write_config(
        tmp_path,
        media,
        cache={"disk_path": str(disk), "accel_redirect": "/_accel/", "memory_bytes": 0},
        security={"keys": [KEY]},
    )
    with imgproxy_process(config) as upstream:
        port = int(upstream.rsplit(":", 1)[1])
        with nginx(tmp_path, port, disk, cache=False) as front:  # the origin server
            yield upstream, front


def signed(path: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{path}?{query}&s={spec_signature(KEY, path, params)}"


OPT_IN = {"x-imgproxy-accel": "on"}  # what the origin server adds to every request


def test_nginx_sends_disk_hits_with_our_headers(behind_nginx: Any, media: Path) -> None:
    upstream, front = behind_nginx
    url = signed("/media/photo.jpg", w="90", fm="auto")
    accept = {"accept": "image/webp,*/*"}
    first = httpx.get(front + url, headers=accept)  # a miss: imgproxy sends the bytes
    assert first.status_code == 200
    direct = httpx.get(upstream + url, headers={**accept, **OPT_IN})  # now a disk hit
    assert direct.headers["x-accel-redirect"].startswith("/_accel/")
    assert direct.content == b""
    plain = httpx.get(upstream + url, headers=accept)  # no opt-in: the bytes
    assert "x-accel-redirect" not in plain.headers and plain.content == first.content
    second = httpx.get(front + url, headers=accept)  # nginx sends the file
    assert second.status_code == 200
    assert second.content == first.content
    h = second.headers
    assert h["server"].startswith("nginx")
    assert "x-accel-redirect" not in h
    for name in (
        "etag",
        "cache-control",
        "vary",
        "content-type",
        "surrogate-key",
        "x-content-type-options",
        "content-security-policy",
        "content-disposition",
    ):
        assert h[name] == first.headers[name], name
    assert h["last-modified"] == first.headers["last-modified"]  # the source's mtime
    not_modified = httpx.get(front + url, headers={**accept, "if-none-match": h["etag"]})
    assert not_modified.status_code == 304  # decided by imgproxy, before any redirect
    assert httpx.get(front + "/_accel/" + direct.headers["x-accel-redirect"][8:]).status_code == 404


def test_no_accel_redirect_without_every_check(behind_nginx: Any, media: Path) -> None:
    upstream, front = behind_nginx
    url = signed("/media/photo.jpg", w="91")
    assert httpx.get(front + url).status_code == 200
    assert "x-accel-redirect" in httpx.get(upstream + url, headers=OPT_IN).headers  # on disk
    unsigned = httpx.get(upstream + "/media/photo.jpg?w=91", headers=OPT_IN)
    assert unsigned.status_code == 403
    assert "x-accel-redirect" not in unsigned.headers
    tampered = httpx.get(upstream + url.replace("w=91", "w=92"), headers=OPT_IN)
    assert tampered.status_code == 403
    assert "x-accel-redirect" not in tampered.headers
    (media / "photo.jpg.meta.json").write_text('{"approved": false}')
    (media / "photo.tif").write_bytes(images.encode(images.photo((50, 50)), "TIFF"))
    (media / "photo.tif.meta.json").write_text('{"approved": true}')
    tif = signed("/media/photo.tif", w="20")
    assert httpx.get(front + tif).status_code == 200
    assert "x-accel-redirect" in httpx.get(upstream + tif, headers=OPT_IN).headers
    (media / "photo.tif.meta.json").write_text('{"approved": false}')
    revoked = httpx.get(upstream + tif, headers=OPT_IN)
    assert revoked.status_code == 403
    assert "x-accel-redirect" not in revoked.headers
    assert httpx.get(front + tif).status_code == 403


# Debian's /etc/nginx/nginx.conf (nginx-common), comments and TLS/mail lines left out.
STOCK_NGINX_CONF = """user www-data;
worker_processes auto;
pid /run/nginx.pid;
error_log /var/log/nginx/error.log;
include /etc/nginx/modules-enabled/*.conf;
events { worker_connections 768; }
http {
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /var/log/nginx/access.log;
    gzip on;
    include /etc/nginx/conf.d/*.conf;
    include /etc/nginx/sites-enabled/*;
}
"""
STOCK_DEFAULT_SITE = """server {
    listen 80 default_server;
    root /var/www/html;
    server_name _;
    location / { try_files $uri $uri/ =404; }
}
"""
# Debian builds nginx with its temp folders in /var/lib/nginx: the same, relocated.
DEBIAN_TEMP_PATHS = "".join(
    f"{kind}_temp_path /var/lib/nginx/{folder};\n"
    for kind, folder in (
        ("client_body", "body"),
        ("proxy", "proxy"),
        ("fastcgi", "fastcgi"),
        ("uwsgi", "uwsgi"),
        ("scgi", "scgi"),
    )
)


def nginx_test(root: Path, *, keep_default_site: bool) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on a Debian layout under `root`, after the README's install commands: the
    site in sites-available, linked from sites-enabled, the default site removed (or not).
    Every absolute path moves under `root`; the listen ports become free ones."""
    binary = need_binary("nginx")
    for folder in ("etc/nginx/modules-enabled", "etc/nginx/conf.d", "etc/nginx/sites-available"):
        (root / folder).mkdir(parents=True)
    for folder in ("etc/nginx/sites-enabled", "var/lib/nginx", "var/log/nginx", "run"):
        (root / folder).mkdir(parents=True)
    (root / "etc/nginx/mime.types").write_text("types { image/webp webp; }\n")
    edge, origin = free_port(), free_port()
    ports = {SITE_SUBSTITUTIONS[1]: f"listen {edge} default_server;"}
    ports[SITE_SUBSTITUTIONS[2]] = f"listen 127.0.0.1:{origin};"

    def relocate(text: str) -> str:
        for old, new in ports.items():
            text = text.replace(old, new)
        for prefix in ("/etc/nginx/", "/var/lib/nginx/", "/var/log/nginx/", "/run/", "/var/www/"):
            text = text.replace(prefix, f"{root}{prefix}")
        return text

    conf = STOCK_NGINX_CONF.replace("http {\n", "http {\n" + DEBIAN_TEMP_PATHS)
    (root / "etc/nginx/nginx.conf").write_text(relocate(conf))
    site = root / "etc/nginx/sites-available/imgproxy"
    site.write_text(relocate((ROOT / "config" / "nginx.conf").read_text()))
    (root / "etc/nginx/sites-enabled/imgproxy").symlink_to("../sites-available/imgproxy")
    if keep_default_site:
        default = STOCK_DEFAULT_SITE.replace("listen 80 ", f"listen {edge} ")
        (root / "etc/nginx/sites-enabled/default").write_text(relocate(default))
    command = [binary, "-t", "-p", f"{root}/", "-e", f"{root}/var/log/nginx/error.log"]
    command += ["-c", f"{root}/etc/nginx/nginx.conf"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_the_site_installs_on_a_stock_debian_nginx(tmp_path: Path) -> None:
    result = nginx_test(tmp_path / "debian", keep_default_site=False)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    created = tmp_path / "debian/var/lib/nginx/imgproxy"  # nginx made the cache folder
    assert created.is_dir()
    if os.geteuid() == 0:  # and, started as root, gave it to the worker user
        assert created.stat().st_uid == pwd.getpwnam("www-data").pw_uid
    # Left enabled, the stock default site claims port 80 too: the install removes it.
    clash = nginx_test(tmp_path / "with-default", keep_default_site=True)
    assert clash.returncode != 0
    assert "duplicate default server" in clash.stderr


# /metrics as a request line may spell it: nginx matches locations on the normalised path.
METRICS_TARGETS = (
    "/metrics",
    "/metrics?name[]=x",
    "/%6Detrics",
    "//metrics",
    "/media/../metrics",
    "http://x/metrics",
)


def test_metrics_are_only_for_the_allowed_scrapers(media: Path, tmp_path: Path) -> None:
    """The shipped `allow` lines as shipped (127.0.0.1, ::1), on both servers: a client bound
    to 127.0.0.2 (another host to nginx) gets 403 for every spelling of /metrics, and its
    images as before."""
    with site_over(tmp_path, media) as (_, site):
        for server in (site.edge, site.origin):
            assert httpx.get(server + "/media/photo.jpg?w=120").status_code == 200
            allowed = httpx.get(server + "/metrics")
            assert allowed.status_code == 200 and "imgproxy_requests_total" in allowed.text
            for target in METRICS_TARGETS:
                status, answer = raw_get(server, target, source="127.0.0.2")
                assert status == 403 and b"imgproxy_" not in answer, (server, target, answer)
            status, _ = raw_get(server, "/media/photo.jpg?w=120", source="127.0.0.2")
            assert status == 200


def test_every_operation_is_part_of_the_edge_cache_key(media: Path, tmp_path: Path) -> None:
    """Each operation makes another rendition, so each is in the shipped site's key: with
    the operations left out of it, `?w=120&rot=90` was answered with the stored `?w=120`."""
    queries = ["w=120", "w=120&rot=90", "w=120&flip=h", "w=120&blur=3", "w=120&sharpen=3"]
    queries += ["w=120&pixelate=8", "w=120&pad=6", "w=120&crop=0,0,0.5,0.5"]
    with site_over(tmp_path, media) as (_, site):
        for state in ("MISS", "HIT"):
            answers = [httpx.get(f"{site.edge}/media/photo.jpg?{q}", timeout=30) for q in queries]
            assert [a.headers["x-cache-status"] for a in answers] == [state] * len(queries)
            assert len({a.content for a in answers}) == len(queries), state


def test_a_query_on_a_dialect_url_is_never_stored_at_the_edge(media: Path, tmp_path: Path) -> None:
    """thumbor's URLs say everything in their path and imgproxy ignores a query on them: 40
    queries on one such URL at once are answered alike, and the edge keeps the one file of
    the URL itself (it kept one per query: 41)."""
    disk = tmp_path / "disk"
    cache = {"disk_path": str(disk), "accel_redirect": "/_accel/", "memory_bytes": 0}
    thumbor = {"store": "media", "allow_unsafe": True}
    config = write_config(tmp_path, media, cache=cache, **{"dialects.thumbor": thumbor})
    with imgproxy_process(config) as upstream:
        port = int(upstream.rsplit(":", 1)[1])
        with nginx_servers(tmp_path, port, disk) as site:
            url = f"{site.edge}/thumbor/unsafe/80x60/photo.jpg"
            plain = httpx.get(url, timeout=30)
            assert plain.status_code == 200
            answers = burst([f"{url}?w={n}" for n in range(1, 41)])
            assert {(a.status_code, a.content) for a in answers} == {(200, plain.content)}
            assert sorted(cache_keys(site).values()) == [1]
            assert httpx.get(url, timeout=30).headers["x-cache-status"] == "HIT"
