"""Stores: where source images live. The Store protocol and the optional powers (`base`),
the three built-in kinds, and `build_store`, which makes one from a `[stores.NAME]` table."""

from imgproxy.stores.base import Closeable, Listable, Peekable, Store, StoredFile
from imgproxy.stores.factory import build_store
from imgproxy.stores.filesystem import FileSystemStore
from imgproxy.stores.http import HTTPStore
from imgproxy.stores.sql import SQLStore

__all__ = [
    "Closeable",
    "FileSystemStore",
    "HTTPStore",
    "Listable",
    "Peekable",
    "SQLStore",
    "Store",
    "StoredFile",
    "build_store",
]
