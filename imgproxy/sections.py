"""Each section of the configuration (`[server]`, `[security]`, `[policy]`, `[limits]`,
`[cache]`, `[render]`, a store, a watermark, a dialect) -> a frozen dataclass whose `check`
refuses a bad value with a ConfigError naming its dotted key. settings.py builds the tree."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from imgproxy.coercion import require
from imgproxy.store_options import StoreOptions

STORE_NAME = re.compile(r"[a-z0-9_-]+")
PRESET_NAME = re.compile(r"[A-Za-z0-9_-]+")
FORMAT_NAME = re.compile(r"[A-Z0-9]+")
RESERVED_STORE_NAMES = frozenset({"healthz", "readyz", "metrics", "_demo"})


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    demo: bool = False
    timing: bool = False
    access_log: bool = False  # one line per image request (status, store, tier, render ms)
    log_level: str = "info"
    log_format: str = "text"  # or "json": one object per line
    max_headers: int = 100  # request headers of one head (`serve`): 400 and close beyond
    # open client connections of one worker (`serve`): past it, the one that has waited
    # longest for a request head is closed (SPEC §11.1; an idle one holds about 8 KiB)
    max_connections: int = 4096
    ready_timeout: float = 2.0  # seconds each store and tier has to answer /readyz
    client_hints: bool = False  # Sec-CH-DPR/DPR and Sec-CH-Width/Width shape renditions

    def check(self, prefix: str) -> None:
        require(0 <= self.port <= 65535, f"{prefix}.port", "must be 0..65535")
        require(self.max_headers >= 1, f"{prefix}.max_headers", "must be at least 1")
        require(self.max_connections >= 1, f"{prefix}.max_connections", "must be at least 1")
        require(self.ready_timeout > 0, f"{prefix}.ready_timeout", "must be a positive number")
        require(self.workers >= 1, f"{prefix}.workers", "must be at least 1")
        levels, formats = ("debug", "info", "warning", "error"), ("text", "json")
        require(self.log_level in levels, f"{prefix}.log_level", f"must be one of {levels}")
        require(self.log_format in formats, f"{prefix}.log_format", f"must be one of {formats}")


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    keys: tuple[str, ...] = ()
    # `imgproxy serve` with no keys on a host other than loopback refuses to start unless
    # this says unsigned URLs are intended (an empty `keys` is too easy to ship).
    allow_unsigned: bool = False
    signature_length: int = 32
    allow_unsigned_presets: bool = True
    sign_originals: bool = False
    debug: bool = False

    def check(self, prefix: str) -> None:
        # 43 is the full length of an unpadded base64url SHA-256 digest.
        length_ok = 16 <= self.signature_length <= 43
        require(length_ok, f"{prefix}.signature_length", "must be 16..43")
        require(all(self.keys), f"{prefix}.keys", "must not contain an empty key")


# SPEC §4, §13: HEIF is approved-only where the `heif` extra is installed. Looked up, not
# imported: render/heif.py loads pi-heif on the first HEIF file a process opens.
_HEIF = ("HEIF",) if find_spec("pi_heif") is not None else ()


@dataclass(frozen=True, slots=True)
class PolicySettings:
    image_formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF")
    approved_image_formats: tuple[str, ...] = ("AVIF", "BMP", "TIFF", "ICO", *_HEIF)

    def check(self, prefix: str) -> None:
        for key in ("image_formats", "approved_image_formats"):
            for name in getattr(self, key):
                ok = FORMAT_NAME.fullmatch(name) or (
                    name == "*" and key == "approved_image_formats"
                )
                require(bool(ok), f"{prefix}.{key}", f"{name!r} is not an upper-case format name")


@dataclass(frozen=True, slots=True)
class LimitsSettings:
    max_source_bytes: int = 50 * 1024 * 1024
    max_source_pixels: int = 50_000_000
    max_output_dimension: int = 4096
    max_output_pixels: int = 16_777_216  # of one output frame, after every step of geometry
    max_frames: int = 200
    render_concurrency: int = field(default_factory=lambda: os.cpu_count() or 1)
    render_queue: int = 64
    inflight_bytes: int = 256 * 1024 * 1024  # source and decoder bytes held at once, per process
    max_jpeg_scans: int = 100  # a JPEG's scans each walk every block: 413 beyond
    max_render_seconds: float = 10.0  # one render's time budget: 422 beyond

    def check(self, prefix: str) -> None:
        for f in dataclasses.fields(self):
            if f.name == "max_render_seconds":
                require(self.max_render_seconds > 0, f"{prefix}.{f.name}", "must be > 0")
                continue
            minimum = 0 if f.name == "render_queue" else 1
            require(getattr(self, f.name) >= minimum, f"{prefix}.{f.name}", f"must be >= {minimum}")


@dataclass(frozen=True, slots=True)
class CacheSettings:
    memory_bytes: int = 64 * 1024 * 1024
    disk_path: str = ""
    disk_bytes: int = 1024 * 1024 * 1024
    redis_url: str = ""
    redis_ttl: int = 7 * 24 * 3600
    # What the fleet keeps in Redis, enforced by the tier itself (SPEC §11.1): least
    # recently used renditions go first, whatever rate distinct URLs arrive at.
    redis_bytes: int = 1024 * 1024 * 1024
    # Calls a worker has in flight to Redis for requests, each on its own connection: past it
    # a read is a miss, a write skipped and a render local, never a wait (a stall holds these).
    redis_concurrency: int = 32
    cache_control: str = "public, max-age=86400"
    accel_redirect: str = ""
    lock_seconds: float = 30.0  # a crashed renderer's fleet-wide lock lapses after this
    # A rendition tier in an object store, shared by the fleet, below Redis (SPEC §12.2).
    s3_bucket: str = ""
    s3_prefix: str = "renditions/"
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: str = field(default="", repr=False)
    # What the fleet keeps in the bucket, enforced by the tier itself (SPEC §11.1): no object
    # older than s3_max_age is served, and sweeps delete those and the oldest past s3_bytes.
    s3_bytes: int = 10 * 1024 * 1024 * 1024
    s3_max_age: int = 30 * 24 * 3600  # seconds; the bucket's lifecycle rule backs it (README)
    # GETs and PUTs a worker has in flight to the bucket, each on its own connection: past it
    # a GET is a miss and a PUT skipped, so a stalled store holds this many, not one a request.
    s3_concurrency: int = 32
    # HTTP caches (Varnish with xkey) told to drop a purged source's Surrogate-Key.
    purge_urls: tuple[str, ...] = ()

    def check(self, prefix: str) -> None:
        require(self.lock_seconds > 0, f"{prefix}.lock_seconds", "must be > 0")
        endpoint_ok = not self.s3_endpoint_url or self.s3_endpoint_url.startswith(
            ("http://", "https://")
        )
        require(endpoint_ok, f"{prefix}.s3_endpoint_url", "must be an http:// or https:// URL")
        both = bool(self.s3_access_key_id) == bool(self.s3_secret_access_key)
        require(both, f"{prefix}.s3_secret_access_key", "give both credentials or neither")
        for url in self.purge_urls:
            url_ok = url.startswith(("http://", "https://"))
            require(url_ok, f"{prefix}.purge_urls", f"{url!r} is not an http(s) URL")
        require(self.memory_bytes >= 0, f"{prefix}.memory_bytes", "must be >= 0")
        require(self.disk_bytes >= 0, f"{prefix}.disk_bytes", "must be >= 0")
        require(self.redis_ttl >= 1, f"{prefix}.redis_ttl", "must be >= 1 second")
        require(self.redis_bytes >= 1024 * 1024, f"{prefix}.redis_bytes", "must be >= 1 MiB")
        require(self.s3_bytes >= 1024 * 1024, f"{prefix}.s3_bytes", "must be >= 1 MiB")
        require(self.s3_max_age >= 1, f"{prefix}.s3_max_age", "must be >= 1 second")
        require(self.redis_concurrency >= 1, f"{prefix}.redis_concurrency", "must be >= 1")
        require(self.s3_concurrency >= 1, f"{prefix}.s3_concurrency", "must be >= 1")
        require(
            not self.accel_redirect
            or (self.accel_redirect.startswith("/") and bool(self.disk_path)),
            f"{prefix}.accel_redirect",
            "must be an absolute location path, and needs cache.disk_path",
        )
        require(
            not self.redis_url or self.redis_url.startswith(("redis://", "rediss://", "unix://")),
            f"{prefix}.redis_url",
            "must be a redis://, rediss:// or unix:// URL",
        )
        header_ok = _is_header_value(self.cache_control)
        require(header_ok, f"{prefix}.cache_control", "not a header value")


@dataclass(frozen=True, slots=True)
class RenderSettings:
    # libavif's speed 0..10: 8 measured ~5x faster than Pillow's default (6) for ~2 % bytes.
    avif_speed: int = 8
    # libwebp's method 0..6, as libvips' and sharp's `effort`: 4 is Pillow's and thumbor's.
    # 2 measured at 41 % of 4's encode CPU, for +5.4 % bytes and -0.0035 SSIM at one quality
    # (+20 % bytes at equal SSIM): a choice of CPU over bytes, not a free saving.
    webp_effort: int = 4
    # Renditions of one source version share its decode (sharing.py): a decoded frame is
    # kept this long past its first rendition for a page's others (measured: 6 renditions
    # 20 ms apart took 3.6 decodes a set with 0 s, 3.0 with 0.1 s), within linger_bytes of
    # limits.inflight_bytes. 0 s: shared only by renditions that arrive while it renders.
    decode_linger: float = 0.1
    linger_bytes: int = 16 * 1024 * 1024  # a 6 MP photo decoded at 1/2, 1/4 and 1/8 twice

    def check(self, prefix: str) -> None:
        require(0 <= self.avif_speed <= 10, f"{prefix}.avif_speed", "must be 0..10")
        require(0 <= self.webp_effort <= 6, f"{prefix}.webp_effort", "must be 0..6")
        require(0 <= self.decode_linger <= 10, f"{prefix}.decode_linger", "must be 0..10 s")
        require(self.linger_bytes >= 0, f"{prefix}.linger_bytes", "must be >= 0")


HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
GRAVITIES = ("center", "n", "s", "e", "w", "ne", "nw", "se", "sw")


@dataclass(frozen=True, slots=True)
class WatermarkSettings:
    """A mark composited by `wm=NAME` (SPEC §15.1): read from a configured store like any
    source, and its version is part of every marked rendition's key and ETag."""

    store: str
    path: str
    position: str = "se"
    opacity: float = 1.0
    scale: float = 0.0  # the mark's width as a fraction of the output's; 0: its own size
    margin: int = 16

    def check(self, prefix: str) -> None:
        require(bool(self.path), f"{prefix}.path", "is required")
        require(self.position in GRAVITIES, f"{prefix}.position", f"must be one of {GRAVITIES}")
        require(0 <= self.opacity <= 1, f"{prefix}.opacity", "must be 0..1")
        require(0 <= self.scale <= 1, f"{prefix}.scale", "must be 0..1")
        require(0 <= self.margin <= 1024, f"{prefix}.margin", "must be 0..1024")


@dataclass(frozen=True, slots=True)
class ThumborDialectSettings:
    """thumbor's URLs answered unchanged (SPEC §15.2), under /thumbor/."""

    store: str
    security_key: str = ""  # thumbor's SECURITY_KEY; empty: only /unsafe/ URLs
    allow_unsafe: bool = False

    def check(self, prefix: str) -> None:
        require(bool(self.store), f"{prefix}.store", "is required")
        usable = bool(self.security_key) or self.allow_unsafe
        require(usable, f"{prefix}.security_key", "is required unless allow_unsafe = true")


@dataclass(frozen=True, slots=True)
class ImgproxyDialectSettings:
    """imgproxy (Go)'s URLs answered unchanged (SPEC §15.3), under /imgproxy/."""

    store: str
    keys: tuple[str, ...] = ()  # IMGPROXY_KEY values, hex; several for rotation
    salts: tuple[str, ...] = ()  # IMGPROXY_SALT values, hex, paired with keys
    allow_insecure: bool = False
    signature_size: int = 32  # bytes of the digest kept (IMGPROXY_SIGNATURE_SIZE)
    watermark: str = ""  # the [watermarks] entry its `watermark` option composites

    def check(self, prefix: str) -> None:
        require(bool(self.store), f"{prefix}.store", "is required")
        for key in ("keys", "salts"):
            for value in getattr(self, key):
                require(bool(HEX.fullmatch(value)), f"{prefix}.{key}", "must be hex strings")
        paired = len(self.keys) == len(self.salts)
        require(paired, f"{prefix}.salts", "must pair with keys, one salt per key")
        usable = bool(self.keys) or self.allow_insecure
        require(usable, f"{prefix}.keys", "is required unless allow_insecure = true")
        require(1 <= self.signature_size <= 32, f"{prefix}.signature_size", "must be 1..32")


@dataclass(frozen=True, slots=True)
class DialectSettings:
    """Other servers' URL dialects, each off unless its table is given (SPEC §15)."""

    thumbor: ThumborDialectSettings | None = None
    imgproxy: ImgproxyDialectSettings | None = None


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """One `[stores.NAME]` table: the keys every store kind shares, the flat policy/limits
    overrides already merged into full sections, and the kind's own keys in `options`."""

    name: str
    kind: str
    approved: bool
    placeholder: Path | None
    policy: PolicySettings
    limits: LimitsSettings
    options: StoreOptions

    def describe(self) -> str:
        """The kind's options as `key=value, ...` (for `imgproxy check`), with the password
        of any URL masked: the output ends up in terminals and CI logs."""
        return ", ".join(
            f"{f.name}={_masked(f.name, getattr(self.options, f.name))!r}"
            for f in dataclasses.fields(self.options)
        )


_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)@")


def _masked(name: str, value: Any) -> Any:
    """`***` for a secret, `scheme://user:***@host/...` for a URL carrying a password;
    anything else as is."""
    if "secret" in name and value:
        return "***"
    found = _USERINFO.match(value) if isinstance(value, str) else None
    if found is None or ":" not in found[2]:
        return value
    user = found[2].split(":", 1)[0]
    return f"{found[1]}{user}:***@{value[found.end() :]}"


def _is_header_value(value: str) -> bool:
    return all(32 <= ord(c) < 127 for c in value)
