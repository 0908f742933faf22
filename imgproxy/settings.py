"""TOML file + IMGPROXY_<SECTION>__<KEY> environment -> one frozen, validated Settings tree.

Every section is checked when it is built and fails with a ConfigError naming the dotted key,
so a bad deployment refuses to start instead of failing on the first request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from imgproxy.errors import ConfigError

ENV_PREFIX = "IMGPROXY_"
CONFIG_ENV = "IMGPROXY_CONFIG"  # the TOML file, when no --config is given
STORE_NAME = re.compile(r"[a-z0-9_-]+")
PRESET_NAME = re.compile(r"[A-Za-z0-9_-]+")
FORMAT_NAME = re.compile(r"[A-Z0-9]+")
RESERVED_STORE_NAMES = frozenset({"healthz", "metrics", "_demo"})


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

    def check(self, prefix: str) -> None:
        _require(0 <= self.port <= 65535, f"{prefix}.port", "must be 0..65535")
        _require(self.workers >= 1, f"{prefix}.workers", "must be at least 1")
        levels, formats = ("debug", "info", "warning", "error"), ("text", "json")
        _require(self.log_level in levels, f"{prefix}.log_level", f"must be one of {levels}")
        _require(self.log_format in formats, f"{prefix}.log_format", f"must be one of {formats}")


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    keys: tuple[str, ...] = ()
    signature_length: int = 32
    allow_unsigned_presets: bool = True
    sign_originals: bool = False
    debug: bool = False

    def check(self, prefix: str) -> None:
        # 43 is the full length of an unpadded base64url SHA-256 digest.
        length_ok = 16 <= self.signature_length <= 43
        _require(length_ok, f"{prefix}.signature_length", "must be 16..43")
        _require(all(self.keys), f"{prefix}.keys", "must not contain an empty key")


@dataclass(frozen=True, slots=True)
class PolicySettings:
    image_formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF")
    approved_image_formats: tuple[str, ...] = ("AVIF", "BMP", "TIFF", "ICO")

    def check(self, prefix: str) -> None:
        for key in ("image_formats", "approved_image_formats"):
            for name in getattr(self, key):
                ok = FORMAT_NAME.fullmatch(name) or (
                    name == "*" and key == "approved_image_formats"
                )
                _require(bool(ok), f"{prefix}.{key}", f"{name!r} is not an upper-case format name")


@dataclass(frozen=True, slots=True)
class LimitsSettings:
    max_source_bytes: int = 50 * 1024 * 1024
    max_source_pixels: int = 50_000_000
    max_output_dimension: int = 4096
    max_frames: int = 200
    render_concurrency: int = field(default_factory=lambda: os.cpu_count() or 1)
    render_queue: int = 64
    inflight_bytes: int = 256 * 1024 * 1024  # source bytes held at once, per process
    max_jpeg_scans: int = 100  # a JPEG's scans each walk every block: 413 beyond
    max_render_seconds: float = 10.0  # one render's time budget: 422 beyond

    def check(self, prefix: str) -> None:
        for f in dataclasses.fields(self):
            if f.name == "max_render_seconds":
                _require(self.max_render_seconds > 0, f"{prefix}.{f.name}", "must be > 0")
                continue
            minimum = 0 if f.name == "render_queue" else 1
            _require(
                getattr(self, f.name) >= minimum, f"{prefix}.{f.name}", f"must be >= {minimum}"
            )


@dataclass(frozen=True, slots=True)
class CacheSettings:
    memory_bytes: int = 64 * 1024 * 1024
    disk_path: str = ""
    disk_bytes: int = 1024 * 1024 * 1024
    redis_url: str = ""
    redis_ttl: int = 7 * 24 * 3600
    cache_control: str = "public, max-age=86400"
    accel_redirect: str = ""

    def check(self, prefix: str) -> None:
        _require(self.memory_bytes >= 0, f"{prefix}.memory_bytes", "must be >= 0")
        _require(self.disk_bytes >= 0, f"{prefix}.disk_bytes", "must be >= 0")
        _require(self.redis_ttl >= 1, f"{prefix}.redis_ttl", "must be >= 1 second")
        _require(
            not self.accel_redirect
            or (self.accel_redirect.startswith("/") and bool(self.disk_path)),
            f"{prefix}.accel_redirect",
            "must be an absolute location path, and needs cache.disk_path",
        )
        _require(
            not self.redis_url or self.redis_url.startswith(("redis://", "rediss://", "unix://")),
            f"{prefix}.redis_url",
            "must be a redis://, rediss:// or unix:// URL",
        )
        header_ok = _is_header_value(self.cache_control)
        _require(header_ok, f"{prefix}.cache_control", "not a header value")


@dataclass(frozen=True, slots=True)
class FsOptions:
    """`kind = "fs"`: files under a folder (relative to the config file's folder)."""

    root: str

    def check(self, prefix: str) -> None:
        _require(bool(self.root), f"{prefix}.root", "must be a folder path")


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

    def check(self, prefix: str) -> None:
        url_ok = self.url.startswith(("sqlite:///", "postgresql://", "postgres://"))
        _require(url_ok, f"{prefix}.url", "must start with sqlite:/// or postgresql://")


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
        _require(base_ok, f"{prefix}.base_url", "must be an http:// or https:// URL")
        for key in ("timeout", "connect_timeout"):
            _require(getattr(self, key) > 0, f"{prefix}.{key}", "must be a positive number")
        for network in self.allowed_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(f"{prefix}.allowed_networks: {network!r} is no network") from None


StoreOptions = FsOptions | SqlOptions | HttpOptions

# A store kind's name -> its options; `imgproxy.stores.build_store` maps these to classes.
STORE_KINDS: dict[str, type[StoreOptions]] = {
    "fs": FsOptions,
    "sql": SqlOptions,
    "http": HttpOptions,
}


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
            f"{f.name}={_masked(getattr(self.options, f.name))!r}"
            for f in dataclasses.fields(self.options)
        )


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    presets: Mapping[str, str] = field(default_factory=dict)
    stores: Mapping[str, StoreSettings] = field(default_factory=dict)
    base_dir: Path = field(default_factory=Path.cwd)

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
        merged = _apply_env(dict(data), os.environ if env is None else env)
        unknown = set(merged) - {
            "server",
            "security",
            "policy",
            "limits",
            "cache",
            "presets",
            "stores",
        }
        if unknown:
            raise ConfigError(f"{sorted(unknown)[0]}: unknown section")
        policy = _section(PolicySettings, merged.get("policy", {}), "policy")
        limits = _section(LimitsSettings, merged.get("limits", {}), "limits")
        base = (base_dir or Path.cwd()).resolve()
        return cls(
            server=_section(ServerSettings, merged.get("server", {}), "server"),
            security=_section(SecuritySettings, merged.get("security", {}), "security"),
            policy=policy,
            limits=limits,
            cache=_section(CacheSettings, merged.get("cache", {}), "cache"),
            presets=_presets(merged.get("presets", {})),
            stores=_stores(merged.get("stores", {}), policy, limits, base),
            base_dir=base,
        )


class _EnvValue(str):
    """A string from the environment: the only kind of value coerced to int/bool/list."""

    __slots__ = ()


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        node = data
        for key in keys[:-1]:
            child = node.get(key)
            node[key] = child = dict(child) if isinstance(child, Mapping) else {}
            node = child
        node[keys[-1]] = _EnvValue(value)
    return data


class _Section(Protocol):
    """A settings dataclass: built from a table, then checked as a whole under its key."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def check(self, prefix: str) -> None: ...


S = TypeVar("S", bound=_Section)


def _section(cls: type[S], data: Any, prefix: str, *, kind: str = "") -> S:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix}: must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    suffix = f" for {kind}" if kind else ""
    for key in data:
        _require(key in fields, f"{prefix}.{key}", f"unknown key{suffix}")
    for name, f in fields.items():
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        _require(name in data or has_default, f"{prefix}.{name}", f"required{suffix}")
    values = {key: _coerce(value, hints[key], f"{prefix}.{key}") for key, value in data.items()}
    section = cls(**values)
    section.check(prefix)
    return section


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """A TOML value, or an environment string, as the field's type (or a ConfigError)."""
    if typing.get_origin(hint) is types.UnionType:  # `X | None`, the only union we use
        if value is None or (isinstance(value, _EnvValue) and not value):
            return None
        (inner,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
        return _coerce(value, inner, key)
    if hint is bool:
        return _boolean(value, key)
    if hint is int or hint is float:
        return _number(value, hint, key)
    if hint is str:
        _require(isinstance(value, str), key, f"must be a string, got {value!r}")
        return str(value)
    if typing.get_origin(hint) is tuple:
        return _strings(value, key)
    raise ConfigError(f"{key}: unsupported type")  # pragma: no cover - a field type we lack


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _boolean(value: Any, key: str) -> bool:
    if isinstance(value, _EnvValue) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    _require(isinstance(value, bool), key, f"must be true or false, got {value!r}")
    return bool(value)


def _number(value: Any, hint: type[int] | type[float], key: str) -> int | float:
    number: int | float | None = None
    if isinstance(value, _EnvValue):
        with contextlib.suppress(ValueError):
            number = hint(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = hint(value)  # an integer is a fine float: `timeout = 3`
    elif hint is float and isinstance(value, float):
        number = value
    ok = number is not None and (hint is int or math.isfinite(number))
    _require(ok, key, f"must be {'an integer' if hint is int else 'a number'}, got {value!r}")
    assert number is not None
    return number


def _strings(value: Any, key: str) -> tuple[str, ...]:
    """A TOML list of strings; from the environment, a JSON list or comma separated. The
    value is never echoed: it may be a list of signing keys."""
    items = value
    if isinstance(value, _EnvValue):
        text = value.strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except ValueError:
                items = None
            ok = isinstance(items, list) and all(isinstance(v, str) for v in items)
            _require(ok, key, "must be a JSON list of strings")
        else:
            items = [part.strip() for part in text.split(",") if part.strip()]
    ok = isinstance(items, list) and all(isinstance(v, str) for v in items)
    _require(ok, key, "must be a list of strings")
    return tuple(str(v) for v in items)


def _presets(data: Any) -> dict[str, str]:
    if not isinstance(data, Mapping):
        raise ConfigError("presets: must be a table")
    for name, value in data.items():
        _require(bool(PRESET_NAME.fullmatch(name)), f"presets.{name}", "bad preset name")
        _require(isinstance(value, str), f"presets.{name}", "must be a query string")
    return {name: str(value) for name, value in data.items()}


_POLICY_KEYS = frozenset(f.name for f in dataclasses.fields(PolicySettings))
_LIMIT_KEYS = frozenset(f.name for f in dataclasses.fields(LimitsSettings))


def _stores(
    data: Any, policy: PolicySettings, limits: LimitsSettings, base: Path
) -> dict[str, StoreSettings]:
    if not isinstance(data, Mapping):
        raise ConfigError("stores: must be a table")
    stores = {}
    for name, table in data.items():
        key = f"stores.{name}"
        _require(bool(STORE_NAME.fullmatch(name)), key, "store names are [a-z0-9_-]+")
        _require(name not in RESERVED_STORE_NAMES, key, "reserved for the standalone server")
        _require(isinstance(table, Mapping), key, "must be a table")
        table = dict(table)
        kind = _coerce(table.pop("kind", None) or "", str, f"{key}.kind")
        _require(bool(kind), f"{key}.kind", "is required")
        known = ", ".join(STORE_KINDS)
        _require(kind in STORE_KINDS, f"{key}.kind", f"unknown store kind {kind!r} ({known})")
        approved = _coerce(table.pop("approved", False), bool, f"{key}.approved")
        placeholder = table.pop("placeholder", None)
        if placeholder is not None:
            placeholder = base / _coerce(placeholder, str, f"{key}.placeholder")
            _require(placeholder.is_file(), f"{key}.placeholder", f"{placeholder} is not a file")
        own_policy = {k: table.pop(k) for k in list(table) if k in _POLICY_KEYS}
        own_limits = {k: table.pop(k) for k in list(table) if k in _LIMIT_KEYS}
        stores[name] = StoreSettings(
            name=name,
            kind=kind,
            approved=approved,
            placeholder=placeholder,
            policy=_override(policy, own_policy, key),
            limits=_override(limits, own_limits, key),
            options=_section(STORE_KINDS[kind], table, key, kind=kind),
        )
    return stores


def _override(section: S, overrides: Mapping[str, Any], prefix: str) -> S:
    """A store's flat overrides (`[stores.a] max_frames = 5`) over the global section."""
    if not overrides:
        return section
    merged = {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}
    hints = typing.get_type_hints(type(section))
    merged.update({k: _coerce(v, hints[k], f"{prefix}.{k}") for k, v in overrides.items()})
    result = type(section)(**merged)
    result.check(prefix)
    return result


_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)@")


def _masked(value: Any) -> Any:
    """`scheme://user:***@host/...` for a URL carrying a password; anything else as is."""
    found = _USERINFO.match(value) if isinstance(value, str) else None
    if found is None or ":" not in found[2]:
        return value
    user = found[2].split(":", 1)[0]
    return f"{found[1]}{user}:***@{value[found.end() :]}"


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _is_header_value(value: str) -> bool:
    return all(32 <= ord(c) < 127 for c in value)
