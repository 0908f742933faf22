"""A folder on disk -> StoredFile metadata (stat + approval sidecar) and file chunks.

A version names the inode and its ctime, mtime and size, and a read is checked against it
(before, between chunks and at the end), so a rewrite or a replacement is never served or
cached under a version it does not belong to (SourceChanged, a retryable 503).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat as stat_module
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiofiles

from imgproxy.errors import ConfigError, NotFound, SourceChanged
from imgproxy.memo import Memo
from imgproxy.store_options import FsOptions
from imgproxy.stores.base import StoredFile, focal_point

log = logging.getLogger(__name__)

SIDECAR = ".meta.json"


@dataclass(frozen=True, slots=True)
class Sidecar:
    """What a file's sidecar says: its approval and its focal point."""

    approved: bool
    focal: tuple[float, float] | None = None


# Longer than a kernel timestamp tick (jiffies: 1-10 ms); 2 s where a filesystem keeps whole
# seconds (FAT: 2 s). See `_settle`.
SETTLE_NS = 20_000_000
SETTLE_COARSE_NS = 2_000_000_000
PIECE = 256 * 1024  # what `stream` reads at a time


def version_of(st: os.stat_result) -> str:
    """Whatever changes when the bytes may have: the inode (a file renamed over this one),
    ctime (set by every write, truncate, rename or utime, and by no program), mtime, size.
    Not st_dev: it is no property of the file, and an NFS or btrfs device number can differ
    between hosts and boots, which would split a shared cache and void a disk cache."""
    return f"{st.st_ino:x}-{st.st_ctime_ns:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


class FileSystemStore:
    """Files under `root`. Metadata calls are plain syscalls on purpose: a stat of a local
    file takes microseconds, less than the thread hop that would hide it from the loop."""

    def __init__(self, root: str | os.PathLike[str], *, approved: bool = False) -> None:
        self.root = os.path.realpath(root)
        self.approved = approved
        self._resolved: Memo[str, tuple[tuple[int, int], str]] = Memo(50_000)
        self._default = Sidecar(approved)  # what a file without a sidecar gets
        self._sidecars: Memo[str, tuple[tuple[int, int], Sidecar]] = Memo(50_000)
        # path -> (what stat said, approval, the StoredFile built from them): a repeat stat
        # of an unchanged file compares a tuple and builds nothing.
        self._files: Memo[str, tuple[tuple[int, int, int, int], Sidecar, StoredFile]] = Memo(50_000)
        self._prefix = self.root + os.sep

    @classmethod
    def from_settings(
        cls, options: FsOptions, *, name: str, approved: bool, base_dir: Path
    ) -> FileSystemStore:
        folder = base_dir / options.root
        if not folder.is_dir():
            raise ConfigError(f"stores.{name}.root: {folder} is not a folder")
        return cls(folder, approved=approved)

    def _resolve(self, path: str) -> str:
        # Resolve symlinks, then confine: a link pointing outside the root is "not found".
        full = os.path.realpath(os.path.join(self.root, path))
        if os.path.commonpath((self.root, full)) != self.root or full == self.root:
            raise NotFound("no such file")
        return full

    def _confined(self, path: str, st: os.stat_result) -> str:
        """The resolved path, re-resolved only when the file reached is another inode: a
        swapped symlink leads to a different (dev, ino), so it never rides on an old check."""
        known = self._resolved.get(path)
        if known is not None and known[0] == (st.st_dev, st.st_ino):
            return known[1]
        full = self._resolve(path)
        self._resolved[path] = ((st.st_dev, st.st_ino), full)
        return full

    def _full(self, file: StoredFile) -> str:
        """The path `stat` resolved and confined for this version's inode (the version names
        it), so a read resolves no symlink again; resolved afresh when not known. The read
        then checks the file it opened against the version, as it always did."""
        known = self._resolved.get(file.path)
        if known is not None and known[0][1] == int(file.version.partition("-")[0], 16):
            return known[1]
        return self._resolve(file.path)

    async def stat(self, path: str) -> StoredFile:
        try:
            st = os.stat(self._prefix + path)  # a relative path: the URL stage checked it
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound("no such file") from None
        except OSError as exc:
            raise NotFound(f"cannot read the file ({exc.strerror})") from None
        full = self._confined(path, st)
        if not stat_module.S_ISREG(st.st_mode) or full.endswith(SIDECAR):
            raise NotFound("no such file")
        stamp = (st.st_ino, st.st_ctime_ns, st.st_mtime_ns, st.st_size)  # = version_of
        meta = self._sidecar(full)
        known = self._files.get(path)
        if known is not None and known[0] == stamp and known[1] == meta:
            return known[2]
        file = StoredFile(
            path=path,
            version=version_of(st),
            approved=meta.approved,
            size=st.st_size,
            modified=st.st_mtime,
            filename=os.path.basename(full),
            focal=meta.focal,
        )
        self._files[path] = (stamp, meta, file)
        return file

    def _sidecar(self, full: str) -> Sidecar:
        """`{file}.meta.json` (`{"approved": true, "focal": [0.3, 0.6]}`) wins over the store
        default; it is re-read only when it changes, and a broken sidecar counts as "not
        approved" (the safe side)."""
        sidecar = full + SIDECAR
        if not os.access(sidecar, os.F_OK):  # the usual case: no exception raised for it
            return self._default
        try:
            st = os.stat(sidecar)
        except OSError:  # removed just now
            return self._default
        stamp = (st.st_mtime_ns, st.st_size)
        known = self._sidecars.get(sidecar)
        if known is not None and known[0] == stamp:
            return known[1]
        meta = Sidecar(False)
        try:
            with open(sidecar, "rb") as handle:
                data = json.loads(handle.read(64 * 1024))
            if isinstance(data, dict):
                focal = data.get("focal")
                point = focal_point(*focal) if isinstance(focal, list) and len(focal) == 2 else None
                meta = Sidecar(data.get("approved") is True, point)
        except (OSError, ValueError):
            log.warning(
                "unreadable approval sidecar %s: treating the file as not approved", sidecar
            )
        self._sidecars[sidecar] = (stamp, meta)
        return meta

    async def paths(self) -> AsyncIterator[str]:
        """Every file under the root, sidecars and hidden files left out (for `warm`)."""
        for folder, dirs, names in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if not name.startswith(".") and not name.endswith(SIDECAR):
                    yield os.path.relpath(os.path.join(folder, name), self.root)

    async def head(self, file: StoredFile, size: int) -> bytes:
        """The first `size` bytes of exactly this version, to sniff or to learn its facts
        from: a plain pread, microseconds on a local disk."""
        try:
            fd = os.open(self._full(file), os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise NotFound("the file disappeared") from None
        except OSError as exc:  # as stat(): a file the server may not read is not found
            raise NotFound(f"cannot read the file ({exc.strerror})") from None
        try:
            head = os.pread(fd, size, 0)
            changed = version_of(os.fstat(fd)) != file.version
        except OSError as exc:  # replaced by a folder since stat(), say
            raise NotFound(f"cannot read the file ({exc.strerror})") from None
        finally:
            os.close(fd)
        if changed:  # facts may be learned from a head: never another version's
            raise SourceChanged("the file changed since it was found; retry")
        return head

    async def open(self, file: StoredFile) -> AsyncIterator[bytes]:
        """The bytes of exactly the version `stat` returned, in one chunk, yielded only once
        the open file is seen unchanged after reading it and the path still leads to it. Any
        difference raises SourceChanged. One hop to a thread for the whole read: a hop costs
        about what reading a 1 MB photo from the page cache does."""
        full = self._full(file)
        await _settle(_ctime_ns(file))
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(None, self._read_version, full, file)
        if data:
            yield data

    def _read_version(self, full: str, file: StoredFile) -> bytes:
        try:
            with open(full, "rb") as handle:
                fd = handle.fileno()
                _unchanged(fd, file)
                # The size stat() saw (+1, to notice growth), read into one buffer: one chunk,
                # which the reader keeps as is, where many chunks are joined into a copy.
                data = handle.read(-1 if file.size is None else file.size + 1)
                if len(data) != _unchanged(fd, file).st_size:
                    raise SourceChanged("the file changed while it was read; retry")
        except FileNotFoundError:
            raise NotFound("the file disappeared") from None
        # Whole and unchanged, but no longer what the path names: a stale version.
        if version_of(_path_stat(os.path.join(self.root, file.path))) != file.version:
            raise SourceChanged("the file was replaced while it was read; retry")
        return data

    async def stream(self, file: StoredFile) -> AsyncIterator[bytes]:
        """`open`'s bytes in PIECE pieces, for an original sent as its client reads it: each
        piece is yielded once the open file is seen unchanged after reading it."""
        full = self._full(file)
        try:
            async with aiofiles.open(full, "rb") as handle:
                fd = handle.fileno()
                await _settle(_unchanged(fd, file).st_ctime_ns)
                size = 0
                while piece := await handle.read(PIECE):
                    size += len(piece)
                    _unchanged(fd, file)
                    yield piece
                if size != _unchanged(fd, file).st_size:
                    raise SourceChanged("the file changed while it was read; retry")
                if version_of(_path_stat(os.path.join(self.root, file.path))) != file.version:
                    raise SourceChanged("the file was replaced while it was read; retry")
        except FileNotFoundError:
            raise NotFound("the file disappeared") from None


def _unchanged(fd: int, file: StoredFile) -> os.stat_result:
    st = os.fstat(fd)
    if version_of(st) != file.version:
        raise SourceChanged("the file changed while it was read; retry")
    return st


def _path_stat(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError:
        raise SourceChanged("the file was removed while it was read; retry") from None


def _ctime_ns(file: StoredFile) -> int:
    """The ctime in a version this store wrote (`version_of`): a read accepts the bytes only
    from a file whose fstat gives that version, so it is that file's ctime."""
    return int(file.version.split("-")[1], 16)


async def _settle(ctime_ns: int) -> None:
    """Wait until the clock has passed the tick of the file's ctime. Timestamps are coarse:
    two writes within one tick leave one ctime, hence one version for two contents. A read
    that starts after the tick sees the last of them, and any later write moves ctime, so
    every read accepted for a version returns the same bytes. Costs a wait only for a file
    changed in the last few milliseconds (whole-second filesystems: up to 2 s); capped at
    the window, so a ctime in the future (a skewed NFS server) never stalls a read."""
    window = SETTLE_COARSE_NS if ctime_ns % 1_000_000_000 == 0 else SETTLE_NS
    wait = min(ctime_ns + window - time.time_ns(), window)
    if wait > 0:
        await asyncio.sleep(wait / 1e9)
