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
from pathlib import Path
from typing import Any, TypeVar

from imgproxy.errors import ConfigError

ENV_PREFIX = "IMGPROXY_"
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

    def check(self) -> None:
        _require(0 <= self.port <= 65535, "server.port", "must be 0..65535")
        _require(self.workers >= 1, "server.workers", "must be at least 1")


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    keys: tuple[str, ...] = ()
    signature_length: int = 32
    allow_unsigned_presets: bool = True
    sign_originals: bool = False
    debug: bool = False

    def check(self) -> None:
        # 43 is the full length of an unpadded base64url SHA-256 digest.
        _require(16 <= self.signature_length <= 43, "security.signature_length", "must be 16..43")
        _require(all(self.keys), "security.keys", "must not contain an empty key")


@dataclass(frozen=True, slots=True)
class PolicySettings:
    image_formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF")
    approved_image_formats: tuple[str, ...] = ("AVIF", "BMP", "TIFF", "ICO")

    def check(self) -> None:
        for key in ("image_formats", "approved_image_formats"):
            for name in getattr(self, key):
                ok = FORMAT_NAME.fullmatch(name) or (
                    name == "*" and key == "approved_image_formats"
                )
                _require(bool(ok), f"policy.{key}", f"{name!r} is not an upper-case format name")


@dataclass(frozen=True, slots=True)
class LimitsSettings:
    max_source_bytes: int = 50 * 1024 * 1024
    max_source_pixels: int = 50_000_000
    max_output_dimension: int = 4096
    max_frames: int = 200
    render_concurrency: int = field(default_factory=lambda: os.cpu_count() or 1)
    render_queue: int = 64

    def check(self) -> None:
        for f in dataclasses.fields(self):
            minimum = 0 if f.name == "render_queue" else 1
            _require(getattr(self, f.name) >= minimum, f"limits.{f.name}", f"must be >= {minimum}")


@dataclass(frozen=True, slots=True)
class CacheSettings:
    memory_bytes: int = 64 * 1024 * 1024
    disk_path: str = ""
    disk_bytes: int = 1024 * 1024 * 1024
    redis_url: str = ""
    redis_ttl: int = 7 * 24 * 3600
    cache_control: str = "public, max-age=86400"
    accel_redirect: str = ""

    def check(self) -> None:
        _require(self.memory_bytes >= 0, "cache.memory_bytes", "must be >= 0")
        _require(self.disk_bytes >= 0, "cache.disk_bytes", "must be >= 0")
        _require(self.redis_ttl >= 1, "cache.redis_ttl", "must be >= 1 second")
        _require(
            not self.accel_redirect
            or (self.accel_redirect.startswith("/") and bool(self.disk_path)),
            "cache.accel_redirect",
            "must be an absolute location path, and needs cache.disk_path",
        )
        _require(
            not self.redis_url or self.redis_url.startswith(("redis://", "rediss://", "unix://")),
            "cache.redis_url",
            "must be a redis://, rediss:// or unix:// URL",
        )
        _require(_is_header_value(self.cache_control), "cache.cache_control", "not a header value")


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
    options: Mapping[str, Any]


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


S = TypeVar("S")


def _section(cls: type[S], data: Any, prefix: str) -> S:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix}: must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in names:
            raise ConfigError(f"{prefix}.{key}: unknown key")
    values = {key: _coerce(value, hints[key], f"{prefix}.{key}") for key, value in data.items()}
    section = cls(**values)
    section.check()  # type: ignore[attr-defined]
    return section


def _coerce(value: Any, hint: Any, key: str) -> Any:
    from_env = isinstance(value, _EnvValue)
    if hint is bool:
        if from_env and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.lower() in {"1", "true", "yes", "on"}
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: must be true or false, got {value!r}")
    if hint is int or hint is float:
        if from_env:
            try:
                return hint(value)
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return hint(value)
        elif hint is float and isinstance(value, float):
            return value
        raise ConfigError(
            f"{key}: must be {'an integer' if hint is int else 'a number'}, got {value!r}"
        )
    if hint is str:
        if isinstance(value, str):
            return str(value)
        raise ConfigError(f"{key}: must be a string, got {value!r}")
    if typing.get_origin(hint) is tuple:
        items = [v.strip() for v in value.split(",") if v.strip()] if from_env else value
        if isinstance(items, list) and all(isinstance(v, str) for v in items):
            return tuple(str(v) for v in items)
        raise ConfigError(f"{key}: must be a list of strings, got {value!r}")
    raise ConfigError(f"{key}: unsupported type")  # pragma: no cover - a field type we lack


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
            options=table,
        )
    return stores


def _override(section: S, overrides: Mapping[str, Any], prefix: str) -> S:
    if not overrides:
        return section
    merged = {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(type(section))
    merged.update({k: _coerce(v, hints[k], f"{prefix}.{k}") for k, v in overrides.items()})
    result = type(section)(**merged)
    try:
        result.check()  # type: ignore[attr-defined]
    except ConfigError as exc:
        raise ConfigError(f"{prefix}: {exc}") from None
    return result


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _is_header_value(value: str) -> bool:
    return all(32 <= ord(c) < 127 for c in value)
