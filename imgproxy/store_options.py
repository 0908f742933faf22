"""`[stores.NAME]` tables -> each store kind's own typed options (SPEC §7, §8), and the table
of kinds. Coerced and checked like every other section (coercion.py)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from imgproxy.coercion import require
from imgproxy.errors import ConfigError


@dataclass(frozen=True, slots=True)
class FsOptions:
    """`kind = "fs"`: files under a folder (relative to the config file's folder)."""

    root: str

    def check(self, prefix: str) -> None:
        require(bool(self.root), f"{prefix}.root", "must be a folder path")


@dataclass(frozen=True, slots=True)
class SqlOptions:
    """`kind = "sql"`: one BLOB per row; the names are checked as SQL identifiers by the
    store itself, next to the quoting they guard."""

    url: str
    table: str
    key_column: str
    data_column: str
    updated_column: str
    approved_column: str | None = None
    focal_x_column: str | None = None  # the subject's place, fractions 0..1 (SPEC §13)
    focal_y_column: str | None = None
    timeout: float = 5.0  # seconds for any one call: connection, pool wait and statement

    def check(self, prefix: str) -> None:
        url_ok = self.url.startswith(("sqlite:///", "postgresql://", "postgres://"))
        require(url_ok, f"{prefix}.url", "must start with sqlite:/// or postgresql://")
        require(self.timeout > 0, f"{prefix}.timeout", "must be a positive number")


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """`kind = "http"`: a remote origin behind the SSRF checks of SPEC §7."""

    base_url: str
    timeout: float = 5.0
    connect_timeout: float = 2.0
    allowed_hosts: tuple[str, ...] = ()  # globs, e.g. "*.cdn.example.com"
    allow_private_networks: bool = False
    allowed_networks: tuple[str, ...] = ()  # e.g. "10.0.0.0/8"

    def check(self, prefix: str) -> None:
        base_ok = self.base_url.startswith(("http://", "https://"))
        require(base_ok, f"{prefix}.base_url", "must be an http:// or https:// URL")
        for key in ("timeout", "connect_timeout"):
            require(getattr(self, key) > 0, f"{prefix}.{key}", "must be a positive number")
        for network in self.allowed_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(f"{prefix}.allowed_networks: {network!r} is no network") from None


@dataclass(frozen=True, slots=True)
class S3Options:
    """`kind = "s3"`: objects in an S3-compatible bucket (SPEC §12.1). Empty credentials mean
    the usual AWS environment/instance ones; each store may name its own account."""

    bucket: str
    prefix: str = ""  # keys are prefix + path; a path never climbs out of it
    endpoint_url: str = ""  # empty: AWS; else MinIO, R2, SeaweedFS...
    region: str = "us-east-1"
    access_key_id: str = ""
    secret_access_key: str = field(default="", repr=False)
    approved_metadata: str = "approved"  # x-amz-meta-<this>: true|false overrides `approved`
    timeout: float = 10.0

    def check(self, prefix: str) -> None:
        require(bool(self.bucket), f"{prefix}.bucket", "is required")
        endpoint_ok = not self.endpoint_url or self.endpoint_url.startswith(("http://", "https://"))
        require(endpoint_ok, f"{prefix}.endpoint_url", "must be an http:// or https:// URL")
        require(self.timeout > 0, f"{prefix}.timeout", "must be a positive number")
        both = bool(self.access_key_id) == bool(self.secret_access_key)
        require(both, f"{prefix}.secret_access_key", "give both credentials or neither")
        metadata_ok = all(c.isalnum() or c in "-_" for c in self.approved_metadata)
        require(metadata_ok, f"{prefix}.approved_metadata", "must be a metadata name")


StoreOptions = FsOptions | SqlOptions | HttpOptions | S3Options

# A store kind's name -> its options; `imgproxy.stores.build_store` maps these to classes.
STORE_KINDS: dict[str, type[StoreOptions]] = {
    "fs": FsOptions,
    "sql": SqlOptions,
    "http": HttpOptions,
    "s3": S3Options,
}
