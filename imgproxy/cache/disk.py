"""Renditions as files under one folder, shared by every process that points at it.

Layout: `{root}/{source[:2]}/{source}/{rendition}.{ext}`, so a purge removes one folder.
Writes go to a temporary name and are renamed into place: a crash mid-write leaves a temp
file that is never read (and is swept later), never a half rendition. Each file's mtime is
its source's modification time (nginx sends it as Last-Modified on X-Accel-Redirect); its
atime is set explicitly on use and orders the eviction when the folder passes its bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

import aiofiles
import aiofiles.os

from imgproxy.cache import SOURCE_ID, CacheKey, Rendition

log = logging.getLogger(__name__)

TEMP_MARK = ".tmp-"
STALE_TEMP_SECONDS = 3600
TOUCH_EVERY = 60.0  # seconds: an atime is refreshed at most this often per file
EVICT_TO = 0.9  # an eviction pass stops at this share of the budget


class DiskTier:
    name = "disk"
    shared = False  # by the processes of one host, not by the fleet

    def __init__(self, root: str | os.PathLike[str], *, max_bytes: int) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._estimate = self._scan_size()  # since the last scan, plus what we wrote
        self._evicting: asyncio.Task[None] | None = None

    def relative(self, key: CacheKey) -> str:
        return f"{key.source[:2]}/{key.source}/{key.name}"

    def path(self, key: CacheKey) -> Path:
        return self.root / self.relative(key)

    async def locate(self, key: CacheKey) -> str | None:
        """The file's path relative to the root if it is cached (for X-Accel-Redirect).
        A plain stat: microseconds on a local disk, less than a thread hop."""
        path = self.path(key)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        if st.st_size == 0:
            return None
        self._touch(path, st)
        return self.relative(key)

    async def get(self, key: CacheKey) -> Rendition | None:
        path = self.path(key)
        try:
            body, st = await asyncio.to_thread(_read, path)  # one thread hop, not four
        except FileNotFoundError:
            return None
        if not body:
            return None
        self._touch(path, st)
        return Rendition(body, key.media_type, st.st_mtime)

    async def put(self, key: CacheKey, value: Rendition) -> None:
        path = self.path(key)
        folder = path.parent
        await aiofiles.os.makedirs(folder, exist_ok=True)
        temp = folder / f"{TEMP_MARK}{uuid.uuid4().hex}"
        try:
            async with aiofiles.open(temp, "wb") as handle:
                await handle.write(value.body)
            now = time.time()
            os.utime(temp, (now, value.modified if value.modified is not None else now))
            await aiofiles.os.replace(temp, path)
        except BaseException:
            await asyncio.shield(_unlink(temp))
            raise
        self._estimate += len(value.body)
        if self._estimate > self.max_bytes and self._evicting is None:
            self._evicting = asyncio.get_running_loop().create_task(self._evict())

    async def purge(self, source: str) -> int:
        if not SOURCE_ID.fullmatch(source):  # never a path: "../x" must not reach rmtree
            return 0
        folder = self.root / source[:2] / source
        try:
            removed = sum(1 for entry in os.scandir(folder) if TEMP_MARK not in entry.name)
        except FileNotFoundError:
            return 0
        await asyncio.to_thread(shutil.rmtree, folder, True)
        return removed

    def _touch(self, path: Path, st: os.stat_result) -> None:
        now = time.time()
        if now - st.st_atime > TOUCH_EVERY:
            with contextlib.suppress(OSError):  # evicted meanwhile by another process
                os.utime(path, (now, st.st_mtime))

    def _scan(self) -> list[tuple[float, int, str]]:
        """(atime, size, path) of every cached file; stale temp files are swept on the way."""
        found = []
        cutoff = time.time() - STALE_TEMP_SECONDS
        for folder, _, names in os.walk(self.root):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                if TEMP_MARK in name:
                    if st.st_mtime < cutoff:
                        _remove(path)
                    continue
                found.append((st.st_atime, st.st_size, path))
        return found

    def _scan_size(self) -> int:
        return sum(size for _, size, _ in self._scan())

    async def _evict(self) -> None:
        try:
            await asyncio.to_thread(self._evict_oldest)
        except OSError as exc:
            log.warning("disk cache eviction failed: %s", exc)
        finally:
            self._evicting = None

    def _evict_oldest(self) -> None:
        """Least recently used first, until under EVICT_TO of the budget. Every process may
        run this over the shared folder; a file another one removed is simply skipped."""
        files = sorted(self._scan())
        total = sum(size for _, size, _ in files)
        target = self.max_bytes * EVICT_TO
        for _, size, path in files:
            if total <= target:
                break
            if _remove(path):
                total -= size
        self._estimate = total


def _read(path: Path) -> tuple[bytes, os.stat_result]:
    with open(path, "rb") as handle:
        return handle.read(), os.fstat(handle.fileno())


async def _unlink(path: Path) -> None:
    _remove(str(path))


def _remove(path: str) -> bool:
    try:
        os.remove(path)
    except FileNotFoundError:
        return False
    return True
