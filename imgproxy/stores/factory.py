"""`[stores.NAME]` settings -> a Store: the one place a kind's name becomes a class."""

from __future__ import annotations

from typing import assert_never

from imgproxy.settings import Settings, StoreSettings
from imgproxy.store_options import FsOptions, HttpOptions, S3Options, SqlOptions
from imgproxy.stores.base import Store
from imgproxy.stores.filesystem import FileSystemStore


def build_store(config: StoreSettings, settings: Settings) -> Store:
    """No dotted import strings: the options' type is the kind, so each class receives its
    own options, already typed and checked by the settings."""
    name, approved, base_dir = config.name, config.approved, settings.base_dir
    match config.options:
        case FsOptions() as fs:
            return FileSystemStore.from_settings(
                fs, name=name, approved=approved, base_dir=base_dir
            )
        # Imported on use: a server without such stores never loads httpx (3 MiB a worker) or
        # obstore.
        case SqlOptions() as sql:
            from imgproxy.stores.sql import SQLStore

            return SQLStore.from_settings(sql, name=name, approved=approved, base_dir=base_dir)
        case HttpOptions() as http:
            from imgproxy.stores.http import HTTPStore

            return HTTPStore.from_settings(http, name=name, approved=approved, base_dir=base_dir)
        case S3Options() as s3:
            from imgproxy.stores.s3 import S3Store

            return S3Store.from_settings(s3, name=name, approved=approved, base_dir=base_dir)
        case unreachable:  # a kind added to STORE_KINDS but not here: mypy says so
            assert_never(unreachable)
