"""A URL -> an image to save (SPEC §14): downloaded under every `http` store rule of §7 (the
resolved address of every hop checked and connected to, at most 3 redirects, a total
deadline, the byte cap applied while streaming, `allowed_hosts`), then `inspect`ed, with a
safe file name from the final URL and the detected format's extension.

The "save an image from a URL" feature every app grows is an SSRF hole and a way to fill a
disk; this is the server's own downloader and the server's own checks, nothing new.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from imgproxy.inspection import ImageInfo, inspect
from imgproxy.settings import Settings, StoreSettings
from imgproxy.store_options import HttpOptions

if TYPE_CHECKING:
    from imgproxy.stores.http import HTTPStore

MAX_NAME = 100
EXTENSIONS = {"JPEG": "jpg", "TIFF": "tif", "ICO": "ico", "MPO": "jpg"}
UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")


@dataclass(frozen=True, slots=True)
class Fetched:
    data: bytes
    info: ImageInfo
    filename: str  # safe to save under: no separators, no control characters, <= 100

    def content_file(self) -> Any:
        """A Django `ContentFile` named `filename`, for `field.save(name, content)`."""
        from django.core.files.base import ContentFile

        return ContentFile(self.data, name=self.filename)


async def fetch_async(
    url: str, *, settings: Settings, store: str | None = None, approved: bool = False
) -> Fetched:
    """Download and inspect. `store` names whose rules apply: its policy and limits, and, if
    it is an `http` store, its timeouts, `allowed_hosts` and allowed networks. Any `url`
    string either gives an image or raises an ImageProxyError: BadRequest when it is not an
    http(s) URL with a valid host, UpstreamError/UpstreamTimeout when the origin fails."""
    config = _store(settings, store)
    limits = config.limits if config is not None else settings.limits
    options = config.options if config is not None else None
    if not isinstance(options, HttpOptions):
        options = HttpOptions(base_url=url)  # the defaults: no private networks, 5 s
    client = _client(options, settings, url)
    try:
        data, final = await client.download(url, limit=limits.max_source_bytes)
    finally:
        await client.close()
    info = await asyncio.to_thread(inspect, data, settings=settings, approved=approved, store=store)
    return Fetched(data, info, safe_filename(final, info.format))


def fetch(
    url: str, *, settings: Settings, store: str | None = None, approved: bool = False
) -> Fetched:
    """`fetch_async` for synchronous code (a Django view or admin action); not from inside a
    running event loop."""
    return asyncio.run(fetch_async(url, settings=settings, store=store, approved=approved))


def safe_filename(url: str, format: str) -> str:
    """The last segment of the URL's path, decoded once, stripped of separators and control
    characters, its extension replaced by the detected format's, at most MAX_NAME long."""
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    # Every Unicode control, format (bidi overrides), surrogate and unassigned character.
    visible = "".join(c if unicodedata.category(c)[0] != "C" else "-" for c in name)
    stem = UNSAFE.sub("-", PurePosixPath(visible).stem).strip(" .-") or "image"
    extension = EXTENSIONS.get(format, format.lower())
    return stem[: MAX_NAME - len(extension) - 1] + "." + extension


def _store(settings: Settings, store: str | None) -> StoreSettings | None:
    if store is None:
        return None
    if store not in settings.stores:
        configured = ", ".join(settings.stores) or "none"
        raise ValueError(f"no store {store!r} in the settings (configured: {configured})")
    return settings.stores[store]


def _client(options: HttpOptions, settings: Settings, url: str) -> HTTPStore:
    """Loaded on use: an app that never fetches never imports httpx. A `url` that is no
    URL to fetch is a 400 before a client (and its TLS context) is built."""
    from imgproxy.stores.http import HTTPStore
    from imgproxy.stores.http_urls import requested_url

    requested_url(url)
    return HTTPStore.from_settings(
        options, name="fetch", approved=False, base_dir=settings.base_dir
    )
