"""The config reference is generated from the Settings tree and current; every key has a
meaning; the shipped production config and systemd unit fit together."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest

from imgproxy.errors import ConfigError
from imgproxy.server import reference
from imgproxy.settings import Settings

CONFIG = Path(__file__).resolve().parents[2] / "config"


def test_every_key_has_a_meaning_and_no_meaning_is_stale() -> None:
    assert {key for key, _, _ in reference.entries()} == set(reference.MEANINGS)


def test_the_shipped_reference_is_current() -> None:
    """Regenerate with `imgproxy config --reference > config/REFERENCE.md`."""
    assert (CONFIG / "REFERENCE.md").read_text() == reference.markdown()


def test_the_reference_states_types_and_defaults() -> None:
    text = reference.markdown()
    assert "| `limits.max_source_bytes` | integer | 52_428_800 |" in text
    assert "| `security.keys` | list of strings | [] |" in text
    assert "| `stores.NAME.base_url` | string | required | (`http`)" in text


def test_the_production_config_loads_with_its_secrets_from_the_environment(tmp_path: Path) -> None:
    env = {
        "IMGPROXY_STORES__MEDIA__ROOT": str(tmp_path),
        "IMGPROXY_SECURITY__KEYS": '["new-key","old-key"]',
    }
    settings = Settings.from_file(CONFIG / "production.toml", env=env)
    assert settings.security.keys == ("new-key", "old-key")
    assert settings.server.log_format == "json" and not settings.server.demo
    nginx = (CONFIG / "nginx.conf").read_text()
    assert f"alias {settings.cache.disk_path}/;" in nginx  # nginx sends what imgproxy caches
    with pytest.raises(ConfigError, match=r"security\.keys"):
        Settings.from_file(CONFIG / "production.toml", env={"IMGPROXY_SECURITY__KEYS": '["x",'})


def test_the_systemd_unit_serves_the_production_config() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(CONFIG / "imgproxy.service")
    command = shlex.split(unit["Service"]["ExecStart"])
    assert command[1:] == ["serve", "--config", "/etc/imgproxy/production.toml"]
    settings = Settings.from_file(
        CONFIG / "production.toml", env={"IMGPROXY_STORES__MEDIA__ROOT": "/"}
    )
    assert unit["Service"]["ReadWritePaths"] == settings.cache.disk_path
    assert unit["Service"]["KillSignal"] == "SIGTERM"
