"""`imgproxy serve --workers N`: a page's renditions share one decode whichever worker each
reached.

The kernel spreads connections over the workers, so the six renditions of a new photo land
on both of two: each worker decoded it for its own, and the JPEG beside a WebP of one width
shared nothing half the time (4.7 decodes a set of 6, against 3.1 in one process). So a worker
that leads a decode (one source version at one DCT scale: sharing.py's Key) claims it in a
table all workers map, and a worker about to decode the same key, with no free place to
start it, sends the job to that worker instead, over a unix socket, and gets the rendition
back (an idle worker renders it itself: sharing.py). A source asked once is never
sent anywhere: the hit path and a lone render pay one look at the table.

The table (claims.py) and the sockets live in a directory only the server's user can enter (the
supervisor's, made private by tempfile), and a job crosses as a pickle that may name only
imgproxy's own dataclasses, enums and errors (`_Values`). The table decides nothing about
bytes: a stale, torn or lost entry only means a decode done twice. A peer that is gone,
stopped (it has not taken the job within TAKE_SECONDS), slow past ASK_SECONDS, overloaded,
or that fails otherwise leaves the job to this worker, which renders it as if alone; a
job's own error (422, 413) is raised here as the peer met it. Each worker stays bounded by
its own limits: a peer's job waits in the peer's render queue (503 beyond it, then rendered
here in this one's) and holds its bytes there; this worker holds the request and, once it
comes, the rendition.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import io
import logging
import os
import pickle
import struct
from pathlib import Path

from imgproxy.errors import ImageProxyError, Overloaded
from imgproxy.facts import SourceInfo
from imgproxy.job import RenderJob
from imgproxy.render import Rendered
from imgproxy.server.claims import Table, configuration
from imgproxy.services import Services
from imgproxy.sharing import Key
from imgproxy.source import Source
from imgproxy.stores import StoredFile

log = logging.getLogger(__name__)

ASK_SECONDS = 120.0  # a peer that has not answered a job by then leaves it to this worker
# A peer that has not taken a job by then is not running (SIGSTOPped, wedged): the kernel
# still queues a connection and a job for it, so only its own reply says it reads them.
TAKE_SECONDS = 1.0
TAKEN = b"\x01"  # a peer's first byte: the job was read and is being rendered
HEADER = struct.Struct("<Q")  # each message: its length, then a pickle
REQUEST_BYTES = 1 << 20  # a job and its source's facts are a few hundred bytes


class _Values(pickle.Unpickler):
    """Only imgproxy's plain values (a job, a source's facts, a rendition, an error): a
    pickle that names anything else (a function, os.system) is refused unread."""

    def find_class(self, module: str, name: str) -> type:
        found = super().find_class(module, name) if module.startswith("imgproxy.") else None
        plain = dataclasses.is_dataclass(found) or (
            isinstance(found, type) and issubclass(found, enum.Enum | ImageProxyError)
        )
        if not (isinstance(found, type) and plain):
            raise pickle.UnpicklingError(f"a peer may not send {module}.{name}")
        return found


def _loads(data: bytes) -> object:
    return _Values(io.BytesIO(data)).load()


def _request(sent: object) -> tuple[str, StoredFile, SourceInfo, RenderJob]:
    match sent:
        case (str(name), StoredFile() as file, SourceInfo() as info, RenderJob() as job):
            return name, file, info, job
    raise ValueError("not a job")


class WorkerPeers:
    """One worker's side: sharing.py's Peers, and the socket its peers send jobs to."""

    def __init__(self, services: Services, folder: Path) -> None:
        self.services = services
        self.folder = folder
        self.table = Table(folder, os.getpid(), configuration(services.settings))
        self._server: asyncio.AbstractServer | None = None

    def _socket(self, pid: int) -> str:
        return str(self.folder / f"{pid}.sock")

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_unix_server(
                self._answer, self._socket(self.table.pid)
            )
        except OSError as exc:  # e.g. a TMPDIR too long for a socket's name
            log.warning("this worker decodes alone, its peers cannot reach it: %s", exc)
            return
        self.services.decodes.peers = self

    async def stop(self) -> None:
        self.services.decodes.peers = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._socket(self.table.pid))
        self.table.close()

    def claim(self, key: Key) -> None:
        self.table.claim(key)

    def release(self, key: Key) -> None:
        self.table.release(key)

    async def render(self, key: Key, source: Source, job: RenderJob) -> Rendered | None:
        pid = self.table.leader(key)
        if pid is None:
            return None
        request = pickle.dumps((source.mount.name, source.file, source.info, job))
        try:
            answer = await asyncio.wait_for(self._ask(pid, request), ASK_SECONDS)
        except (OSError, EOFError, TimeoutError, pickle.UnpicklingError) as exc:
            log.debug("peer %d did not render a job: %r", pid, exc)
            return None
        if isinstance(answer, Overloaded):
            return None  # its queue is full; this worker's own decides here
        if isinstance(answer, ImageProxyError):
            raise answer
        return answer if isinstance(answer, Rendered) else None

    async def _ask(self, pid: int, request: bytes) -> object:
        reader, writer = await asyncio.open_unix_connection(self._socket(pid))
        try:
            writer.write(HEADER.pack(len(request)) + request)
            await writer.drain()
            async with asyncio.timeout(TAKE_SECONDS):
                if await reader.readexactly(len(TAKEN)) != TAKEN:
                    raise EOFError("a peer that did not take the job")
            (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
            if size > self.services.settings.limits.inflight_bytes:
                raise EOFError(f"a peer's answer of {size} bytes")
            return _loads(await reader.readexactly(size))
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One job from a peer, rendered here (joining this worker's decode of it) and never
        sent on; its rendition or its error back."""
        try:
            (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
            if size > REQUEST_BYTES:
                return
            name, file, info, job = _request(_loads(await reader.readexactly(size)))
            mount = self.services.mounts[name]
            writer.write(TAKEN)
            answer: object
            try:
                answer, _ = await self.services.decodes.render(
                    Source(mount, file, info), job, ask=False
                )
            except ImageProxyError as error:
                answer = error
            body = pickle.dumps(answer)
            writer.write(HEADER.pack(len(body)) + body)
            await writer.drain()
        except Exception as exc:  # a peer that sent nothing useful gets nothing
            log.debug("a peer's job was not answered: %r", exc)
        finally:
            writer.close()
