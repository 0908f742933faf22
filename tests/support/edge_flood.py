"""What a client can vary to make an HTTP cache in front of imgproxy store one more copy of the
same rendition (the shipped Varnish VCL and nginx site, issue 21): made-up `Accept` values,
spellings of one signed URL's query, `Host` names. Generated, and sent concurrently."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Sequence

import httpx

from tests.support import KEY, spec_signature

# Excluded or not, as imgproxy/negotiation.py reads them (SPEC §2.1): `q=0` in any spelling
# excludes, any other q admits, only the items complete within the first 1024 characters
# count. A cache that decides otherwise hands one client another class's format.
TRICKY_ACCEPTS = (
    "image/webp,*/*",
    "image/webp;q=0, */*",
    "image/webp ; Q = 0.000 , image/*",
    "image/webp;q=.0,*/*",
    "image/webp;q=0.",
    "image/webp;level=1;q=0;x=y",
    "image/webp\t;\tq\t=\t00.00\t,\ttext/html",
    "image/webp;q=0.0.0",  # not a zero q: admits
    "image/webp;q=0.001",
    'image/webp;q="0"',  # quoted: not read as zero
    "image/webp;q=",
    "image/webp;q=0 0",
    "IMAGE/WEBP",
    "image/webpx, ximage/webp, image/webp+xml",
    "image/webp;q=0, image/webp",  # named twice, once admitted
    "image/avif",
    "image/avif,image/webp",
    "image/avif;q=0,image/webp",
    "image/avif,image/webp;q=0",
    "image/avif;q=0.5;q=0,image/webp;q=0",
    "image/*",
    "*/*",
    "",
    "a" * 1014 + ",image/webp",  # complete only past character 1024
    "a" * 1013 + ",image/webp;q=0",  # cut at 1024 as `image/webp`: dropped, not admitted
    "a" * 1013 + ",image/webp,*/*",
    "image/webp," + "b" * 1030,
    "image/avif;q=0," + "c" * 1012 + ",image/avif",
)

_ZEROS = ("q=0", "q=0.0", "Q=0", "q = 0.000", "q=.0", "q=00", "q=0.")


def accept_values(count: int, seed: int = 21) -> list[str]:
    """`count` distinct Accept values: TRICKY_ACCEPTS, then browser-like lists with random
    items, case, whitespace and q-values, image/avif and image/webp each absent, admitted or
    refused."""
    rng = random.Random(seed)
    values = list(TRICKY_ACCEPTS)
    for n in itertools.count():
        if len(values) >= count:
            break
        items = [f"text/x-{n};v={rng.randrange(10**6)}", "*/*;q=0.8"]
        for media in ("image/avif", "image/webp"):
            state = rng.choice(("absent", "admitted", "refused"))
            if state == "absent":
                continue
            if rng.random() < 0.5:
                media = media.upper() if rng.random() < 0.5 else media.title()
            q = rng.choice(_ZEROS) if state == "refused" else f"q=0.{rng.randrange(1, 999)}"
            space = rng.choice(("", " ", "\t", " \t "))
            items.append(f"{space}{media}{space};{space}{q}{space}")
        rng.shuffle(items)
        values.append(rng.choice((",", ", ")).join(items).strip(" \t"))  # as h11 sends
    return values[:count]


def signed_params(params: dict[str, str]) -> list[tuple[str, str]]:
    """`params` and their SPEC §3 signature for `/media/photo.jpg`, as pairs in this order."""
    return [*params.items(), ("s", spec_signature(KEY, "/media/photo.jpg", params))]


def spellings(pairs: Sequence[tuple[str, str]], count: int, seed: int = 21) -> list[str]:
    """`count` distinct queries that all mean `pairs` to imgproxy (SPEC §2.1, §3): half its
    orders, half with one character of a name or value %-escaped (and some with an empty
    `&&` part)."""
    rng = random.Random(seed)
    found: set[str] = set()
    orders = list(itertools.permutations(pairs))
    rng.shuffle(orders)
    for order in orders[: count // 2]:
        found.add("&".join(f"{name}={value}" for name, value in order))
    while len(found) < count:
        chosen = list(rng.choice(orders))
        at = rng.randrange(len(chosen))
        name, value = chosen[at]
        if rng.random() < 0.5:
            i = rng.randrange(len(value))
            value = f"{value[:i]}%{ord(value[i]):02X}{value[i + 1 :]}"
        else:
            name = f"%{ord(name[0]):02X}{name[1:]}"
        chosen[at] = (name, value)
        parts = [f"{n}={v}" for n, v in chosen]
        if rng.random() < 0.3:
            parts.insert(rng.randrange(len(parts) + 1), "")
        found.add("&".join(parts))
    return sorted(found)


async def _fetch(
    base: str, requests: Sequence[tuple[str, list[tuple[str, str]]]], clients: int
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        return list(await asyncio.gather(*(http.get(base + uri, headers=h) for uri, h in requests)))


def flood(
    base: str, requests: Sequence[tuple[str, list[tuple[str, str]]]], clients: int = 32
) -> list[httpx.Response]:
    """Every (URI, headers) request at once, over `clients` connections."""
    return asyncio.run(_fetch(base, requests, clients))


def send_host_spellings(edge: str, uri: str) -> None:
    """`uri` under 300 Host values (one a case and port variant) at once, then 20 times with
    the host in the request line instead: every answer a 200 with the same bytes."""
    from tests.support import raw_get

    hosts = [[("host", f"img{n}.example")] for n in range(299)]
    hosts.append([("host", "IMG0.EXAMPLE:80")])
    responses = flood(edge, [(uri, host) for host in hosts])
    assert [r.status_code for r in responses] == [200] * len(hosts)
    assert len({r.content for r in responses}) == 1
    for n in range(20):
        status, _ = raw_get(edge, f"http://abs{n}.example{uri}")
        assert status == 200
