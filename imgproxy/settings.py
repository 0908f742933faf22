"""TOML file + IMGPROXY_<SECTION>__<KEY> environment -> one frozen, validated Settings tree.

Every section is checked when it is built and fails with a ConfigError naming the dotted key,
so a bad deployment refuses to start instead of failing on the first request.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgproxy.coercion import ENV_PREFIX, S, apply_env, coerce, env_keys, named, require, section
from imgproxy.errors import ConfigError
from imgproxy.sections import (
    FORMAT_NAME,
    PRESET_NAME,
    RESERVED_STORE_NAMES,
    STORE_NAME,
    CacheSettings,
    DialectSettings,
    ImgproxyDialectSettings,
    LimitsSettings,
    PolicySettings,
    RenderSettings,
    SecuritySettings,
    ServerSettings,
    StoreSettings,
    ThumborDialectSettings,
    WatermarkSettings,
)
from imgproxy.store_options import STORE_KINDS

CONFIG_ENV = "IMGPROXY_CONFIG"  # the TOML file, when no --config is given

__all__ = [
    "CONFIG_ENV",
    "FOREIGN_VARIABLES",
    "FORMAT_NAME",
    "PRESET_NAME",
    "RESERVED_STORE_NAMES",
    "SECTIONS",
    "STORE_NAME",
    "CacheSettings",
    "DialectSettings",
    "ImgproxyDialectSettings",
    "LimitsSettings",
    "PolicySettings",
    "RenderSettings",
    "SecuritySettings",
    "ServerSettings",
    "Settings",
    "StoreSettings",
    "ThumborDialectSettings",
    "WatermarkSettings",
    "unread_variables",
]


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
