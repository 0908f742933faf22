"""The distribution a user installs: sdist and wheel built from this tree, the wheel installed
into a fresh venv, first alone (the core: no server, Redis or Prometheus packages; a feature
that needs an extra says which), then with the `server` extra serving an image for real."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.support import images
from tests.support.processes import served

ROOT = Path(__file__).resolve().parent.parent

CORE_SMOKE = textwrap.dedent(
    """
    import asyncio, importlib.util, sys
    import httpx
    from imgproxy import ImageProxy, Settings
    from imgproxy.errors import ConfigError

    for extra in ("uvicorn", "redis", "tqdm", "asyncpg", "obstore",
                  "numpy", "pi_heif"):
        assert importlib.util.find_spec(extra) is None, extra + " came with the core"
    root = sys.argv[1]
    store = {"media": {"kind": "fs", "root": root, "approved": True}}
    proxy = ImageProxy(Settings.from_mapping({"stores": store}, env={}))

    async def fetch(query):
        transport = httpx.ASGITransport(app=proxy)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            return await client.get("/media/photo.jpg?" + query)

    response = asyncio.run(fetch("w=40&fm=webp"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/webp"
    hashed = asyncio.run(fetch("fm=thumbhash"))  # numpy is an extra: a 400 naming it
    assert hashed.status_code == 400 and "placeholders" in hashed.text, hashed.text
    try:
        ImageProxy(Settings.from_mapping({"cache": {"redis_url": "redis://x"}}, env={}))
    except ConfigError as exc:
        assert "pip install 'imgproxy-server[redis]'" in str(exc), exc
    else:
        raise AssertionError("a Redis tier without the redis extra")
    print("core ok")
    """
)


# The installed venv sees what pip put in it and nothing else: a PYTHONPATH naming a source
# tree (where the build leaves imgproxy_server.egg-info) would make pip skip the wheel as
# already installed, and the venv import the tree instead.
ISOLATED = {**os.environ, "PYTHONPATH": ""}


def run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = [str(c) for c in command]
    return subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=cwd, env=ISOLATED)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("dist")
    result = run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", out, ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = out.glob("imgproxy_server-*.whl")
    (sdist,) = out.glob("imgproxy_server-*.tar.gz")
    return wheel, sdist


def test_the_sdist_holds_the_package_and_its_readme(built: tuple[Path, Path]) -> None:
    with tarfile.open(built[1]) as archive:
        names = {
            Path(name).relative_to(Path(name).parts[0]).as_posix() for name in archive.getnames()
        }
    assert {"README.md", "pyproject.toml", "imgproxy/pipeline.py", "imgproxy/py.typed"} <= names
    assert {"LICENSE", "imgproxy/server/deploy/nginx.conf"} <= names


def test_the_wheel_installs_alone_then_with_the_server_extra(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    wheel = built[0]
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    pip, python, imgproxy = (venv / "bin" / name for name in ("pip", "python", "imgproxy"))
    installed = run(pip, "install", "--quiet", wheel)
    assert installed.returncode == 0, installed.stderr[-3000:]

    media = tmp_path / "media"
    media.mkdir()
    (media / "photo.jpg").write_bytes(images.jpeg((320, 240)))
    smoke = run(python, "-c", CORE_SMOKE, media, cwd=tmp_path)
    assert smoke.returncode == 0 and "core ok" in smoke.stdout, smoke.stderr[-3000:]
    config = tmp_path / "imgproxy.toml"
    config.write_text('[stores.media]\nkind = "fs"\nroot = "media"\napproved = true\n')
    checked = run(imgproxy, "check", "--config", config)
    assert checked.returncode == 0 and "/media/" in checked.stdout, checked.stderr
    heif = tmp_path / "heif.toml"  # a policy naming a format this install cannot decode
    heif.write_text(config.read_text() + 'approved_image_formats = ["HEIF"]\n')
    named = run(imgproxy, "check", "--config", heif)
    assert named.returncode == 2 and "imgproxy-server[heif]" in named.stderr, named.stderr
    refused = run(imgproxy, "serve", "--config", config)
    assert refused.returncode == 2
    assert "pip install 'imgproxy-server[server]'" in refused.stderr

    with_server = run(pip, "install", "--quiet", f"{wheel}[server]")
    assert with_server.returncode == 0, with_server.stderr[-3000:]
    version = run(imgproxy, "--version", cwd=tmp_path)
    assert version.stdout == f"imgproxy {wheel.name.split('-')[1]}\n", version.stderr
    for flag, name in (("--nginx", "nginx.conf"), ("--systemd", "imgproxy.service")):
        shipped = subprocess.run(
            [imgproxy, "config", flag], capture_output=True, cwd=tmp_path, env=ISOLATED
        )
        assert shipped.returncode == 0, shipped.stderr
        assert shipped.stdout == (ROOT / "config" / name).read_bytes()  # package data
    with served(config, command=[str(imgproxy)], env={"PYTHONPATH": ""}) as server:
        response = httpx.get(f"{server.url}/media/photo.jpg?w=100")
        assert response.status_code == 200
        assert images.decode(response.content).size == (100, 75)
