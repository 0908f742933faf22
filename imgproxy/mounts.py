"""Settings -> the stores this server answers for, with everything decided for each once
at start-up: its Store object, format policy, limits and placeholder."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from imgproxy.errors import ConfigError
from imgproxy.policy import FormatPolicy
from imgproxy.settings import RESERVED_STORE_NAMES, STORE_NAME, LimitsSettings, Settings
from imgproxy.stores import Closeable, Store, build_store
from imgproxy.stores.filesystem import FileSystemStore


@dataclass(frozen=True, slots=True)
class Mounted:
    """A store with everything decided for it once at start-up."""

    name: str
    store: Store
    policy: FormatPolicy
    limits: LimitsSettings
    placeholder: Placeholder | None = None


@dataclass(frozen=True, slots=True)
class Placeholder:
    """The image a store answers 404s with (SPEC §5), served like any approved file."""

    mount: Mounted
    path: str


def mount_stores(settings: Settings, given: Mapping[str, Store]) -> dict[str, Mounted]:
    mounts = {}
    for name, config in settings.stores.items():
        policy = FormatPolicy.from_settings(config.policy)
        placeholder = None
        if config.placeholder is not None:
            folder = FileSystemStore(config.placeholder.parent, approved=True)
            own = Mounted(f"{name}.placeholder", folder, policy, config.limits)
            placeholder = Placeholder(own, config.placeholder.name)
        store = given.get(name) or build_store(config, settings)
        mounts[name] = Mounted(name, store, policy, config.limits, placeholder)
    for name, store in given.items():  # Python stores need no [stores] table
        if name not in mounts:
            if not STORE_NAME.fullmatch(name) or name in RESERVED_STORE_NAMES:
                raise ConfigError(f"stores: {name!r} is not a valid store name")
            mounts[name] = Mounted(
                name, store, FormatPolicy.from_settings(settings.policy), settings.limits
            )
    return mounts


async def close_stores(mounts: Mapping[str, Mounted]) -> None:
    """Stores holding connections (SQL pools, HTTP clients) close them."""
    for mount in mounts.values():
        if isinstance(mount.store, Closeable):
            await mount.store.close()
