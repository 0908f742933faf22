"""Any Django `Storage` (FileSystemStorage, S3 via django-storages, ...) -> the Store
protocol, listable for `manage.py imgproxy_warm`. Storage calls are blocking, so each runs in
a worker thread."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import Storage

from imgproxy.errors import BadRequest, NotFound, UpstreamError
from imgproxy.stores import StoredFile

CHUNK = 256 * 1024


class DjangoStorageStore:
    """`approval(name)` decides per file (e.g. from a model's flag); without it every file
    has the store's `approved` setting."""

    def __init__(
        self,
        storage: Storage,
        *,
        approved: bool = False,
        approval: Callable[[str], bool] | None = None,
    ) -> None:
        self.storage = storage
        self.approved = approved
        self.approval = approval

    async def stat(self, path: str) -> StoredFile:
        return await asyncio.to_thread(self._stat, path)

    def _stat(self, path: str) -> StoredFile:
        try:
            if not self.storage.exists(path):
                raise NotFound("no such file in the storage")
            size = self.storage.size(path)
            modified = self._modified(path)
            approved = self.approval(path) if self.approval is not None else self.approved
        except SuspiciousFileOperation:
            raise BadRequest("path: the storage refused this name") from None
        except OSError as exc:
            raise UpstreamError(f"the storage failed ({type(exc).__name__})") from None
        # Without a modification time, versions roll over hourly (changes are still seen).
        stamp = repr(modified) if modified is not None else f"h{int(time.time() // 3600)}"
        return StoredFile(
            path=path,
            version=f"{stamp}-{size:x}",
            approved=approved,
            size=size,
            modified=modified,
            filename=path.rsplit("/", 1)[-1],
        )

    def _modified(self, path: str) -> float | None:
        try:
            value = self.storage.get_modified_time(path)
        except NotImplementedError:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return float(value.timestamp())

    async def paths(self) -> AsyncIterator[str]:
        """Every file the storage lists, folder by folder, hidden names left out."""
        folders = [""]
        while folders:
            folder = folders.pop()
            try:
                dirs, files = await asyncio.to_thread(self.storage.listdir, folder)
            except FileNotFoundError:  # a FileSystemStorage whose folder was never made
                continue
            prefix = f"{folder}/" if folder else ""
            for name in sorted(files):
                if not name.startswith("."):
                    yield prefix + name
            folders.extend(prefix + d for d in sorted(dirs, reverse=True) if not d.startswith("."))

    async def open(self, file: StoredFile) -> AsyncIterator[bytes]:
        try:
            handle = await asyncio.to_thread(self.storage.open, file.path, "rb")
        except FileNotFoundError:
            raise NotFound("the file disappeared from the storage") from None
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)
