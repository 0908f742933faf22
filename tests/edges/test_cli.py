"""The console script, run as a user would: check, sign, and serve on a real port."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from imgproxy.settings import CONFIG_ENV
from tests.support import images
from tests.support.processes import imgproxy_process, served

ROOT = Path(__file__).resolve().parents[2]


def imgproxy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imgproxy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_check_lists_the_stores_of_the_demo_config() -> None:
    result = imgproxy("check", "--config", str(ROOT / "config" / "imgproxy.toml"))
    assert result.returncode == 0, result.stderr
    assert "/media/" in result.stdout and "kind=fs" in result.stdout


def test_invalid_config_refuses_and_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[limits]\nmax_frames = -3\n")
    result = imgproxy("check", "--config", str(config))
    assert result.returncode == 2
    assert "limits.max_frames" in result.stderr
    served = imgproxy("serve", "--config", str(config))
    assert served.returncode == 2 and "limits.max_frames" in served.stderr


def test_check_says_what_bounds_an_unsigned_server(tmp_path: Path) -> None:
    """No security.keys: anyone can have renditions made, and check says so with the
    configured limits and tier budgets that bound them; with keys it says nothing of it."""
    (tmp_path / "pics").mkdir()
    config = tmp_path / "imgproxy.toml"
    tiers = '[cache]\nmemory_bytes = 33554432\ndisk_path = "c"\ndisk_bytes = 536870912\n'
    limits = "[limits]\nmax_output_pixels = 1000000\nrender_concurrency = 3\nrender_queue = 7\n"
    store = '[stores.pics]\nkind = "fs"\nroot = "pics"\n'
    config.write_text(tiers + limits + store)
    unsigned = imgproxy("check", "--config", str(config))
    assert unsigned.returncode == 0, unsigned.stderr
    assert "security.keys is empty: URLs are unsigned, so anyone can" in unsigned.stdout
    for bound in (
        "limits.max_output_pixels = 1000000 per output",
        "3 render slot(s) per worker, limits.render_queue = 7 waiting per store, then 503",
        "limits.inflight_bytes = 256 MiB per worker",
        "the tiers' budgets: memory 32 MiB, disk 512 MiB\n",
    ):
        assert bound in unsigned.stdout
    config.write_text('[security]\nkeys = ["k1"]\n' + tiers + limits + store)
    signed = imgproxy("check", "--config", str(config))
    assert signed.returncode == 0 and "unsigned" not in signed.stdout


def test_sign_needs_keys(tmp_path: Path) -> None:
    result = imgproxy(
        "sign", "--config", str(ROOT / "config" / "imgproxy.toml"), "/media/a.jpg?w=1"
    )
    assert result.returncode == 2 and "signing is off" in result.stderr


def test_serve_answers_on_its_port(tmp_path: Path) -> None:
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.jpg").write_bytes(images.jpeg((400, 300)))
    config = tmp_path / "imgproxy.toml"
    config.write_text('[stores.pics]\nkind = "fs"\nroot = "pics"\napproved = true\n')
    with served(config) as server:
        response = httpx.get(f"{server.url}/pics/a.jpg?w=100&fm=webp")
        assert response.status_code == 200
        assert images.decode(response.content).size == (100, 75)
        assert httpx.get(f"{server.url}/healthz").text == "ok"
    assert "Traceback" not in server.stderr


def test_check_and_sign_build_no_cache_tier(tmp_path: Path) -> None:
    """They validate the config (stores included, for check) and touch no cache: the disk
    folder is never created and an unreachable Redis is never contacted."""
    (tmp_path / "pics").mkdir()
    config = tmp_path / "imgproxy.toml"
    config.write_text(
        '[security]\nkeys = ["k1"]\n'
        '[cache]\ndisk_path = "var/cache"\nredis_url = "redis://127.0.0.1:1/0"\n'
        '[stores.pics]\nkind = "fs"\nroot = "pics"\n'
    )
    checked = imgproxy("check", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    signed = imgproxy("sign", "--config", str(config), "/pics/a.jpg?w=10")
    assert signed.returncode == 0, signed.stderr
    assert signed.stdout.startswith("/pics/a.jpg?w=10&s=")
    assert not (tmp_path / "var").exists()
    config.write_text(config.read_text().replace('root = "pics"', 'root = "missing"'))
    broken = imgproxy("check", "--config", str(config))
    assert broken.returncode == 2 and "stores.pics.root" in broken.stderr


def _store(tmp_path: Path, cache: str = "") -> Path:
    """A config with one fs store `pics` (a JPEG and a file that is no image), a key, a
    preset, and the given [cache] lines."""
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.jpg").write_bytes(images.jpeg((400, 300)))
    (tmp_path / "pics" / "broken.jpg").write_bytes(b"not an image")
    config = tmp_path / "imgproxy.toml"
    config.write_text(
        '[security]\nkeys = ["k1"]\n[presets]\nsmall = "w=50"\n'
        f"[cache]\n{cache}\n"
        '[stores.pics]\nkind = "fs"\nroot = "pics"\napproved = true\n'
    )
    return config


def test_sign_adds_the_leading_slash(tmp_path: Path) -> None:
    config = _store(tmp_path)
    bare = imgproxy("sign", "--config", str(config), "pics/a.jpg?w=10")
    slashed = imgproxy("sign", "--config", str(config), "/pics/a.jpg?w=10")
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout == slashed.stdout and bare.stdout.startswith("/pics/a.jpg?w=10&s=")
    assert "/pics/a.jpg?w=10" in bare.stderr  # the note shows what was signed


def test_sign_encodes_the_path_as_a_browser_sends_it(tmp_path: Path) -> None:
    config = _store(tmp_path)
    result = imgproxy("sign", "--config", str(config), "/pics/me now.jpg?w=10")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("/pics/me%20now.jpg?w=10&s=")


def test_signed_bare_path_is_accepted_by_the_server(tmp_path: Path) -> None:
    config = _store(tmp_path)
    signed = imgproxy("sign", "--config", str(config), "pics/a.jpg?w=100").stdout.strip()
    with imgproxy_process(config) as base:
        response = httpx.get(base + signed)
    assert response.status_code == 200, response.text
    assert images.decode(response.content).size == (100, 75)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://example.com/pics/a.jpg?w=1", "full URL"),
        ("https://example.com/pics/a.jpg", "/pics/a.jpg"),  # suggests the path to pass
        ("/pics/", "/STORE/PATH"),
        ("pics", "/STORE/PATH"),
        ("/", "/STORE/PATH"),
        ("/Pics!/a.jpg", "/STORE/PATH"),
        ("/healthz/a.jpg", "/STORE/PATH"),
        ("/pics/a.jpg?w=1#top", "fragment"),
    ],
)
def test_sign_refuses_what_is_not_a_store_path(tmp_path: Path, url: str, says: str) -> None:
    result = imgproxy("sign", "--config", str(_store(tmp_path)), url)
    assert result.returncode == 2 and result.stdout == ""
    assert says in result.stderr


def test_help_says_what_the_commands_do_not_where_their_code_lives() -> None:
    result = imgproxy("--help")
    assert result.returncode == 0 and "sign URLs" in result.stdout
    assert ".py" not in result.stdout


def test_sign_help_documents_the_rules() -> None:
    result = imgproxy("sign", "--help")
    assert "leading slash" in result.stdout and "full URL" in result.stdout


def test_purge_of_nothing_says_so_and_fails(tmp_path: Path) -> None:
    config = _store(tmp_path, cache='disk_path = "cache"')
    result = imgproxy("purge", "--config", str(config), "pics/a.jpg")
    assert result.returncode == 1
    assert "nothing cached for pics/a.jpg" in result.stderr and "0 entries" in result.stderr


def test_purge_after_warm_removes_and_succeeds(tmp_path: Path) -> None:
    config = _store(tmp_path, cache='disk_path = "cache"')
    warmed = imgproxy("warm", "--config", str(config), "--store", "pics", "--preset", "small")
    assert "made 1" in warmed.stdout, warmed.stderr
    result = imgproxy("purge", "--config", str(config), "pics/a.jpg")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("purged ") and "purged 0" not in result.stdout
    again = imgproxy("purge", "--config", str(config), "pics/a.jpg")
    assert again.returncode == 1  # gone: the second purge matches nothing


def test_purge_of_an_unknown_store_names_it(tmp_path: Path) -> None:
    result = imgproxy("purge", "--config", str(_store(tmp_path)), "nope/a.jpg")
    assert result.returncode == 2
    assert "stores.nope" in result.stderr and "pics" in result.stderr  # and the real ones


def test_purge_with_only_memory_explains_why_nothing_was_removed(tmp_path: Path) -> None:
    result = imgproxy("purge", "--config", str(_store(tmp_path)), "pics/a.jpg")
    assert result.returncode == 1 and "only the memory tier" in result.stderr


def _without_config_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != CONFIG_ENV}


def test_check_without_config_says_it_used_the_defaults(tmp_path: Path) -> None:
    result = imgproxy("check", env=_without_config_env())
    assert result.returncode == 0, result.stderr
    assert "built-in defaults" in result.stdout and CONFIG_ENV in result.stdout


def test_check_names_the_file_it_read(tmp_path: Path) -> None:
    config = _store(tmp_path)
    given = imgproxy("check", "--config", str(config))
    assert f"{config} (from --config)" in given.stdout
    from_env = imgproxy("check", env={**_without_config_env(), CONFIG_ENV: str(config)})
    assert from_env.returncode == 0, from_env.stderr
    assert f"{config} (from ${CONFIG_ENV})" in from_env.stdout


def test_check_names_a_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    result = imgproxy("check", "--config", str(missing))
    assert result.returncode == 2
    assert f"config file not found: {missing}" in result.stderr and "--config" in result.stderr
    from_env = imgproxy("check", env={**_without_config_env(), CONFIG_ENV: str(missing)})
    assert from_env.returncode == 2 and str(missing) in from_env.stderr
    assert CONFIG_ENV in from_env.stderr


def test_warm_names_each_failed_file(tmp_path: Path) -> None:
    config = _store(tmp_path, cache='disk_path = "cache"')
    result = imgproxy("warm", "--config", str(config), "--store", "pics", "--preset", "small")
    assert result.returncode == 1
    assert "made 1, failed 1" in result.stdout
    failed = [line for line in result.stderr.splitlines() if "failed:" in line]
    assert len(failed) == 1
    assert "pics/broken.jpg" in failed[0] and "415" in failed[0]
    assert "unsupported_format" in failed[0]  # the error's code and detail
    assert "only the memory tier" not in result.stderr


def test_warm_with_only_memory_warns(tmp_path: Path) -> None:
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.jpg").write_bytes(images.jpeg((40, 30)))
    config = tmp_path / "imgproxy.toml"
    config.write_text('[presets]\nsmall = "w=10"\n[stores.pics]\nkind = "fs"\nroot = "pics"\n')
    result = imgproxy("warm", "--config", str(config), "--store", "pics", "--preset", "small")
    assert result.returncode == 0, result.stderr
    assert "WARNING: only the memory tier" in result.stderr


def test_config_reference_prints_the_generated_reference() -> None:
    from imgproxy.server import reference

    result = imgproxy("config", "--reference")
    assert result.returncode == 0, result.stderr
    assert result.stdout == reference.markdown()
    assert "security.keys" in result.stdout or "keys" in result.stdout


def test_config_without_a_flag_is_a_usage_error() -> None:
    result = imgproxy("config")
    assert result.returncode == 2 and "--reference" in result.stderr
    assert "--nginx" in result.stderr


@pytest.mark.parametrize(
    ("flag", "name"),
    [
        ("--nginx", "nginx.conf"),
        ("--varnish", "varnish.vcl"),
        ("--systemd", "imgproxy.service"),
        ("--production", "production.toml"),
    ],
)
def test_config_prints_each_shipped_deployment_file(flag: str, name: str) -> None:
    """A pip user has config/'s files too: the same bytes as the repository's, printed from
    the package's copies (tests/test_distribution.py runs it from an installed wheel)."""
    result = subprocess.run(
        [sys.executable, "-m", "imgproxy", "config", flag], capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (ROOT / "config" / name).read_bytes()


def test_the_package_ships_every_deployment_file_of_config_unchanged() -> None:
    """imgproxy/server/deploy/ is what the wheel carries: a change to config/ must be copied
    there (cp config/FILE imgproxy/server/deploy/), and nothing else may live there."""
    deploy = ROOT / "imgproxy" / "server" / "deploy"
    shipped = {path.name for path in deploy.iterdir()}
    assert shipped == {"nginx.conf", "varnish.vcl", "imgproxy.service", "production.toml"}
    for name in shipped:
        assert (deploy / name).read_bytes() == (ROOT / "config" / name).read_bytes(), name


def test_version_is_the_distribution_s() -> None:
    result = imgproxy("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"imgproxy {importlib.metadata.version('imgproxy-server')}\n"


def test_serve_runs_only_on_the_uvicorn_releases_it_was_tested_with() -> None:
    """connections.py extends uvicorn's internals: an untested release is refused by name,
    and the range is the one the `server` extra installs."""
    import tomllib

    from imgproxy.server import serving

    assert serving.untested_uvicorn(importlib.metadata.version("uvicorn")) is None
    assert serving.untested_uvicorn("0.55.9") is None
    for version in ("0.33.0", "0.56.0", "1.0.0"):
        refused = serving.untested_uvicorn(version)
        assert refused is not None and f"uvicorn {version}" in refused
        assert "uvicorn>=0.34,<0.56" in refused
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    server = project["project"]["optional-dependencies"]["server"]
    assert "uvicorn>=0.34,<0.56" in server


def _without_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`imgproxy ARGS` in a Python where `module` cannot be imported, as without its extra."""
    code = (
        f"import runpy, sys; sys.modules[{module!r}] = None; sys.argv = ['imgproxy', *{args!r}];"
        " runpy.run_module('imgproxy', run_name='__main__')"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def _only_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    (line,) = result.stderr.splitlines()
    return line


VALIDATING = (("check",), ("serve",), ("serve", "--workers", "2"))


def test_check_refuses_what_serve_cannot_build(tmp_path: Path) -> None:
    """check and serve go through one validation: a tier whose extra is missing, a disk
    folder that cannot be made (serve's 53-line traceback, which never named the key) and a
    format no decoder reads are one line each, from both, and check creates nothing. With
    workers, a child process validates (serving.validated_apart): the same line."""
    (tmp_path / "pics").mkdir()
    (tmp_path / "a-file").write_text("")
    store = '[stores.pics]\nkind = "fs"\nroot = "pics"\n'
    config = tmp_path / "imgproxy.toml"
    config.write_text(f'[cache]\ndisk_path = "a-file/cache"\n{store}')
    for command in VALIDATING:
        line = _only_line(imgproxy(*command, "--config", str(config)))
        folder = tmp_path / "a-file"
        assert (
            line
            == f"imgproxy: cache.disk_path: cannot create {folder}/cache: {folder} is not a folder"
        )
    config.write_text(f'[cache]\ns3_bucket = "renditions"\n{store}')
    for command in VALIDATING:
        line = _only_line(_without_module("obstore", *command, "--config", str(config)))
        assert (
            line
            == "imgproxy: cache.s3_bucket needs the 's3' extra: pip install 'imgproxy-server[s3]'"
        )
    config.write_text(f'[cache]\nredis_url = "redis://127.0.0.1:1/0"\n{store}')
    line = _only_line(_without_module("redis", "check", "--config", str(config)))
    assert "cache.redis_url needs the 'redis' extra" in line
    for policy, key in (
        ('[policy]\nimage_formats = ["JPEG", "WEBPP"]\n', "policy.image_formats"),
        ('[policy]\napproved_image_formats = ["PCX", "TIF"]\n', "policy.approved_image_formats"),
        (
            '[stores.more]\nkind = "fs"\nroot = "pics"\nimage_formats = ["PNGG"]\n',
            "stores.more.image_formats",
        ),
    ):
        config.write_text(policy + store)
        for command in VALIDATING:
            line = _only_line(imgproxy(*command, "--config", str(config)))
            assert line.startswith(f"imgproxy: {key}: '") and "is not a format Pillow reads" in line
    config.write_text('[policy]\napproved_image_formats = ["PCX", "*"]\n' + store)
    assert imgproxy("check", "--config", str(config)).returncode == 0


def test_no_keys_on_an_open_address_refuses_to_start(tmp_path: Path) -> None:
    """`keys = []` on an address others reach started unsigned without a word: now check and
    serve refuse it, naming both ways out, unless security.allow_unsigned says it is meant.
    Loopback (`make serve`) stays as easy as before."""
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.jpg").write_bytes(images.jpeg((40, 30)))
    config = tmp_path / "imgproxy.toml"
    store = '[stores.pics]\nkind = "fs"\nroot = "pics"\napproved = true\n'
    config.write_text(f'[server]\nhost = "0.0.0.0"\n{store}')
    checked = imgproxy("check", "--config", str(config))
    serving = subprocess.run(
        [sys.executable, "-m", "imgproxy", "serve", "--config", str(config), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    loopback = tmp_path / "loopback.toml"
    loopback.write_text(store)
    flag = subprocess.run(
        [sys.executable, "-m", "imgproxy", "serve", "--config", str(loopback), "--host", "::"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    for refused, host in ((checked, "0.0.0.0"), (serving, "0.0.0.0"), (flag, "::")):
        line = _only_line(refused)
        assert line.startswith(f"imgproxy: security.keys: empty, and server.host '{host}' is not")
        assert "security.allow_unsigned = true" in line
    assert imgproxy("check", "--config", str(loopback)).returncode == 0
    allowed = {"IMGPROXY_SECURITY__ALLOW_UNSIGNED": "true"}
    checked = imgproxy("check", "--config", str(config), env={**os.environ, **allowed})
    assert checked.returncode == 0 and "URLs are unsigned" in checked.stdout
    with served(config, env=allowed) as server:  # listening on every interface, loopback too
        assert httpx.get(f"{server.url}/pics/a.jpg?w=10").status_code == 200
    with served(config, "--host", "127.0.0.1") as server:
        assert httpx.get(f"{server.url}/pics/a.jpg?w=10").status_code == 200


def test_variables_that_look_like_settings_are_named(tmp_path: Path) -> None:
    """One-underscore spellings and imgproxy (Go)'s IMGPROXY_KEY/SALT were ignored without a
    word: check and serve name each with what is read instead; an error in a value from the
    environment names its variable, for a section key and for a store's."""
    config = _store(tmp_path)
    lookalikes = {
        "IMGPROXY_SERVER_PORT": "9000",
        "IMGPROXY_STORES_PICS_ROOT": "elsewhere",
        "IMGPROXY_KEY": "abc",
        "IMGPROXY_SALT": "def",
    }
    env = {**_without_config_env(), **lookalikes}
    checked = imgproxy("check", "--config", str(config), env=env)
    assert checked.returncode == 0, checked.stderr
    warned = imgproxy("serve", "--config", str(config), env={**env, "IMGPROXY_SERVER__PORT": "x"})
    for result in (checked, warned):
        lines = result.stderr.splitlines()
        assert (
            "imgproxy: WARNING: IMGPROXY_SERVER_PORT is not read; did you mean "
            "IMGPROXY_SERVER__PORT?" in lines
        )
        assert (
            "imgproxy: WARNING: IMGPROXY_STORES_PICS_ROOT is not read; did you mean "
            "IMGPROXY_STORES__PICS__ROOT?" in lines
        )
        key = next(line for line in lines if "IMGPROXY_KEY is not read" in line)
        salt = next(line for line in lines if "IMGPROXY_SALT is not read" in line)
        assert "IMGPROXY_DIALECTS__IMGPROXY__KEYS" in key
        assert "IMGPROXY_DIALECTS__IMGPROXY__SALTS" in salt
    assert warned.returncode == 2
    assert "server.port (from IMGPROXY_SERVER__PORT): must be an integer" in warned.stderr
    moved = {**_without_config_env(), "IMGPROXY_STORES__PICS__ROOT": "nowhere"}
    refused = _only_line(imgproxy("check", "--config", str(config), env=moved))
    assert refused.startswith("imgproxy: stores.pics.root (from IMGPROXY_STORES__PICS__ROOT): ")
    quiet = imgproxy("check", "--config", str(config), env=_without_config_env())
    assert quiet.returncode == 0 and "WARNING" not in quiet.stderr
