"""Each store kind's options: typed and checked in one place, the same for a TOML table and
for IMGPROXY_STORES__NAME__KEY environment strings; refusals name the dotted key."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from imgproxy.errors import ConfigError
from imgproxy.settings import Settings
from imgproxy.store_options import STORE_KINDS, FsOptions, HttpOptions, SqlOptions
from imgproxy.stores import HTTPStore, build_store

WEB = {"kind": "http", "base_url": "https://images.example.com/"}
AVATARS = {
    "kind": "sql",
    "url": "postgresql://app:s3cret@db.internal:5432/app",
    "table": "profile_picture",
    "key_column": "user_id",
    "data_column": "data",
    "updated_column": "last_updated",
}


def web(env: dict[str, str], **table: Any) -> HttpOptions:
    settings = Settings.from_mapping({"stores": {"web": {**WEB, **table}}}, env=env)
    options = settings.stores["web"].options
    assert isinstance(options, HttpOptions)
    return options


def test_toml_values_become_typed_options() -> None:
    options = web({}, timeout=3, allowed_hosts=["a.example.com"], allow_private_networks=True)
    assert options == HttpOptions(
        base_url="https://images.example.com/",
        timeout=3.0,
        allowed_hosts=("a.example.com",),
        allow_private_networks=True,
    )
    assert isinstance(options.timeout, float)


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        ("TIMEOUT", "3", "timeout", 3.0),
        ("CONNECT_TIMEOUT", "0.5", "connect_timeout", 0.5),
        ("ALLOW_PRIVATE_NETWORKS", "true", "allow_private_networks", True),
        ("ALLOW_PRIVATE_NETWORKS", "off", "allow_private_networks", False),
        (
            "ALLOWED_HOSTS",
            "a.example.com,*.cdn.example.com",
            "allowed_hosts",
            ("a.example.com", "*.cdn.example.com"),
        ),
        ("ALLOWED_HOSTS", '["a.example.com"]', "allowed_hosts", ("a.example.com",)),
        ("ALLOWED_HOSTS", " [ ] ", "allowed_hosts", ()),
        (
            "ALLOWED_NETWORKS",
            "10.0.0.0/8, 192.168.1.0/24",
            "allowed_networks",
            ("10.0.0.0/8", "192.168.1.0/24"),
        ),
    ],
)
def test_environment_strings_are_coerced_for_store_keys(
    name: str, value: str, field: str, expected: object
) -> None:
    options = web({f"IMGPROXY_STORES__WEB__{name}": value})
    assert getattr(options, field) == expected


def test_security_keys_from_the_environment_accept_json() -> None:
    settings = Settings.from_mapping({}, env={"IMGPROXY_SECURITY__KEYS": '["k1","k2"]'})
    assert settings.security.keys == ("k1", "k2")
    settings = Settings.from_mapping({}, env={"IMGPROXY_SECURITY__KEYS": "k1, k2"})
    assert settings.security.keys == ("k1", "k2")


@pytest.mark.parametrize("value", ['["k1", 2]', '["k1"', "[k1, k2]", '[["k1"]]'])
def test_a_bad_json_list_names_the_key_and_never_echoes_it(value: str) -> None:
    message = r"^security\.keys \(from IMGPROXY_SECURITY__KEYS\): must be a JSON list of strings$"
    with pytest.raises(ConfigError, match=message):
        Settings.from_mapping({}, env={"IMGPROXY_SECURITY__KEYS": value})


@pytest.mark.parametrize(
    ("table", "env", "message"),
    [
        ({"timeout": "abc"}, {}, "stores.web.timeout: must be a number, got 'abc'"),
        (
            {},
            {"IMGPROXY_STORES__WEB__TIMEOUT": "abc"},
            "stores.web.timeout (from IMGPROXY_STORES__WEB__TIMEOUT): must be a number",
        ),
        (
            {},
            {"IMGPROXY_STORES__WEB__TIMEOUT": "inf"},
            "stores.web.timeout (from IMGPROXY_STORES__WEB__TIMEOUT): must be a number",
        ),
        ({"timeout": True}, {}, "stores.web.timeout: must be a number"),
        ({"timeout": 0}, {}, "stores.web.timeout: must be a positive number"),
        ({"connect_timeout": -1.5}, {}, "stores.web.connect_timeout: must be a positive"),
        ({"base_url": "ftp://x/"}, {}, "stores.web.base_url: must be an http:// or https://"),
        ({"base_url": 5}, {}, "stores.web.base_url: must be a string"),
        ({"allowed_hosts": "a.example.com"}, {}, "stores.web.allowed_hosts: must be a list"),
        ({"allowed_hosts": [1]}, {}, "stores.web.allowed_hosts: must be a list of strings"),
        ({"allowed_networks": ["nope"]}, {}, "stores.web.allowed_networks: 'nope'"),
        ({"allow_private_networks": "yes"}, {}, "stores.web.allow_private_networks: must be"),
        (
            {},
            {"IMGPROXY_STORES__WEB__ALLOW_PRIVATE_NETWORKS": "maybe"},
            "stores.web.allow_private_networks (from IMGPROXY_STORES__WEB__ALLOW_PRIVATE_NETWORKS):"
            " must be true or false",
        ),
        ({"root": "."}, {}, "stores.web.root: unknown key for http"),
    ],
)
def test_bad_http_options_name_the_key(
    table: dict[str, Any], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        web(env, **table)
    assert str(caught.value).startswith(message)


def test_required_options_are_named() -> None:
    table = {k: v for k, v in AVATARS.items() if k != "updated_column"}
    with pytest.raises(ConfigError, match=r"^stores\.a\.updated_column: required for sql"):
        Settings.from_mapping({"stores": {"a": table}}, env={})
    with pytest.raises(ConfigError, match=r"^stores\.web\.base_url: required for http"):
        Settings.from_mapping({"stores": {"web": {"kind": "http"}}}, env={})


def test_an_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_mapping({"stores": {"a": {"kind": "ftp"}}}, env={})
    assert str(caught.value) == "stores.a.kind: unknown store kind 'ftp' (fs, sql, http, s3)"
    assert set(STORE_KINDS) == {"fs", "sql", "http", "s3"}


def test_sql_options_and_the_optional_column() -> None:
    env = {"IMGPROXY_STORES__A__APPROVED_COLUMN": "approved"}
    options = Settings.from_mapping({"stores": {"a": AVATARS}}, env=env).stores["a"].options
    assert options == SqlOptions(
        url="postgresql://app:s3cret@db.internal:5432/app",
        table="profile_picture",
        key_column="user_id",
        data_column="data",
        updated_column="last_updated",
        approved_column="approved",
    )
    # An empty environment value unsets an optional key the TOML file set.
    table = {**AVATARS, "approved_column": "approved"}
    env = {"IMGPROXY_STORES__A__APPROVED_COLUMN": ""}
    options = Settings.from_mapping({"stores": {"a": table}}, env=env).stores["a"].options
    assert isinstance(options, SqlOptions)
    assert options.approved_column is None
    with pytest.raises(ConfigError, match=r"^stores\.a\.url: must start with sqlite:///"):
        Settings.from_mapping({"stores": {"a": {**AVATARS, "url": "mysql://x"}}}, env={})


def test_store_from_the_environment_alone(tmp_path: Path) -> None:
    env = {"IMGPROXY_STORES__PICS__KIND": "fs", "IMGPROXY_STORES__PICS__ROOT": str(tmp_path)}
    store = Settings.from_mapping({}, env=env).stores["pics"]
    assert store.kind == "fs"
    assert store.options == FsOptions(root=str(tmp_path))


def test_options_are_frozen() -> None:
    options = web({})
    with pytest.raises(AttributeError):
        options.timeout = 1.0  # type: ignore[misc]


def test_describe_masks_url_passwords() -> None:
    settings = Settings.from_mapping({"stores": {"a": AVATARS, "web": WEB}}, env={})
    described = settings.stores["a"].describe()
    assert "s3cret" not in described
    assert described.startswith(
        "url='postgresql://app:***@db.internal:5432/app', table='profile_picture', "
    )
    assert described.endswith(
        "approved_column=None, focal_x_column=None, focal_y_column=None, timeout=5.0"
    )
    assert settings.stores["web"].describe() == (
        "base_url='https://images.example.com/', timeout=5.0, connect_timeout=2.0,"
        " allowed_hosts=(), allow_private_networks=False, allowed_networks=()"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p@cdn.example.com/x@y", "https://u:***@cdn.example.com/x@y"),
        ("https://u:p@ss@cdn.example.com/", "https://u:***@cdn.example.com/"),
        ("https://user@cdn.example.com/", "https://user@cdn.example.com/"),
        ("https://cdn.example.com/a:b@c", "https://cdn.example.com/a:b@c"),
    ],
)
def test_describe_masks_only_the_password(url: str, shown: str) -> None:
    settings = Settings.from_mapping({"stores": {"web": {**WEB, "base_url": url}}}, env={})
    assert settings.stores["web"].describe().startswith(f"base_url={shown!r},")


def test_environment_options_reach_the_built_store() -> None:
    env = {
        "IMGPROXY_STORES__WEB__TIMEOUT": "3",
        "IMGPROXY_STORES__WEB__ALLOW_PRIVATE_NETWORKS": "true",
        "IMGPROXY_STORES__WEB__ALLOWED_HOSTS": "a.example.com,*.cdn.example.com",
    }
    settings = Settings.from_mapping({"stores": {"web": WEB}}, env=env)
    store = build_store(settings.stores["web"], settings)
    assert isinstance(store, HTTPStore)
    assert store.timeout == 3.0
    assert store.allowed_hosts == ("a.example.com", "*.cdn.example.com")
    assert store.addresses.permits("127.0.0.1")
    asyncio.run(store.close())
