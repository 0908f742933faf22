"""imgproxy: originals and renditions from any store, with approval-gated formats and
correct HTTP caching. The public API is exactly `__all__` (and `__version__`, kept out of
it so that `from imgproxy import *` binds no dunder into its importer).

Each name is imported when first asked for, so that importing one module of the package
(`imgproxy.settings` in `imgproxy serve`'s supervisor, `imgproxy.urls` in a page's
template code) does not import the whole of it: the app, Pillow and Starlette cost the
supervisor 20 MiB it never used."""

import typing
from types import ModuleType

if typing.TYPE_CHECKING:
    from imgproxy.asgi import ImageProxy
    from imgproxy.errors import ImageProxyError
    from imgproxy.fetching import Fetched, fetch, fetch_async
    from imgproxy.inspection import ImageInfo, inspect
    from imgproxy.messages import ImageRequest
    from imgproxy.responsive import picture
    from imgproxy.settings import Settings
    from imgproxy.stores import Store, StoredFile
    from imgproxy.urls import sign_url, srcset, url_for

_WHERE = {
    "Fetched": "imgproxy.fetching",
    "ImageInfo": "imgproxy.inspection",
    "ImageProxy": "imgproxy.asgi",
    "ImageProxyError": "imgproxy.errors",
    "ImageRequest": "imgproxy.messages",
    "Settings": "imgproxy.settings",
    "Store": "imgproxy.stores",
    "StoredFile": "imgproxy.stores",
    "fetch": "imgproxy.fetching",
    "fetch_async": "imgproxy.fetching",
    "inspect": "imgproxy.inspection",
    "picture": "imgproxy.responsive",
    "sign_url": "imgproxy.urls",
    "srcset": "imgproxy.urls",
    "url_for": "imgproxy.urls",
}


def __getattr__(name: str) -> object:
    """A public name, imported on first use and kept; `__version__`, found when asked:
    finding it imports importlib.metadata, which cost every `imgproxy serve` worker 2.7 MiB."""
    if name == "__version__":
        from imgproxy.version import VERSION

        return VERSION
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'imgproxy' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API, with what the import system binds here: dunders, and submodules."""
    bound = [
        name
        for name, value in globals().items()
        if name.startswith("_")
        or (isinstance(value, ModuleType) and value.__name__.startswith("imgproxy."))
    ]
    return sorted({*bound, *__all__})


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
