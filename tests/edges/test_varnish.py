"""The shipped config/varnish.vcl as shipped (only its backend port changed), in a real Varnish
with vmod_xkey in front of a real `imgproxy serve`, and the real `imgproxy purge` against the
same config file (SPEC §6, §12.2): renditions are cached and revalidated, a purge drops
exactly one source's renditions, PURGE is refused outside the ACL, and a cache that fails
the purge fails the command."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import KEY, images, metric, need_binary, raw_get, write_config
from tests.support.edge_flood import (
    accept_values,
    flood,
    send_host_spellings,
    signed_params,
    spellings,
)
from tests.support.processes import free_port, served, varnish

CLIENTS = 32
# Two sources' renditions, as (URL, Accept): fm=auto varies by Accept, so its two variants
# are two objects in Varnish and two renditions in imgproxy's disk tier.
PHOTO = [
    ("/media/photo.jpg?w=120", "*/*"),
    ("/media/photo.jpg?w=60&fm=webp", "*/*"),
    ("/media/photo.jpg?p=small", "*/*"),
    ("/media/photo.jpg?p=auto", "image/webp,*/*"),
    ("/media/photo.jpg?p=auto", "*/*"),
]
WIDE = [("/media/wide.png?w=100", "*/*"), ("/media/wide.png?p=auto", "image/webp,*/*")]


@dataclass(frozen=True, slots=True)
class Site:
    edge: str  # Varnish
    upstream: str  # imgproxy
    config: Path  # the config file both `imgproxy serve` and `imgproxy purge` read
    instance: Path  # varnishd's -n folder, for varnishstat


@contextmanager
def varnish_over(
    tmp_path: Path,
    media: Path,
    *,
    purge_urls: tuple[str, ...] = (),
    security: dict[str, Any] | None = None,
    **cache: Any,
) -> Iterator[Site]:
    """imgproxy with only a disk tier (so the CLI's purge reaches all of it), and the shipped
    VCL in front; `cache.purge_urls` is Varnish, then `purge_urls`."""
    edge_port = free_port()
    edge = f"http://127.0.0.1:{edge_port}"
    settings = {
        "disk_path": str(tmp_path / "disk"),
        "memory_bytes": 0,
        "purge_urls": [f"{edge}/", *purge_urls],
        **cache,
    }
    config = write_config(tmp_path, media, cache=settings, security=security or {})
    with served(config) as server:
        backend_port = int(server.url.rsplit(":", 1)[1])
        with varnish(tmp_path, backend_port, port=edge_port):
            yield Site(edge, server.url, config, tmp_path / "varnish")


def get(site: Site, uri: str, accept: str = "*/*", **headers: str) -> httpx.Response:
    return httpx.get(site.edge + uri, headers={"accept": accept, **headers})


def x_cache(site: Site, renditions: list[tuple[str, str]]) -> list[str]:
    return [get(site, uri, accept).headers["x-cache"] for uri, accept in renditions]


def imgproxy_purge(site: Site, source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imgproxy", "purge", "--config", str(site.config), source],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_rendition_misses_then_hits_with_imgproxys_headers(media: Path, tmp_path: Path) -> None:
    with varnish_over(tmp_path, media) as site:
        first = get(site, "/media/photo.jpg?w=120")
        assert (first.status_code, first.headers["x-cache"]) == (200, "MISS")
        second = get(site, "/media/photo.jpg?w=120")
        assert (second.status_code, second.headers["x-cache"]) == (200, "HIT")
        assert second.content == first.content
        assert images.decode(second.content).size == (120, 90)
        for name in ("etag", "cache-control", "surrogate-key", "content-type"):
            assert second.headers[name] == first.headers[name], name
        assert "xkey" not in second.headers  # Varnish's index, not the client's business
        # The client's own revalidation is answered by Varnish from the cached ETag.
        revalidated = get(
            site, "/media/photo.jpg?w=120", **{"if-none-match": first.headers["etag"]}
        )
        assert (revalidated.status_code, revalidated.headers["x-cache"]) == (304, "HIT")
        assert metric(site.upstream, "imgproxy_renders_total") == 1
        assert metric(site.upstream, "imgproxy_requests_total", 'status="200"') == 1


def test_concurrent_clients_get_identical_bytes_from_one_render(
    media: Path, tmp_path: Path
) -> None:
    with varnish_over(tmp_path, media) as site:
        url = site.edge + "/media/photo.jpg?w=150&fm=webp"

        async def burst() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=0)
            async with httpx.AsyncClient(timeout=60, limits=limits) as http:
                return list(await asyncio.gather(*(http.get(url) for _ in range(CLIENTS))))

        responses = asyncio.run(burst())
        assert [r.status_code for r in responses] == [200] * CLIENTS
        assert len({r.content for r in responses}) == 1
        assert images.decode(responses[0].content).size == (150, 112)
        # Varnish coalesces the misses: imgproxy is asked, and renders, once.
        seen = Counter(r.headers["x-cache"] for r in responses)
        assert seen["MISS"] == 1 and seen["HIT"] == CLIENTS - 1, seen
        assert metric(site.upstream, "imgproxy_requests_total", 'status="200"') == 1
        assert metric(site.upstream, "imgproxy_renders_total") == 1


def test_a_stale_rendition_is_revalidated_with_imgproxys_etag(media: Path, tmp_path: Path) -> None:
    # The object's lifetime is imgproxy's Cache-Control, so the VCL needs no substitution.
    with varnish_over(tmp_path, media, cache_control="public, max-age=1") as site:
        first = get(site, "/media/photo.jpg?w=80")
        assert first.headers["x-cache"] == "MISS"
        time.sleep(2.2)  # past max-age (Age counts whole seconds)
        stale = get(site, "/media/photo.jpg?w=80")  # in grace: served, revalidated behind it
        assert (stale.headers["x-cache"], stale.content) == ("HIT", first.content)
        deadline = time.monotonic() + 10
        while metric(site.upstream, "imgproxy_requests_total", 'status="304"') < 1:
            assert time.monotonic() < deadline, "Varnish never revalidated with If-None-Match"
            time.sleep(0.1)
        assert metric(site.upstream, "imgproxy_renders_total") == 1  # a 304 renders nothing
        renewed = get(site, "/media/photo.jpg?w=80")
        assert (renewed.headers["x-cache"], renewed.content) == ("HIT", first.content)


def test_purge_drops_every_rendition_of_one_source_and_no_other(
    media: Path, tmp_path: Path
) -> None:
    with varnish_over(tmp_path, media) as site:
        assert x_cache(site, PHOTO + WIDE) == ["MISS"] * len(PHOTO + WIDE)
        assert x_cache(site, PHOTO + WIDE) == ["HIT"] * len(PHOTO + WIDE)
        renders = metric(site.upstream, "imgproxy_renders_total")
        assert renders == len(PHOTO + WIDE)

        result = imgproxy_purge(site, "media/photo.jpg")
        assert result.returncode == 0, result.stderr
        summary, answer = result.stdout.splitlines()
        removed = int(summary.split()[1])
        assert summary == f"purged {removed} cached entries of media/photo.jpg"
        assert removed >= len(PHOTO)  # imgproxy's disk tier
        assert answer == f"{site.edge}/: 200 Purged {len(PHOTO)} objects"  # Varnish's objects

        assert x_cache(site, WIDE) == ["HIT"] * len(WIDE)
        assert x_cache(site, PHOTO) == ["MISS"] * len(PHOTO)
        # Rendered anew: the purge emptied imgproxy's tier before Varnish asked again.
        assert metric(site.upstream, "imgproxy_renders_total") == renders + len(PHOTO)
        assert x_cache(site, PHOTO) == ["HIT"] * len(PHOTO)


def test_purge_from_outside_the_acl_is_refused(media: Path, tmp_path: Path) -> None:
    # The shipped ACL as shipped: 127.0.0.1 and ::1. 127.0.0.2 is loopback on Linux too, but
    # not in it, so a client bound there is any other host to Varnish.
    with varnish_over(tmp_path, media) as site:
        assert get(site, "/media/photo.jpg?w=120").headers["x-cache"] == "MISS"
        key = get(site, "/media/photo.jpg?w=120").headers["surrogate-key"]
        outsider = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        with outsider:
            refused = outsider.request("PURGE", site.edge + "/", headers={"xkey-purge": key})
        assert refused.status_code == 403
        assert get(site, "/media/photo.jpg?w=120").headers["x-cache"] == "HIT"
        unnamed = httpx.request("PURGE", site.edge + "/")
        assert (unnamed.status_code, unnamed.reason_phrase) == (400, "xkey-purge header required")
        allowed = httpx.request("PURGE", site.edge + "/", headers={"xkey-purge": key})
        assert (allowed.status_code, allowed.reason_phrase) == (200, "Purged 1 objects")
        assert get(site, "/media/photo.jpg?w=120").headers["x-cache"] == "MISS"


def test_a_failing_cache_fails_the_purge_and_is_named(media: Path, tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    with varnish_over(tmp_path, media, purge_urls=(nobody,)) as site:
        # And a cache that answers, but not 2xx: imgproxy itself (405 to PURGE).
        refusing = f"{site.upstream}/"
        config = site.config.read_text()
        assert config.count(f'"{nobody}"]') == 1
        site.config.write_text(config.replace(f'"{nobody}"]', f'"{nobody}", "{refusing}"]'))
        assert x_cache(site, PHOTO[:2]) == ["MISS", "MISS"]
        renders = metric(site.upstream, "imgproxy_renders_total")

        result = imgproxy_purge(site, "media/photo.jpg")
        assert result.returncode == 3
        assert "Traceback" not in result.stderr
        failures = result.stderr.splitlines()
        assert failures[0].startswith(f"imgproxy: HTTP cache {nobody} did not purge ")
        assert "ConnectError" in failures[0]
        assert failures[1] == (
            f"imgproxy: HTTP cache {refusing} did not purge media/photo.jpg: 405 Method Not Allowed"
        )
        assert result.stdout.splitlines()[1] == f"{site.edge}/: 200 Purged 2 objects"
        # The tiers were purged all the same: Varnish misses and imgproxy renders again.
        assert x_cache(site, PHOTO[:2]) == ["MISS", "MISS"]
        assert metric(site.upstream, "imgproxy_renders_total") == renders + 2


# /metrics as a request line may spell it; imgproxy's server decodes the path first.
METRICS_TARGETS = (
    "/metrics",
    "/metrics?name[]=x",
    "/%6Detrics",
    "/%6d%65trics",
    "/METRICS",
    "http://x/metrics",
)


def test_metrics_are_only_for_the_scrapers_acl(media: Path, tmp_path: Path) -> None:
    """The shipped `scrapers` ACL as shipped (127.0.0.1, ::1): a client bound to 127.0.0.2
    (another host to Varnish) gets 403 for every spelling of /metrics, and its images."""
    with varnish_over(tmp_path, media) as site:
        assert get(site, "/media/photo.jpg?w=120").status_code == 200
        allowed = get(site, "/metrics")
        assert allowed.status_code == 200 and "imgproxy_requests_total" in allowed.text
        for target in METRICS_TARGETS:
            status, answer = raw_get(site.edge, target, source="127.0.0.2")
            assert status == 403 and b"imgproxy_" not in answer, (target, answer[:200])
        status, _ = raw_get(site.edge, "/media/photo.jpg?w=120", source="127.0.0.2")
        assert status == 200


def n_objects(site: Site) -> int:
    """Varnish's count of stored objects (every variant of every URL)."""
    stat = subprocess.run(
        [need_binary("varnishstat"), "-n", str(site.instance), "-1", "-f", "MAIN.n_object"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return int(stat.stdout.split()[1])


def signed_uri(**params: str) -> str:
    return "/media/photo.jpg?" + "&".join(f"{n}={v}" for n, v in signed_params(params))


def test_made_up_accept_values_keep_one_object_per_class(media: Path, tmp_path: Path) -> None:
    """300 distinct Accept values on one fm=auto URL, at once, after a WebP client filled it:
    each gets what imgproxy itself answers that value (so never a format it refused), and
    Varnish keeps one object per class imgproxy tells apart (avif and webp each admitted or
    not: four)."""
    values = accept_values(300)
    with varnish_over(tmp_path, media, security={"keys": [KEY]}) as site:
        uri = signed_uri(w="64", fm="auto")
        before = n_objects(site)
        filled = get(site, uri, "image/webp,*/*")
        assert (filled.headers["content-type"], filled.headers["x-cache"]) == ("image/webp", "MISS")
        # A client that sends several Accept lines: imgproxy reads them joined.
        values_sent = [[("accept", value)] for value in values]
        values_sent += [
            [("accept", "image/webp;q=0"), ("accept", "*/*")],
            [("accept", "text/html"), ("accept", "image/webp")],
            [("accept", "image/avif;q=0"), ("accept", "image/avif;q=1")],
        ]
        responses = flood(site.edge, [(uri, headers) for headers in values_sent])
        assert [r.status_code for r in responses] == [200] * len(values_sent)
        with httpx.Client(base_url=site.upstream) as upstream:
            for headers, response in zip(values_sent, responses, strict=True):
                direct = upstream.get(uri, headers=headers)
                assert response.headers["content-type"] == direct.headers["content-type"], headers
                assert response.headers["vary"] == "Accept"
        assert {r.headers["content-type"] for r in responses} == {
            "image/avif",
            "image/webp",
            "image/jpeg",
        }
        assert n_objects(site) - before == 4
        assert metric(site.upstream, "imgproxy_renders_total") == 3  # one per format


def test_spellings_of_one_url_and_host_names_keep_one_object(media: Path, tmp_path: Path) -> None:
    """300 spellings of one signed URL's query (orders, %-escapes, `&&`) and 300 Host names
    for another URL, each lot at once: all answered alike, and Varnish keeps one object for
    each URL. A sorted query still carries a valid signature (imgproxy signs it sorted)."""
    pairs = signed_params({"w": "64", "h": "48", "fit": "cover", "q": "70", "fm": "webp"})
    queries = spellings(pairs, 300)
    with varnish_over(tmp_path, media, security={"keys": [KEY]}) as site:
        before = n_objects(site)
        responses = flood(site.edge, [(f"/media/photo.jpg?{query}", []) for query in queries])
        assert [r.status_code for r in responses] == [200] * len(queries)
        assert len({r.content for r in responses}) == 1
        assert n_objects(site) - before == 1
        assert metric(site.upstream, "imgproxy_renders_total") == 1
        # A changed value is another rendition (or a bad signature), never the stored one.
        tampered = get(site, "/media/photo.jpg?" + queries[0].replace("w=64", "w=65"))
        assert tampered.status_code == 403

        uri = signed_uri(w="80")
        send_host_spellings(site.edge, uri)
        assert n_objects(site) - before == 2
        assert metric(site.upstream, "imgproxy_renders_total") == 2
