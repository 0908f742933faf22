"""This install's version: the installed distribution's (`imgproxy-server`), or, for a source
tree no installer has seen, the one its pyproject.toml names."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

DISTRIBUTION = "imgproxy-server"
UNKNOWN = "0+unknown"  # PEP 440: sorts below any release, says it is not one


def _version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text())["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return UNKNOWN
    if project.get("name") != DISTRIBUTION:  # some other project's file beside site-packages
        return UNKNOWN
    return str(project.get("version", UNKNOWN))


VERSION = _version()
