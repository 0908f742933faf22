"""thumbor 7.8.0 itself, as the reference the thumbor dialect is measured against: its venv
(made once from thumbor-requirements.txt, pinned with hashes, kept in .test-venvs/) and a
server on a free loopback port with a file loader over a folder.

Without the venv (no network, another platform) the tests skip loudly, or fail when
IMGPROXY_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import REQUIRE_SERVICES
from tests.support.processes import ROOT, free_port, running

REQUIREMENTS = Path(__file__).with_name("thumbor-requirements.txt")
VENV = ROOT / ".test-venvs" / "thumbor-7.8.0"


def thumbor_venv() -> Path:
    """The venv's `thumbor` program, built on first use (about a minute; then reused). A
    marker file says the build finished: a half-built venv is rebuilt."""
    program, built = VENV / "bin" / "thumbor", VENV / "built-from-requirements"
    if built.exists() and built.read_bytes() == REQUIREMENTS.read_bytes():
        return program
    shutil.rmtree(VENV, ignore_errors=True)
    python = str(VENV / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet", "--no-deps", "--require-hashes"]
    for step in ([sys.executable, "-m", "venv", str(VENV)], [*pip, "-r", str(REQUIREMENTS)]):
        done = subprocess.run(step, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            message = f"*** thumbor 7.8.0's venv could not be built: {done.stderr[-1500:]} ***"
            if REQUIRE_SERVICES:
                pytest.fail(message + " (IMGPROXY_REQUIRE_SERVICES=1)")
            pytest.skip(message)
    built.write_bytes(REQUIREMENTS.read_bytes())
    return program


@contextmanager
def thumbor_server(root: Path, *, security_key: str) -> Iterator[str]:
    """thumbor serving the files under `root`: no storage, no result storage, EXIF
    orientation respected (as this server always does), quality 95 to keep JPEG noise out
    of pixel comparisons; yields its base URL."""
    program = thumbor_venv()
    conf = root.parent / "thumbor.conf"
    conf.write_text(
        "LOADER = 'thumbor.loaders.file_loader'\n"
        f"FILE_LOADER_ROOT_PATH = {str(root)!r}\n"
        "STORAGE = 'thumbor.storages.no_storage'\n"
        "RESULT_STORAGE = None\n"
        f"SECURITY_KEY = {security_key!r}\n"
        "ALLOW_UNSAFE_URL = True\n"
        "RESPECT_ORIENTATION = True\n"
        "QUALITY = 95\n"
    )
    port = free_port()
    command = [str(program), "-c", str(conf), "-i", "127.0.0.1", "-p", str(port), "-l", "error"]
    with running(command, port, "thumbor"):
        yield f"http://127.0.0.1:{port}"
