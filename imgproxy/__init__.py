"""imgproxy: originals and renditions from any store, with approval-gated formats and
correct HTTP caching. The public API is exactly `__all__` (and `__version__`, kept out of
it so that `from imgproxy import *` binds no dunder into its importer)."""

from imgproxy.asgi import ImageProxy
from imgproxy.errors import ImageProxyError
from imgproxy.fetching import Fetched, fetch, fetch_async
from imgproxy.inspection import ImageInfo, inspect
from imgproxy.messages import ImageRequest
from imgproxy.responsive import picture
from imgproxy.settings import Settings
from imgproxy.stores import Store, StoredFile
from imgproxy.urls import sign_url, srcset, url_for


def __getattr__(name: str) -> str:
    """`__version__`, found when asked: finding it imports importlib.metadata, which cost
    every `imgproxy serve` worker 2.7 MiB."""
    if name == "__version__":
        from imgproxy.version import VERSION

        return VERSION
    raise AttributeError(f"module 'imgproxy' has no attribute {name!r}")


__all__ = [
    "Fetched",
    "ImageInfo",
    "ImageProxy",
    "ImageProxyError",
    "ImageRequest",
    "Settings",
    "Store",
    "StoredFile",
    "fetch",
    "fetch_async",
    "inspect",
    "picture",
    "sign_url",
    "srcset",
    "url_for",
]
