"""Renditions as files under one folder, shared by every process that points at it.

Layout: `{root}/{source[:2]}/{source}/{rendition}.{ext}`, so a purge removes one folder.
Writes go to a temporary name and are renamed into place: a crash mid-write leaves a temp
file that is never read (and is swept later), never a half rendition. Each file's mtime is
its source's modification time (nginx sends it as Last-Modified on X-Accel-Redirect); its
atime is set explicitly on use and orders the eviction when the folder passes its bytes.

The bytes counted are the ones the disk gives up (SPEC §11.1), not the files' lengths: a
100-byte rendition or facts file takes a whole block (4 KiB on ext4), plus an inode, and its
folders take blocks of their own. Eviction removes emptied folders too, or they would stay.
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
from aiofiles.threadpool.binary import AsyncBufferedIOBase

from imgproxy.cache import FACTS_EXTENSION, SOURCE_ID, CacheKey, Rendition

log = logging.getLogger(__name__)

TEMP_MARK = ".tmp-"
STALE_TEMP_SECONDS = 3600
PROBE_SOURCE = "imgproxy-readyz"  # a folder no source id makes (those are digests)
TOUCH_EVERY = 60.0  # seconds: an atime is refreshed at most this often per file
EVICT_TO = 0.9  # an eviction pass stops at this share of the budget
# Every process sharing the folder counts only its own writes between scans: each scans again
# once it has written this share of the budget, so N processes hold at most EVICT_TO + N times
# it (two workers: the budget), not N budgets.
RESCAN_SHARE = (1 - EVICT_TO) / 2
# What a file or folder costs beyond its blocks: an inode (256 bytes on ext4, 512 on XFS),
# which no st_blocks shows.
INODE_BYTES = 512
BLOCK = 4096  # the allocation unit where the filesystem does not say (no statvfs)


class DiskTier:
    name = "disk"
    shared = False  # by the processes of one host, not by the fleet

    def __init__(self, root: str | os.PathLike[str], *, max_bytes: int) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.block = _allocation_unit(self.root)
        self._written = 0  # bytes this process has added, ever (an eviction's scan misses some)
        self._scanned_at = 0  # what _written was when the last scan began
        self._estimate = self._scan_usage()  # since the last scan, plus what we wrote
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

    async def probe(self) -> None:
        """A read of a file never written: its absence is an answer, any other error (the
        disk gone, a permission lost) raises, and a hung mount never returns."""
        await self.get(CacheKey(PROBE_SOURCE, "imgproxy-readyz", FACTS_EXTENSION))

    async def put(self, key: CacheKey, value: Rendition) -> None:
        path = self.path(key)
        temp = path.parent / f"{TEMP_MARK}{uuid.uuid4().hex}"
        try:
            handle, added = await self._create(temp)
            try:
                await handle.write(value.body)
            finally:
                await handle.close()
            now = time.time()
            os.utime(temp, (now, value.modified if value.modified is not None else now))
            added += self.usage(os.stat(temp))
            await aiofiles.os.replace(temp, path)
        except BaseException:
            await asyncio.shield(_unlink(temp))
            raise
        self._written += added
        self._estimate += added
        unseen = self._written - self._scanned_at  # other processes wrote alongside
        over = self._estimate > self.max_bytes or unseen > self.max_bytes * RESCAN_SHARE
        if over and self._evicting is None:
            self._evicting = asyncio.get_running_loop().create_task(self._evict())

    async def _create(self, temp: Path) -> tuple[AsyncBufferedIOBase, int]:
        """`temp` opened for writing, with its folders (the bytes of those made here). An
        eviction in another process may remove an emptied folder between the two: then the
        folders are made again."""
        for _ in range(3):
            try:
                added = await asyncio.to_thread(self._make_folders, temp.parent)
                return await aiofiles.open(temp, "wb"), added
            except FileNotFoundError:
                continue
        raise FileNotFoundError(f"folder removed while writing: {temp.parent}")

    def _make_folders(self, folder: Path) -> int:
        """The prefix folder and the source's folder, if missing; what the new ones use."""
        added = 0
        for each in (folder.parent, folder):
            try:
                each.mkdir()
            except FileExistsError:
                continue
            added += self.usage(each.stat())
        return added

    def usage(self, st: os.stat_result) -> int:
        """What a file or folder takes from the disk: its allocated blocks (at least its size
        rounded up to the allocation unit: some filesystems report blocks late) and an inode."""
        allocated = getattr(st, "st_blocks", 0) * 512  # st_blocks is in 512-byte units
        rounded = -(-st.st_size // self.block) * self.block
        return max(allocated, rounded) + INODE_BYTES

    async def purge(self, source: str) -> int:
        if not SOURCE_ID.fullmatch(source):  # never a path: "../x" must not reach rmtree
            return 0
        folder = self.root / source[:2] / source
        try:
            removed = sum(1 for entry in os.scandir(folder) if TEMP_MARK not in entry.name)
        except FileNotFoundError:
            return 0
        await asyncio.to_thread(_remove_tree, folder)
        return removed

    def _touch(self, path: Path, st: os.stat_result) -> None:
        now = time.time()
        if now - st.st_atime > TOUCH_EVERY:
            with contextlib.suppress(OSError):  # evicted meanwhile by another process
                os.utime(path, (now, st.st_mtime))

    def _scan(self) -> tuple[list[tuple[float, int, str]], int]:
        """(atime, usage, path) of every cached file, and what everything else uses: the
        folders and the temp files being written; stale temp files are swept on the way."""
        found = []
        other = 0
        cutoff = time.time() - STALE_TEMP_SECONDS
        for folder, subfolders, names in os.walk(self.root):
            # A dot-folder is not the tier's (no source id has a dot): imgproxy serve's
            # workers listen for purges in one, and neither counts nor evicts it.
            subfolders[:] = [name for name in subfolders if not name.startswith(".")]
            for name in subfolders:
                with contextlib.suppress(FileNotFoundError):
                    other += self.usage(os.stat(os.path.join(folder, name)))
            for name in names:
                path = os.path.join(folder, name)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                if TEMP_MARK in name:
                    if st.st_mtime < cutoff:
                        _remove(path)
                    else:
                        other += self.usage(st)
                    continue
                found.append((st.st_atime, self.usage(st), path))
        return found, other

    def _scan_usage(self) -> int:
        files, other = self._scan()
        return other + sum(usage for _, usage, _ in files)

    async def _evict(self) -> None:
        try:
            while True:
                written = self._scanned_at = self._written
                self._estimate = await asyncio.to_thread(self._evict_oldest)
                # What was written during the pass, which its scan may have missed.
                self._estimate += self._written - written
                if self._written == written or self._estimate <= self.max_bytes:
                    break
        except OSError as exc:
            log.warning("disk cache eviction failed: %s", exc)
        finally:
            self._evicting = None

    def _evict_oldest(self) -> int:
        """Least recently used first, until under EVICT_TO of the budget; what is left. Every
        process may run this over the shared folder; a file another one removed is simply
        skipped, and a folder another one writes into again is kept."""
        files, other = self._scan()
        files.sort()
        total = other + sum(usage for _, usage, _ in files)
        target = self.max_bytes * EVICT_TO
        for _, usage, path in files:
            if total <= target:
                break
            if _remove(path):
                total -= usage + self._remove_emptied(os.path.dirname(path))
        return total

    def _remove_emptied(self, folder: str) -> int:
        """The source's folder and its prefix folder, if now empty; what they used."""
        freed = 0
        while folder != str(self.root):
            try:
                st = os.stat(folder)
                os.rmdir(folder)
            except OSError:  # not empty (or removed meanwhile): kept
                break
            freed += self.usage(st)
            folder = os.path.dirname(folder)
        return freed


def _allocation_unit(root: Path) -> int:
    """The filesystem's fragment size: the least a non-empty file can take."""
    try:
        return os.statvfs(root).f_frsize or BLOCK
    except (AttributeError, OSError):  # no statvfs (Windows)
        return BLOCK


def _remove_tree(folder: Path) -> None:
    """A purged source's folder, and its prefix folder if that is left empty."""
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()


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
