"""A guide under examples/guides/, followed as a reader would: its ```sh lines run in order,
its file blocks (```python file=PATH [append]) written into the project folder, and a server
a line starts (`runserver`, `uvicorn`, `--port`) left running on a free port for the test."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import free_port, running

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
SERVER_PORT = re.compile(r"(?<=--port )\d+|(?<=runserver 127\.0\.0\.1:)\d+")


@dataclass(frozen=True)
class Block:
    language: str
    file: str | None
    append: bool
    text: str


def blocks(guide: Path) -> list[Block]:
    found = []
    for language, info, text in FENCE.findall(guide.read_text()):
        words = info.split()
        file = next((w.removeprefix("file=") for w in words if w.startswith("file=")), None)
        found.append(Block(language, file, "append" in words, text))
    return found


def extras() -> set[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(pyproject["project"]["optional-dependencies"])


@dataclass
class Project:
    folder: Path
    outputs: list[str] = field(default_factory=list)
    base: str | None = None  # the server a line started, once one did


def _command(line: str) -> tuple[dict[str, str], list[str]]:
    """`VAR=x python a.py` -> ({VAR: x}, [this interpreter, a.py]); the guide's `python`,
    `django-admin`, `uvicorn` and `flask` are this interpreter's."""
    words = shlex.split(line)
    env = {}
    while "=" in words[0]:
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    programs = {
        "python": [sys.executable],
        "django-admin": [sys.executable, "-m", "django"],
        "uvicorn": [sys.executable, "-m", "uvicorn"],
        "flask": [sys.executable, "-m", "flask"],
    }
    return env, programs[words[0]] + words[1:]


def _pip(line: str) -> None:
    """Not run (the test's environment has every extra): the extras it names must exist."""
    assert line.split()[2].strip('"').startswith("imgproxy-server"), line
    named = re.findall(r"\[([a-z0-9,]+)\]", line)
    for group in named:
        assert set(group.split(",")) <= extras(), line


@contextmanager
def follow(guide: Path, folder: Path, *, timeout: float = 60) -> Iterator[Project]:
    """Follow `guide` in `folder`; yields with its server (if any) still running."""
    project = Project(folder)
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    with ExitStack() as servers:
        for block in blocks(guide):
            if block.file is not None:
                target = folder / block.file
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("a" if block.append else "w") as out:
                    out.write(("\n" if block.append else "") + block.text)
                continue
            if block.language != "sh":
                continue
            for line in block.text.splitlines():
                if not line.strip() or line.startswith("#"):
                    continue
                if line.startswith("pip install"):
                    _pip(line)
                    continue
                port = free_port()
                line, started = SERVER_PORT.subn(str(port), line)
                env, command = _command(line)
                if started:
                    process = servers.enter_context(
                        running(command, port, line, cwd=folder, env={**environment, **env})
                    )
                    project.base = f"http://127.0.0.1:{port}"
                    assert process.poll() is None
                    continue
                done = subprocess.run(
                    command,
                    cwd=folder,
                    env={**environment, **env},
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                )
                assert done.returncode == 0, (line, done.stdout, done.stderr)
                project.outputs.append(done.stdout)
        yield project
