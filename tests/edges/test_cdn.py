"""Purges sent to the HTTP caches in `cache.purge_urls` (imgproxy/cdn.py), against a cache
that answers as slowly as it likes."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from imgproxy import cdn


def dribbling_cache(listener: socket.socket, stop: threading.Event) -> None:
    """Answers each PURGE with a head, then its body one byte every 0.2 s."""
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            while not stop.is_set():
                try:
                    conn.sendall(b".")
                except OSError:
                    break
                time.sleep(0.2)


def test_a_cache_that_dribbles_its_answer_fails_the_purge_within_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """httpx's timeouts are per read: a cache sending a byte every 0.2 s of a 1000-byte
    answer kept a purge (and the Django delete that waits for it) for 200 s."""
    monkeypatch.setattr(cdn, "TIMEOUT_SECONDS", 1.0)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    threading.Thread(target=dribbling_cache, args=(listener, stop), daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    try:
        began = time.monotonic()
        (answer,) = asyncio.run(asyncio.wait_for(cdn.purge([url], "media/a.jpg"), 10))
        took = time.monotonic() - began
    finally:
        stop.set()
        listener.close()
    assert not answer.ok and answer.detail == "no whole answer within 1 s"
    assert took < 3, took
