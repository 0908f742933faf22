"""A folder on disk -> StoredFile metadata (stat + approval sidecar) and file chunks."""

from __future__ import annotations

import json
import logging
import os
import stat as stat_module
from collections.abc import AsyncIterator
from pathlib import Path

import aiofiles

from imgproxy.errors import ConfigError, NotFound
from imgproxy.memo import Memo
from imgproxy.settings import FsOptions
from imgproxy.stores.base import StoredFile

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
SIDECAR = ".meta.json"


class FileSystemStore:
    """Files under `root`. Metadata calls are plain syscalls on purpose: a stat of a local
    file takes microseconds, less than the thread hop that would hide it from the loop."""

    def __init__(self, root: str | os.PathLike[str], *, approved: bool = False) -> None:
        self.root = os.path.realpath(root)
        self.approved = approved
        self._resolved: Memo[str, tuple[tuple[int, int], str]] = Memo(50_000)
        self._sidecars: Memo[str, tuple[tuple[int, int], bool]] = Memo(50_000)
        self._files: Memo[str, StoredFile] = Memo(50_000)

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

    async def stat(self, path: str) -> StoredFile:
        try:
            st = os.stat(os.path.join(self.root, path))
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound("no such file") from None
        except OSError as exc:
            raise NotFound(f"cannot read the file ({exc.strerror})") from None
        full = self._confined(path, st)
        if not stat_module.S_ISREG(st.st_mode) or full.endswith(SIDECAR):
            raise NotFound("no such file")
        version = f"{st.st_mtime_ns:x}-{st.st_size:x}"
        approved = self._approval(full)
        known = self._files.get(path)
        if known is not None and known.version == version and known.approved == approved:
            return known
        file = self._files[path] = StoredFile(
            path=path,
            version=version,
            approved=approved,
            size=st.st_size,
            modified=st.st_mtime,
            filename=os.path.basename(full),
        )
        return file

    def _approval(self, full: str) -> bool:
        """`{file}.meta.json` wins over the store default; it is re-read only when it changes,
        and a broken sidecar counts as "not approved" (the safe side)."""
        sidecar = full + SIDECAR
        try:
            st = os.stat(sidecar)
        except OSError:
            return self.approved
        stamp = (st.st_mtime_ns, st.st_size)
        known = self._sidecars.get(sidecar)
        if known is not None and known[0] == stamp:
            return known[1]
        approved = False
        try:
            with open(sidecar, "rb") as handle:
                data = json.loads(handle.read(64 * 1024))
            approved = isinstance(data, dict) and data.get("approved") is True
        except (OSError, ValueError):
            log.warning(
                "unreadable approval sidecar %s: treating the file as not approved", sidecar
            )
        self._sidecars[sidecar] = (stamp, approved)
        return approved

    async def paths(self) -> AsyncIterator[str]:
        """Every file under the root, sidecars and hidden files left out (for `warm`)."""
        for folder, dirs, names in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if not name.startswith(".") and not name.endswith(SIDECAR):
                    yield os.path.relpath(os.path.join(folder, name), self.root)

    async def open(self, file: StoredFile) -> AsyncIterator[bytes]:
        full = self._resolve(file.path)
        try:
            async with aiofiles.open(full, "rb") as handle:
                while chunk := await handle.read(CHUNK):
                    yield chunk
        except FileNotFoundError:
            raise NotFound("the file disappeared") from None
