"""The console script, run as a user would: check, sign, and serve on a real port."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support import images
from tests.support.processes import free_port

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
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "imgproxy", "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/pics/a.jpg?w=100&fm=webp")
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.1)
        assert response.status_code == 200
        assert images.decode(response.content).size == (100, 75)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").text == "ok"
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout:
            process.stdout.close()


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
