"""Config loading: TOML + env overrides, and refusals that name the key."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from imgproxy.errors import ConfigError
from imgproxy.presets import check_presets
from imgproxy.settings import FOREIGN_VARIABLES, Settings, unread_variables
from imgproxy.store_options import FsOptions
from imgproxy.stores import Closeable, FileSystemStore, build_store

ROOT = Path(__file__).resolve().parents[2]


def start(settings: Settings) -> None:
    """The start-up checks that need a parse or the filesystem: presets, then each store."""
    check_presets(settings)
    for config in settings.stores.values():
        store = build_store(config, settings)
        if isinstance(store, Closeable):
            asyncio.run(store.close())


def test_the_shipped_demo_config_loads() -> None:
    settings = Settings.from_file(ROOT / "config" / "imgproxy.toml", env={})
    assert settings.server.port == 8080
    assert settings.stores["media"].kind == "fs"
    assert settings.stores["media"].placeholder is not None
    start(settings)


def test_env_overrides_every_level(tmp_path: Path) -> None:
    env = {
        "IMGPROXY_SERVER__PORT": "9000",
        "IMGPROXY_SECURITY__KEYS": "one, two",
        "IMGPROXY_SERVER__DEMO": "true",
        "IMGPROXY_STORES__MEDIA__ROOT": str(tmp_path),
        "IMGPROXY_STORES__MEDIA__MAX_FRAMES": "5",
        "IMGPROXY_CONFIG": "ignored.toml",
    }
    settings = Settings.from_mapping({"stores": {"media": {"kind": "fs", "root": "x"}}}, env=env)
    assert settings.server.port == 9000
    assert settings.server.demo is True
    assert settings.security.keys == ("one", "two")
    assert settings.stores["media"].options == FsOptions(root=str(tmp_path))
    assert settings.stores["media"].limits.max_frames == 5
    assert settings.limits.max_frames == 200


def test_store_overrides_policy_and_limits_flat() -> None:
    settings = Settings.from_mapping(
        {
            "stores": {
                "a": {"kind": "fs", "root": ".", "max_source_bytes": 10, "image_formats": ["PNG"]}
            }
        },
        env={},
    )
    assert settings.stores["a"].limits.max_source_bytes == 10
    assert settings.stores["a"].policy.image_formats == ("PNG",)


@pytest.mark.parametrize(
    ("data", "env", "key"),
    [
        ({"server": {"port": "80"}}, {}, "server.port"),
        ({"server": {"port": 70000}}, {}, "server.port"),
        ({"server": {"nope": 1}}, {}, "server.nope"),
        ({"bogus": {}}, {}, "bogus"),
        ({}, {"IMGPROXY_LIMITS__MAX_FRAMES": "many"}, "limits.max_frames"),
        ({}, {"IMGPROXY_SERVER__DEMO": "maybe"}, "server.demo"),
        ({"limits": {"max_frames": 0}}, {}, "limits.max_frames"),
        ({"limits": {"max_frames": True}}, {}, "limits.max_frames"),
        ({"security": {"signature_length": 8}}, {}, "security.signature_length"),
        ({"security": {"keys": "k"}}, {}, "security.keys"),
        ({"policy": {"image_formats": ["jpeg"]}}, {}, "policy.image_formats"),
        ({"policy": {"image_formats": ["*"]}}, {}, "policy.image_formats"),
        ({"presets": {"bad name": "w=1"}}, {}, "presets.bad name"),
        ({"stores": {"Bad": {"kind": "fs"}}}, {}, "stores.Bad"),
        ({"stores": {"healthz": {"kind": "fs", "root": "."}}}, {}, "stores.healthz"),
        ({"stores": {"a": {"root": "."}}}, {}, "stores.a.kind"),
        ({"stores": {"a": {"kind": "ftp"}}}, {}, "stores.a.kind"),
        ({"stores": {"a": {"kind": "fs"}}}, {}, "stores.a.root"),
        ({"stores": {"a": {"kind": "fs", "root": ""}}}, {}, "stores.a.root"),
        ({"stores": {"a": {"kind": "fs", "root": ".", "colour": "red"}}}, {}, "stores.a.colour"),
        (
            {"stores": {"a": {"kind": "fs", "root": ".", "max_frames": -1}}},
            {},
            "stores.a.max_frames",
        ),
        (
            {"stores": {"a": {"kind": "fs", "root": ".", "placeholder": "nope.png"}}},
            {},
            "stores.a.placeholder",
        ),
        ({"cache": {"cache_control": "a\nb"}}, {}, "cache.cache_control"),
    ],
)
def test_invalid_config_names_the_key(data: dict[str, Any], env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_mapping(data, env=env)
    assert str(caught.value).startswith(key)


@pytest.mark.parametrize(
    ("stores", "presets", "key"),
    [
        ({"a": {"kind": "fs", "root": "does/not/exist"}}, {}, "stores.a.root"),
        ({}, {"big": "w=99999"}, "presets.big"),
        ({}, {"signed": "w=10&s=abc"}, "presets.signed"),
    ],
)
def test_stores_and_presets_are_checked_at_start(
    stores: dict[str, Any], presets: dict[str, str], key: str
) -> None:
    """What needs the filesystem or a parse is checked when the server builds its parts."""
    settings = Settings.from_mapping({"stores": stores, "presets": presets}, env={})
    with pytest.raises(ConfigError) as caught:
        start(settings)
    assert str(caught.value).startswith(key)


def test_bad_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server\nport=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.from_file(path)
    with pytest.raises(ConfigError, match="cannot read"):
        Settings.from_file(tmp_path / "missing.toml")


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "pics").mkdir()
    config = tmp_path / "conf" / "imgproxy.toml"
    config.write_text('[stores.a]\nkind = "fs"\nroot = "../pics"\n')
    settings = Settings.from_file(config, env={})
    store = build_store(settings.stores["a"], settings)
    assert isinstance(store, FileSystemStore)
    assert store.root == str((tmp_path / "pics").resolve())


def test_render_slots_default_to_the_cores_shared_by_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """N workers get cores/N slots each (at least one), not every core each."""
    monkeypatch.setattr("imgproxy.settings.os.cpu_count", lambda: 8)
    assert Settings.from_mapping({}, env={}).limits.render_concurrency == 8
    two = Settings.from_mapping({}, env={"IMGPROXY_SERVER__WORKERS": "2"})
    assert two.limits.render_concurrency == 4
    many = Settings.from_mapping({"server": {"workers": 16}}, env={})
    assert many.limits.render_concurrency == 1
    chosen = {"server": {"workers": 2}, "limits": {"render_concurrency": 3}}
    assert Settings.from_mapping(chosen, env={}).limits.render_concurrency == 3


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IMGPROXY_SERVER__PORT": "abc"}, "server.port (from IMGPROXY_SERVER__PORT): must be an"),
        ({"IMGPROXY_SERVER__PORT": "70000"}, "server.port (from IMGPROXY_SERVER__PORT): must be 0"),
        ({"IMGPROXY_STORES__A__MAX_FRAMES": "0"}, "stores.a.max_frames (from IMGPROXY_STORES__A__"),
    ],
)
def test_an_error_from_the_environment_names_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_mapping({"stores": {"a": {"kind": "fs", "root": "."}}}, env=env)
    assert str(caught.value).startswith(message)


def test_lookalike_variables_are_named_with_their_spelling() -> None:
    env = {
        "IMGPROXY_SERVER_PORT": "1",
        "IMGPROXY_CACHE_DISK_PATH": "x",
        "IMGPROXY_STORES_MY_MEDIA_ALLOWED_HOSTS": "x",
        "IMGPROXY_KEY": "k",
        "IMGPROXY_SERVER__PORT": "1",  # read: nothing to say
        "IMGPROXY_CONFIG": "a.toml",
        "IMGPROXY_SOMETHING_ELSE": "x",  # no setting's spelling: not guessed at
        "HOME": "/root",
    }
    assert unread_variables(env) == [
        "IMGPROXY_CACHE_DISK_PATH is not read; did you mean IMGPROXY_CACHE__DISK_PATH?",
        f"IMGPROXY_KEY is not read: {FOREIGN_VARIABLES['IMGPROXY_KEY']}",
        "IMGPROXY_SERVER_PORT is not read; did you mean IMGPROXY_SERVER__PORT?",
        "IMGPROXY_STORES_MY_MEDIA_ALLOWED_HOSTS is not read; did you mean "
        "IMGPROXY_STORES__MY_MEDIA__ALLOWED_HOSTS?",
    ]
