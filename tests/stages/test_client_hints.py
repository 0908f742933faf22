"""Client hints (SPEC §15.4): with `server.client_hints`, `Sec-CH-DPR`/`DPR` multiplies the box
of a URL without `dpr` and `Sec-CH-Width`/`Width` bounds its width; every such answer names the
hints in Vary, each URL keeps its own headers on the hit path, and a client varying the hints
reaches only a short ladder of renditions (SPEC §11.1). Through the core, the ASGI app, the
WSGI middleware, `imgproxy serve` and a real Varnish honouring the Vary."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imgproxy import ImageProxy, hints, pipeline
from imgproxy.messages import ImageRequest
from imgproxy.services import Services
from imgproxy.wsgi import ImageProxyMiddleware
from tests.edges.test_edges import call
from tests.support import LiveServer, need_binary, settings_for, write_config
from tests.support.processes import free_port, served, varnish

ON = {"client_hints": True}


def width_of(body: bytes) -> int:
    return Image.open(io.BytesIO(body)).width


def core(services: Services, query: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = ImageRequest("GET", "/media/photo.jpg", query, headers)
    response = asyncio.run(pipeline.serve(services, request))
    return response.status, dict(response.headers), response.body


def test_hints_are_ignored_unless_configured(media: Path) -> None:
    services = Services.build(settings_for(media))
    status, headers, body = core(services, "w=100", **{"sec-ch-dpr": "2", "width": "50"})
    assert status == 200 and width_of(body) == 100
    assert "vary" not in headers
    asyncio.run(services.close())


@pytest.mark.parametrize("order", ["plain-first", "hinted-first"])
def test_dpr_and_width_shape_the_rendition_and_each_answer_keeps_its_headers(
    media: Path, order: str
) -> None:
    """The same URL with and without hints, cold and then from the memory tier, interleaved
    in both orders: each answer its own width, ETag and Vary."""
    services = Services.build(settings_for(media, server=ON))
    asks: list[tuple[dict[str, str], int]] = [
        ({}, 100),
        ({"sec-ch-dpr": "2"}, 200),
        ({"dpr": "2"}, 200),  # the older spelling, the same rendition
        ({"sec-ch-dpr": "3", "sec-ch-width": "250"}, 256),  # 300 bounded by 250, snapped up
        ({"width": "90"}, 100),  # 128 does not bound a 100 px request
    ]
    if order == "hinted-first":
        asks.reverse()
    etags: dict[int, str] = {}
    for headers, want in asks * 2:
        status, answer, body = core(services, "w=100&fm=webp", **headers)
        assert status == 200, body[:200]
        assert width_of(body) == want, headers
        assert answer["vary"] == hints.VARY
        assert etags.setdefault(want, answer["etag"]) == answer["etag"]
    assert len(set(etags.values())) == 3
    asyncio.run(services.close())


def test_a_dpr_in_the_url_wins_and_width_alone_sizes_an_open_box(media: Path) -> None:
    services = Services.build(settings_for(media, server=ON))
    assert width_of(core(services, "w=100&dpr=1.5", **{"sec-ch-dpr": "3"})[2]) == 150
    assert width_of(core(services, "h=60&fm=png", **{"sec-ch-width": "64"})[2]) == 64
    # fit=cover keeps the box's shape when the width bounds it.
    status, _, body = core(services, "w=400&h=200&fit=cover", **{"sec-ch-width": "100"})
    assert status == 200 and Image.open(io.BytesIO(body)).size == (128, 64)
    asyncio.run(services.close())


def test_placeholders_metadata_and_originals_do_not_vary(media: Path) -> None:
    services = Services.build(settings_for(media, server=ON))
    for query in ("", "fm=json"):
        status, headers, _ = core(services, query, **{"sec-ch-dpr": "2"})
        assert status == 200 and "vary" not in headers, query
    asyncio.run(services.close())


def test_hostile_hints_reach_a_short_ladder_of_renditions_and_never_fail(
    media: Path, serve: Callable[..., LiveServer]
) -> None:
    """Many clients at once, each with its own DPR/Width, malformed ones too: every answer a
    200, and at most DPR_STEP/WIDTH_STEP's ladder of distinct renditions."""
    server = serve(ImageProxy(settings_for(media, server=ON)))
    spellings = [str(n) for n in range(1, 1200, 7)] + ["-5", "1e9", "abc", "+2", "2.5.5", "9" * 40]
    dprs = ["1", "1.1", "1.3", "2.01", "2.49", "3.99", "4", "40", "0.5", "x", "1" * 30]
    asks = [(w, d) for w in spellings for d in dprs[:3]] + [("300", d) for d in dprs]

    def ask(pair: tuple[str, str]) -> tuple[int, str, int]:
        width, dpr = pair
        response = httpx.get(
            f"{server.url}/media/photo.jpg?w=200&fm=png",
            headers={"sec-ch-width": width, "sec-ch-dpr": dpr},
            timeout=60,
        )
        return response.status_code, response.headers["etag"], width_of(response.content)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, asks))
    assert {status for status, _, _ in answers} == {200}
    # w=200 at DPR 1..4 is 200..800 px, bounded by widths snapped to 64 px steps.
    assert len({etag for _, etag, _ in answers}) <= 800 // hints.WIDTH_STEP + 13
    assert max(width for _, _, width in answers) <= 800


def test_the_wsgi_middleware_reads_the_hints(media: Path) -> None:
    def host(environ: object, start_response: Callable[..., object]) -> list[bytes]:
        start_response("404 Not Found", [])
        return [b""]

    app = ImageProxyMiddleware(host, ImageProxy(settings_for(media, server=ON)), prefix="/img")
    status, headers, body = call(app, "/img/media/photo.jpg", "w=100", HTTP_SEC_CH_DPR="2")
    assert status.startswith("200") and width_of(body) == 200
    assert headers["vary"] == hints.VARY


def test_the_server_and_varnish_keep_one_answer_per_device(media: Path, tmp_path: Path) -> None:
    """`imgproxy serve` with two workers behind the shipped VCL: a DPR 2 answer cached at the
    edge is never given to a DPR 1 device, nor the other way round; the demo page asks for
    the hints."""
    need_binary("varnishd")
    config = write_config(tmp_path, media, server={**ON, "demo": True})
    edge_port = free_port()
    with served(config) as server:
        page = httpx.get(f"{server.url}/", timeout=30)
        assert page.headers["accept-ch"] == hints.ACCEPT_CH
        backend_port = int(server.url.rsplit(":", 1)[1])
        with varnish(tmp_path, backend_port, port=edge_port):
            edge = f"http://127.0.0.1:{edge_port}/media/photo.jpg?w=120"
            for state in ("MISS", "HIT"):
                for dpr, want in (("2", 240), ("1", 120), ("3", 360)):
                    answer = httpx.get(edge, headers={"sec-ch-dpr": dpr}, timeout=30)
                    assert answer.status_code == 200
                    assert width_of(answer.content) == want, (dpr, answer.headers)
                    assert answer.headers["x-cache"] == state, (dpr, answer.headers)


def test_varnish_keeps_a_short_ladder_of_variants_whatever_the_hints_say(
    media: Path, tmp_path: Path
) -> None:
    """The shipped VCL snaps the hints as imgproxy does before Varnish looks up a variant:
    spellings of one DPR share one cached answer, and 400 distinct raw hint values from 32
    clients at once reach 32 variants of one URL at most (13 DPRs, 6 widths, 13 DPRs at
    64 px), each a HIT when asked again. The raw values made a variant each: 400 misses."""
    need_binary("varnishd")
    config = write_config(tmp_path, media, server=ON)
    edge_port = free_port()
    with (
        served(config) as server,
        varnish(tmp_path, int(server.url.rsplit(":", 1)[1]), port=edge_port),
    ):
        edge = f"http://127.0.0.1:{edge_port}/media/photo.jpg?w=120"
        first = httpx.get(edge, headers={"sec-ch-dpr": "2"}, timeout=30)
        assert (first.headers["x-cache"], width_of(first.content)) == ("MISS", 240)
        for name, value in [
            ("sec-ch-dpr", "2.0"),
            ("dpr", "2"),
            ("sec-ch-dpr", "2.1"),
            ("sec-ch-dpr", "1.9"),
            ("dpr", "2.00000001"),
        ]:
            again = httpx.get(edge, headers={name: value}, timeout=30)
            assert (again.headers["x-cache"], width_of(again.content)) == ("HIT", 240), value
        plain = httpx.get(edge, timeout=30)
        for name, value in [("dpr", "1"), ("sec-ch-dpr", "0.5"), ("dpr", "x"), ("dpr", "1e3")]:
            same = httpx.get(edge, headers={name: value}, timeout=30)
            assert same.headers["x-cache"] == "HIT" and same.content == plain.content, value

        raw = [{"sec-ch-dpr": f"{1 + n / 100:.2f}"} for n in range(300)]
        raw += [{"width": str(n * 7)} for n in range(50)]
        raw += [{"dpr": f"{n / 10 + 0.05:.3f}", "sec-ch-width": str(n)} for n in range(50)]

        async def ask_all() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=32)
            async with httpx.AsyncClient(timeout=60, limits=limits) as client:
                gate = asyncio.Semaphore(32)

                async def one(headers: dict[str, str]) -> httpx.Response:
                    async with gate:
                        return await client.get(edge, headers=headers)

                return await asyncio.gather(*(one(h) for h in raw))

        answers = asyncio.run(ask_all())
        assert {a.status_code for a in answers} == {200}
        misses = sum(a.headers["x-cache"] == "MISS" for a in answers)
        assert misses <= 32, misses
        widths = {width_of(a.content) for a in answers}
        assert len(widths) <= 13 + 2, sorted(widths)  # DPR 1..4 at 120 px, and w=64/128
        repeated = asyncio.run(ask_all())
        assert {a.headers["x-cache"] for a in repeated} == {"HIT"}
        assert [a.content for a in repeated] == [a.content for a in answers]
