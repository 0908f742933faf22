"""HTTP caches in front of imgproxy (Varnish, a CDN): asking each to drop one source.

A source's Surrogate-Key -> `PURGE` with `xkey-purge: <key>` to every `cache.purge_urls`
(Varnish's xkey convention, SPEC §12.2), all at once -> each cache's answer, failures included.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

# A purge is a small request to a cache on the same network; one that hangs is down. The
# whole exchange has this deadline: httpx's own timeouts are per read, so a cache dribbling
# its answer a byte at a time held a Django delete waiting for it without end.
TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Answer:
    """One cache's answer: `ok` only for a 2xx; `detail` is its status line or the error."""

    url: str
    ok: bool
    detail: str


async def purge(urls: Sequence[str], key: str) -> tuple[Answer, ...]:
    """Every cache's answer, in the order of `urls`; never raises for a cache that fails."""
    if not urls:
        return ()
    # httpx loads with the first purge: `imgproxy serve` imports the CLI but never purges.
    import httpx

    # trust_env=False: these caches are ours, addressed directly; an HTTP proxy from the
    # environment would receive the PURGE instead of them.
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, trust_env=False) as http:
        return tuple(await asyncio.gather(*(_purge_one(http, url, key) for url in urls)))


async def _purge_one(http: httpx.AsyncClient, url: str, key: str) -> Answer:
    import httpx

    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            response = await http.request("PURGE", url, headers={"xkey-purge": key})
    except TimeoutError:
        return Answer(url, False, f"no whole answer within {TIMEOUT_SECONDS:g} s")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL: a URL httpx can't parse
        return Answer(url, False, f"{type(exc).__name__}: {str(exc) or 'no answer'}")
    detail = f"{response.status_code} {response.reason_phrase}".rstrip()
    return Answer(url, response.is_success, detail)
