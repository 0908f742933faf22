"""The PyPI `imgproxy` URL builder, run in a venv of its own: its module name is ours too.

The venv is built once from the pinned, hashed tests/support/imgproxy-builder.txt into the
gitignored .test-venvs/ (named by the file's hash, so a new pin builds a new one), under a
file lock so parallel test processes build it once. Without it the tests skip loudly, or
fail when IMGPROXY_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import REQUIRE_SERVICES

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path(__file__).with_name("imgproxy-builder.txt")
VENVS = ROOT / ".test-venvs"

# Runs inside the builder's venv with -I (isolated: no PYTHONPATH, so its `imgproxy` is the
# builder, never ours): one URL per case, built exactly as the library builds it.
_SCRIPT = """
import json, sys
from imgproxy import ImgProxy
request = json.load(sys.stdin)
urls = []
for case in request["cases"]:
    url = ImgProxy(case["source"], key=request["key"], salt=request["salt"], **case["fields"])
    urls.append(url(*case["advanced"]))
print(json.dumps(urls))
"""


def builder_python() -> Path:
    """The venv's python, built on first use; skips (or fails) when it cannot be built."""
    tag = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = VENVS / f"imgproxy-builder-{tag}"
    python = venv / "bin" / "python"
    if python.exists():
        return python
    VENVS.mkdir(exist_ok=True)
    with (VENVS / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not python.exists():
            _build(venv)
    return python


def _build(venv: Path) -> None:
    partial = venv.with_name(venv.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", "--without-pip", str(partial)],
        [sys.executable, "-m", "pip", "--python", str(partial / "bin" / "python"), "install",
         "--quiet", "--no-deps", "--require-hashes", "-r", str(REQUIREMENTS)],
    ]  # fmt: skip
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            message = f"*** the imgproxy URL builder venv could not be built: {done.stderr[-800:]}"
            if REQUIRE_SERVICES:
                pytest.fail(message + " (IMGPROXY_REQUIRE_SERVICES=1)")
            pytest.skip(message)
    partial.rename(venv)


def build_urls(key: str, salt: str, cases: list[dict[str, Any]]) -> list[str]:
    """Each case {"source", "fields" (ImgProxy's keyword fields), "advanced" (option strings)}
    -> the path the builder makes for it, `/{signature}/...`."""
    request = json.dumps({"key": key, "salt": salt, "cases": cases})
    done = subprocess.run(
        [str(builder_python()), "-I", "-c", _SCRIPT],
        input=request,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    urls: list[str] = json.loads(done.stdout)
    return urls
