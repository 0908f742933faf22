"""Which worker of `imgproxy serve` leads which decode: a table every worker maps, so a
worker about to decode a source can find the one already decoding it (peers.py).

The supervisor makes the table before it starts a worker; each worker claims and looks up
entries in it. The hashes are stable across processes (str hashes are salted per
interpreter), and a torn or stale entry only costs a decode done twice. They are keyed by
the worker's configuration: while a SIGHUP replaces the workers one at a time, an old and a
new one never find each other's claims (a store moved to another origin in between read
the new origin's bytes for the old worker's job).
"""

from __future__ import annotations

import hashlib
import mmap
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imgproxy.settings import Settings
    from imgproxy.sharing import Key

PEERS_ENV = "IMGPROXY_PEERS_DIR"  # set by the supervisor for its workers (workers.py)
TABLE = "flights"  # the file of claims, in that directory
SLOTS = 4096  # claims at once: a key's slot is its hash's remainder (a clash: a decode twice)
ENTRY = struct.Struct("<qqd")  # the key's hash, the leading worker's pid, claimed until
CLAIM_SECONDS = 60.0  # a claim left by a worker that died mid-render lapses after this


def make_table(folder: Path) -> None:
    """The empty table, made once by the supervisor before it starts any worker."""
    with open(folder / TABLE, "wb") as table:
        table.truncate(SLOTS * ENTRY.size)


def configuration(settings: Settings) -> bytes:
    """What keys a worker's claims: its settings (frozen dataclasses, repr'd alike by every
    process that loaded the same file)."""
    return hashlib.blake2b(repr(settings).encode(), digest_size=16).digest()


class Table:
    """Which worker leads which key, in a file every worker of one configuration maps."""

    def __init__(self, folder: Path, pid: int, config: bytes) -> None:
        with open(folder / TABLE, "r+b") as file:
            self._map = mmap.mmap(file.fileno(), SLOTS * ENTRY.size)
        self.pid = pid
        self.config = config

    def _hashed(self, key: Key) -> int:
        """Stable across processes (str hashes are salted per interpreter); never 0."""
        digest = hashlib.blake2b(repr(key).encode(), digest_size=8, key=self.config).digest()
        return int.from_bytes(digest, "little", signed=True) or 1

    def claim(self, key: Key) -> None:
        hashed = self._hashed(key)
        until = time.monotonic() + CLAIM_SECONDS
        ENTRY.pack_into(self._map, self._at(hashed), hashed, self.pid, until)

    def release(self, key: Key) -> None:
        hashed = self._hashed(key)
        at = self._at(hashed)
        if ENTRY.unpack_from(self._map, at)[:2] == (hashed, self.pid):
            ENTRY.pack_into(self._map, at, 0, 0, 0.0)

    def leader(self, key: Key) -> int | None:
        """The pid of another worker that leads `key` now, if any (the monotonic clock is the
        same for every process of the host)."""
        hashed = self._hashed(key)
        found, pid, until = ENTRY.unpack_from(self._map, self._at(hashed))
        if found != hashed or pid == self.pid or until < time.monotonic():
            return None
        return int(pid)

    @staticmethod
    def _at(hashed: int) -> int:
        return (hashed % SLOTS) * ENTRY.size

    def close(self) -> None:
        self._map.close()
