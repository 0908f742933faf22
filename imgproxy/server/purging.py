"""`imgproxy purge` reaches the memory of the workers running on this host, without Redis.

Each worker of `imgproxy serve` with a disk tier listens on a unix socket of its own in the
tier's folder (`.workers/PID.sock`), which every process with that config shares on a host.
`purge` clears the shared tiers itself, then connects to each socket in turn and sends the
source's id; the worker drops that source's renditions from its memory tier and answers how
many, so purge reports exactly what it reached. The hit path pays nothing; a socket left by a
dead worker refuses the connection and is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from imgproxy.cache import SOURCE_ID, Immediate
from imgproxy.services import Services
from imgproxy.settings import Settings

log = logging.getLogger(__name__)

FOLDER = ".workers"  # in cache.disk_path: no source id has a dot, so the tier never sweeps it
ANSWER_SECONDS = 5.0  # a worker that takes longer to drop a source counts as unreached
LINE_LIMIT = 128  # bytes of one request: a source id and its newline


def folder(settings: Settings) -> Path | None:
    """Where this config's workers listen, or None: without a disk tier no two processes
    are known to share a host folder."""
    cache = settings.cache
    if not cache.disk_path or not cache.memory_bytes:
        return None
    return settings.base_dir / cache.disk_path / FOLDER


class PurgeListener:
    """One worker's socket: `SOURCE\n` in, how many renditions its memory dropped out."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.path: Path | None = None
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        where = folder(self.services.settings)
        if where is None:
            return
        where.mkdir(parents=True, exist_ok=True)
        self.path = where / f"{os.getpid()}.sock"
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a dead process's, whose pid this one got
        try:
            self._server = await asyncio.start_unix_server(
                self._answer, path=str(self.path), limit=LINE_LIMIT
            )
        except OSError as exc:  # e.g. a path longer than a socket's name may be
            log.warning("imgproxy purge cannot reach this worker's memory: %s", exc)
            self.path = None

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), ANSWER_SECONDS)
            source = line.decode("ascii", "replace").strip()
            removed = 0
            if SOURCE_ID.fullmatch(source):
                for tier in self.services.cache.tiers:
                    if isinstance(tier, Immediate):  # the memory: this process's own
                        removed += await tier.purge(source)
            writer.write(f"{removed}\n".encode() if SOURCE_ID.fullmatch(source) else b"bad\n")
            await writer.drain()
        except (TimeoutError, ValueError, OSError):
            pass  # a client that said nothing useful gets nothing
        finally:
            writer.close()


@dataclass
class Reached:
    workers: int = 0  # that answered
    removed: int = 0  # renditions dropped from their memory
    unreached: list[str] = field(default_factory=list)  # sockets that did not answer: why


async def reach_workers(settings: Settings, source: str) -> Reached | None:
    """Ask every worker listening for this config to drop `source` from its memory; None
    when this config has no such workers (no disk tier, or no memory tier)."""
    where = folder(settings)
    if where is None:
        return None
    reached = Reached()
    for path in sorted(where.glob("*.sock")) if where.is_dir() else []:
        try:
            removed = await asyncio.wait_for(_ask(path, source), ANSWER_SECONDS)
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # its worker is gone, and its memory with it
            continue
        except (TimeoutError, OSError, ValueError) as exc:
            reached.unreached.append(f"{path.stem}: {type(exc).__name__} {exc}".strip())
            continue
        reached.workers += 1
        reached.removed += removed
    return reached


async def _ask(path: Path, source: str) -> int:
    reader, writer = await asyncio.open_unix_connection(str(path), limit=LINE_LIMIT)
    try:
        writer.write(f"{source}\n".encode())
        await writer.drain()
        return int(await reader.readline())
    finally:
        writer.close()
