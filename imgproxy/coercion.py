"""TOML values and IMGPROXY_<SECTION>__<KEY> environment strings -> typed settings, or a
ConfigError naming the dotted key. Used for every section and every store kind alike, so an
environment override is coerced exactly as the same value in the TOML file.

Hand-written rather than a settings library: the core's dependencies are fixed (Starlette,
Pillow, aiofiles, cachetools, httpx), and this is a hundred lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING
from typing import Any, ClassVar, Protocol, TypeVar

from imgproxy.errors import ConfigError

ENV_PREFIX = "IMGPROXY_"


class EnvValue(str):
    """A string from the environment: the only kind of value coerced to int/bool/list."""

    __slots__ = ()


def env_keys(env: Mapping[str, str]) -> dict[str, str]:
    """Dotted key -> the variable that sets it: `server.port` -> `IMGPROXY_SERVER__PORT`."""
    return {
        ".".join(part.lower() for part in name[len(ENV_PREFIX) :].split("__")): name
        for name in env
        if name.startswith(ENV_PREFIX) and "__" in name
    }


def named(error: ConfigError, variables: Mapping[str, str]) -> ConfigError:
    """The error, naming the variable its key came from: an operator looks for the value in
    the environment, not in a file that does not hold it."""
    key, _, message = str(error).partition(": ")
    if key not in variables:
        return error
    return ConfigError(f"{key} (from {variables[key]}): {message}")


def apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        node = data
        for key in keys[:-1]:
            child = node.get(key)
            node[key] = child = dict(child) if isinstance(child, Mapping) else {}
            node = child
        node[keys[-1]] = EnvValue(value)
    return data


class Section(Protocol):
    """A settings dataclass: built from a table, then checked as a whole under its key."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def check(self, prefix: str) -> None: ...


S = TypeVar("S", bound=Section)


def section(cls: type[S], data: Any, prefix: str, *, kind: str = "") -> S:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix}: must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    suffix = f" for {kind}" if kind else ""
    for key in data:
        require(key in fields, f"{prefix}.{key}", f"unknown key{suffix}")
    for name, f in fields.items():
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        require(name in data or has_default, f"{prefix}.{name}", f"required{suffix}")
    values = {key: coerce(value, hints[key], f"{prefix}.{key}") for key, value in data.items()}
    section = cls(**values)
    section.check(prefix)
    return section


def coerce(value: Any, hint: Any, key: str) -> Any:
    """A TOML value, or an environment string, as the field's type (or a ConfigError)."""
    if typing.get_origin(hint) is types.UnionType:  # `X | None`, the only union we use
        if value is None or (isinstance(value, EnvValue) and not value):
            return None
        (inner,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
        return coerce(value, inner, key)
    if hint is bool:
        return _boolean(value, key)
    if hint is int or hint is float:
        return _number(value, hint, key)
    if hint is str:
        require(isinstance(value, str), key, f"must be a string, got {value!r}")
        return str(value)
    if typing.get_origin(hint) is tuple:
        return _strings(value, key)
    raise ConfigError(f"{key}: unsupported type")  # pragma: no cover - a field type we lack


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _boolean(value: Any, key: str) -> bool:
    if isinstance(value, EnvValue) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    require(isinstance(value, bool), key, f"must be true or false, got {value!r}")
    return bool(value)


def _number(value: Any, hint: type[int] | type[float], key: str) -> int | float:
    number: int | float | None = None
    if isinstance(value, EnvValue):
        with contextlib.suppress(ValueError):
            number = hint(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = hint(value)  # an integer is a fine float: `timeout = 3`
    elif hint is float and isinstance(value, float):
        number = value
    ok = number is not None and (hint is int or math.isfinite(number))
    require(ok, key, f"must be {'an integer' if hint is int else 'a number'}, got {value!r}")
    assert number is not None
    return number


def _strings(value: Any, key: str) -> tuple[str, ...]:
    """A TOML list of strings; from the environment, a JSON list or comma separated. The
    value is never echoed: it may be a list of signing keys."""
    items = value
    if isinstance(value, EnvValue):
        text = value.strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except ValueError:
                items = None
            ok = isinstance(items, list) and all(isinstance(v, str) for v in items)
            require(ok, key, "must be a JSON list of strings")
        else:
            items = [part.strip() for part in text.split(",") if part.strip()]
    ok = isinstance(items, list) and all(isinstance(v, str) for v in items)
    require(ok, key, "must be a list of strings")
    return tuple(str(v) for v in items)


def require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")
