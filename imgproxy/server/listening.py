"""One server per address: `imgproxy serve` claims its host:port before any worker binds it.

Workers share their port with SO_REUSEPORT (workers.py), and the kernel lets any process of
the same user join such a group: a second `serve --workers 2` on the port would start and
take half the connections. So the address is first bound plainly, which fails while anything
listens there (another imgproxy, one worker or several, or any other program), and then an
abstract Unix socket named by the address is held for the server's life, which refuses a
second server starting at the same moment. Abstract names belong to the network namespace,
as ports do, and vanish with the process: nothing is left behind by a crash (Linux).
"""

from __future__ import annotations

import errno
import socket


class AddressInUse(Exception):
    """Another server (or program) has the address: a second server must not start."""


def claim(host: str, port: int) -> tuple[socket.socket, int]:
    """The lock to hold while serving, and the port (port 0 picks a free one)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as probe:
        # Past connections in TIME_WAIT do not count; a listening socket does, REUSEPORT or not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise _in_use(exc, host, port) from None
        bound = probe.getsockname()
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind(f"\0imgproxy serve {bound[0]} {bound[1]}")
    except OSError as exc:
        lock.close()
        raise _in_use(exc, host, bound[1]) from None
    return lock, int(bound[1])


def _in_use(exc: OSError, host: str, port: int) -> Exception:
    if exc.errno != errno.EADDRINUSE:
        return exc
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return AddressInUse(
        f"address already in use: {where} (another imgproxy serve, or another program, "
        "listens there; stop it or choose another --port)"
    )
