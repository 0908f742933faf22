"""TOML file + IMGPROXY_<SECTION>__<KEY> environment -> one frozen, validated Settings tree.

Every section is checked when it is built and fails with a ConfigError naming the dotted key,
so a bad deployment refuses to start instead of failing on the first request.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from imgproxy.coercion import ENV_PREFIX, S, apply_env, coerce, env_keys, named, require, section
from imgproxy.errors import ConfigError
from imgproxy.store_options import STORE_KINDS, StoreOptions

CONFIG_ENV = "IMGPROXY_CONFIG"  # the TOML file, when no --config is given
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
    ready_timeout: float = 2.0  # seconds each store and tier has to answer /readyz
    client_hints: bool = False  # Sec-CH-DPR/DPR and Sec-CH-Width/Width shape renditions

    def check(self, prefix: str) -> None:
        require(0 <= self.port <= 65535, f"{prefix}.port", "must be 0..65535")
        require(self.max_headers >= 1, f"{prefix}.max_headers", "must be at least 1")
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


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    render: RenderSettings = field(default_factory=RenderSettings)
    presets: Mapping[str, str] = field(default_factory=dict)
    stores: Mapping[str, StoreSettings] = field(default_factory=dict)
    watermarks: Mapping[str, WatermarkSettings] = field(default_factory=dict)
    dialects: DialectSettings = field(default_factory=DialectSettings)
    base_dir: Path = field(default_factory=Path.cwd)
    # Dotted key -> the IMGPROXY_ variable that set it, to name it in later errors (stores).
    variables: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
    ) -> Settings:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config: {path} is not valid TOML: {exc}") from exc
        return cls.from_mapping(data, base_dir=path.resolve().parent, env=env)

    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, Any],
        *,
        base_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        env = os.environ if env is None else env
        variables = env_keys(env)
        try:
            return cls._build(apply_env(dict(data), env), base_dir, variables)
        except ConfigError as exc:
            raise named(exc, variables) from None

    @classmethod
    def _build(
        cls, merged: dict[str, Any], base_dir: Path | None, variables: Mapping[str, str]
    ) -> Settings:
        unknown = set(merged) - {
            "server",
            "security",
            "policy",
            "limits",
            "cache",
            "render",
            "presets",
            "stores",
            "watermarks",
            "dialects",
        }
        if unknown:
            raise ConfigError(f"{sorted(unknown)[0]}: unknown section")
        policy = section(PolicySettings, merged.get("policy", {}), "policy")
        server = section(ServerSettings, merged.get("server", {}), "server")
        limits = section(LimitsSettings, merged.get("limits", {}), "limits")
        if "render_concurrency" not in merged.get("limits", {}):
            # The cores are shared by the workers: N workers of cores/N slots each, not N
            # times every core (oversubscribed, each holding its own sources).
            cores = os.cpu_count() or 1
            limits = dataclasses.replace(limits, render_concurrency=max(1, cores // server.workers))
        base = (base_dir or Path.cwd()).resolve()
        return cls(
            server=server,
            security=section(SecuritySettings, merged.get("security", {}), "security"),
            policy=policy,
            limits=limits,
            cache=section(CacheSettings, merged.get("cache", {}), "cache"),
            render=section(RenderSettings, merged.get("render", {}), "render"),
            presets=_presets(merged.get("presets", {})),
            stores=_stores(merged.get("stores", {}), policy, limits, base),
            watermarks=_watermarks(merged.get("watermarks", {})),
            dialects=_dialects(merged.get("dialects", {})),
            base_dir=base,
            variables=variables,
        )


SECTIONS: dict[str, type[Any]] = {
    "server": ServerSettings,
    "security": SecuritySettings,
    "policy": PolicySettings,
    "limits": LimitsSettings,
    "cache": CacheSettings,
    "render": RenderSettings,
}


# imgproxy (Go)'s variables for what [dialects.imgproxy] reads here: a migrating operator
# sets them, and its old URLs would then be refused without a word on why.
FOREIGN_VARIABLES = {
    "IMGPROXY_KEY": (
        "imgproxy (Go)'s signing key; its URLs are answered under /imgproxy/ with"
        " IMGPROXY_DIALECTS__IMGPROXY__KEYS (and __SALTS, __STORE); this server's own URLs"
        " are signed with IMGPROXY_SECURITY__KEYS"
    ),
    "IMGPROXY_SALT": "imgproxy (Go)'s salt; its URLs are answered under /imgproxy/ with "
    "IMGPROXY_DIALECTS__IMGPROXY__SALTS, one per key",
}


def unread_variables(env: Mapping[str, str]) -> list[str]:
    """A warning for each IMGPROXY_ variable that looks like a setting but is never read,
    with what is: `IMGPROXY_SERVER_PORT` (one underscore) or imgproxy (Go)'s names would
    otherwise be ignored without a word."""
    warnings = []
    for name in sorted(env):
        if name in FOREIGN_VARIABLES:
            warnings.append(f"{name} is not read: {FOREIGN_VARIABLES[name]}")
        elif name.startswith(ENV_PREFIX) and "__" not in name:
            meant = _meant(name[len(ENV_PREFIX) :].lower())
            if meant is not None:
                warnings.append(f"{name} is not read; did you mean {meant}?")
    return warnings


def _meant(rest: str) -> str | None:
    """`server_port` -> `IMGPROXY_SERVER__PORT`; `stores_media_root` -> `..STORES__MEDIA__ROOT`."""
    for name, cls in SECTIONS.items():
        key = rest.removeprefix(f"{name}_")
        if key != rest and key in {f.name for f in dataclasses.fields(cls)}:
            return f"{ENV_PREFIX}{name.upper()}__{key.upper()}"
    table = rest.removeprefix("stores_")
    for key in sorted(_STORE_KEYS, key=len, reverse=True) if table != rest else ():
        store = table.removesuffix(f"_{key}")
        if store and store != table:
            return f"{ENV_PREFIX}STORES__{store.upper()}__{key.upper()}"
    return None


def _presets(data: Any) -> dict[str, str]:
    if not isinstance(data, Mapping):
        raise ConfigError("presets: must be a table")
    for name, value in data.items():
        require(bool(PRESET_NAME.fullmatch(name)), f"presets.{name}", "bad preset name")
        require(isinstance(value, str), f"presets.{name}", "must be a query string")
    return {name: str(value) for name, value in data.items()}


def _watermarks(data: Any) -> dict[str, WatermarkSettings]:
    if not isinstance(data, Mapping):
        raise ConfigError("watermarks: must be a table")
    marks = {}
    for name, table in data.items():
        key = f"watermarks.{name}"
        require(bool(PRESET_NAME.fullmatch(name)), key, "watermark names are [A-Za-z0-9_-]+")
        marks[name] = section(WatermarkSettings, table, key)
    return marks


_DIALECTS = {"thumbor": ThumborDialectSettings, "imgproxy": ImgproxyDialectSettings}


def _dialects(data: Any) -> DialectSettings:
    if not isinstance(data, Mapping):
        raise ConfigError("dialects: must be a table")
    for name in data:
        known = ", ".join(_DIALECTS)
        require(name in _DIALECTS, f"dialects.{name}", f"unknown dialect ({known})")
    tables: dict[str, Any] = {
        name: section(_DIALECTS[name], table, f"dialects.{name}") for name, table in data.items()
    }
    return DialectSettings(**tables)


_POLICY_KEYS = frozenset(f.name for f in dataclasses.fields(PolicySettings))
_LIMIT_KEYS = frozenset(f.name for f in dataclasses.fields(LimitsSettings))
_STORE_KEYS = frozenset(
    {"kind", "approved", "placeholder", *_POLICY_KEYS, *_LIMIT_KEYS}
    | {f.name for options in STORE_KINDS.values() for f in dataclasses.fields(options)}
)


def _stores(
    data: Any, policy: PolicySettings, limits: LimitsSettings, base: Path
) -> dict[str, StoreSettings]:
    if not isinstance(data, Mapping):
        raise ConfigError("stores: must be a table")
    stores = {}
    for name, table in data.items():
        key = f"stores.{name}"
        require(bool(STORE_NAME.fullmatch(name)), key, "store names are [a-z0-9_-]+")
        require(name not in RESERVED_STORE_NAMES, key, "reserved for the standalone server")
        require(isinstance(table, Mapping), key, "must be a table")
        table = dict(table)
        kind = coerce(table.pop("kind", None) or "", str, f"{key}.kind")
        require(bool(kind), f"{key}.kind", "is required")
        known = ", ".join(STORE_KINDS)
        require(kind in STORE_KINDS, f"{key}.kind", f"unknown store kind {kind!r} ({known})")
        approved = coerce(table.pop("approved", False), bool, f"{key}.approved")
        placeholder = table.pop("placeholder", None)
        if placeholder is not None:
            placeholder = base / coerce(placeholder, str, f"{key}.placeholder")
            require(placeholder.is_file(), f"{key}.placeholder", f"{placeholder} is not a file")
        own_policy = {k: table.pop(k) for k in list(table) if k in _POLICY_KEYS}
        own_limits = {k: table.pop(k) for k in list(table) if k in _LIMIT_KEYS}
        stores[name] = StoreSettings(
            name=name,
            kind=kind,
            approved=approved,
            placeholder=placeholder,
            policy=_override(policy, own_policy, key),
            limits=_override(limits, own_limits, key),
            options=section(STORE_KINDS[kind], table, key, kind=kind),
        )
    return stores


def _override(section: S, overrides: Mapping[str, Any], prefix: str) -> S:
    """A store's flat overrides (`[stores.a] max_frames = 5`) over the global section."""
    if not overrides:
        return section
    merged = {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}
    hints = typing.get_type_hints(type(section))
    merged.update({k: coerce(v, hints[k], f"{prefix}.{k}") for k, v in overrides.items()})
    result = type(section)(**merged)
    result.check(prefix)
    return result


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
