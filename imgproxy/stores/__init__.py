"""Stores: where source images live. The Store protocol and the optional powers (`base`),
the four built-in kinds, and `build_store`, which makes one from a `[stores.NAME]` table."""

from typing import TYPE_CHECKING, Any

from imgproxy.stores.base import Closeable, Listable, Peekable, Store, StoredFile, Streamable
from imgproxy.stores.factory import build_store
from imgproxy.stores.filesystem import FileSystemStore

if TYPE_CHECKING:
    from imgproxy.stores.http import HTTPStore
    from imgproxy.stores.s3 import S3Store
    from imgproxy.stores.sql import SQLStore

__all__ = [
    "Closeable",
    "FileSystemStore",
    "HTTPStore",
    "Listable",
    "Peekable",
    "S3Store",
    "SQLStore",
    "Store",
    "StoredFile",
    "Streamable",
    "build_store",
]


_ON_USE = {
    "HTTPStore": "imgproxy.stores.http",
    "S3Store": "imgproxy.stores.s3",
    "SQLStore": "imgproxy.stores.sql",
}


def __getattr__(name: str) -> Any:
    """HTTPStore, SQLStore and S3Store load their modules (httpx, sqlite3, obstore) on first
    use only."""
    if name in _ON_USE:
        import importlib

        return getattr(importlib.import_module(_ON_USE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
