"""The public API is exactly __all__, and the layering holds: the core is framework-free and
only the render package touches Pillow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import imgproxy
import imgproxy.stores

PACKAGE = Path(imgproxy.__file__).parent
# The edges that translate a framework (imgproxy/server/ is the program: all of it is edge).
EDGES = {"asgi.py", "wsgi.py"}
# Each optional dependency (an extra, pyproject.toml) is imported by these modules only, so
# an install without it still imports and serves everything else.
OPTIONAL = {
    "uvicorn": {"serving.py", "worker.py", "connections.py"},
    "redis": {"redis.py"},
    "asyncpg": {"postgres.py"},
    "tqdm": {"tools.py"},
    "obstore": {"s3.py", "objects.py"},
    "pi_heif": {"heif.py"},
}
# A framework imported inside the one method only its users call (Fetched.content_file).
FRAMEWORK_ON_USE = {"fetching.py": {"django"}}


def test_exported_members() -> None:
    assert imgproxy.__all__ == sorted(imgproxy.__all__)
    public = {name for name in dir(imgproxy) if not name.startswith("_")}
    submodules = {p.stem for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    assert public - submodules == set(imgproxy.__all__)


def test_version_is_the_installed_distribution_s() -> None:
    """`__version__` is public but not in `__all__`: a star import binds no dunder."""
    import importlib.metadata

    assert imgproxy.__version__ == importlib.metadata.version("imgproxy-server")
    assert "__version__" not in imgproxy.__all__


@pytest.mark.parametrize("name", ["imgproxy-server", "someone-else"])
def test_a_source_tree_no_installer_saw_reads_its_pyproject(tmp_path: Path, name: str) -> None:
    """Without the distribution's metadata (python -S: no site-packages), the version is the
    one of the pyproject.toml beside the package, if it is this project's."""
    import tomllib

    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    version = tomllib.loads(pyproject)["project"]["version"]
    (tmp_path / "imgproxy").mkdir()
    (tmp_path / "imgproxy" / "__init__.py").write_text("")
    (tmp_path / "imgproxy" / "version.py").write_bytes((PACKAGE / "version.py").read_bytes())
    (tmp_path / "pyproject.toml").write_text(pyproject.replace("imgproxy-server", name, 1))
    code = "import imgproxy.version as v; print(v.VERSION)"
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (version if name == "imgproxy-server" else "0+unknown")


def test_exported_stores() -> None:
    """SPEC §8: the built-in kinds, the protocols and the factory, and nothing else."""
    stores = imgproxy.stores
    assert stores.__all__ == sorted(stores.__all__)
    public = {name for name in dir(stores) if not name.startswith("_")}
    submodules = {p.stem for p in Path(stores.__file__).parent.glob("*.py")}
    assert public - submodules == set(stores.__all__)
    assert {"FileSystemStore", "HTTPStore", "SQLStore", "Store", "StoredFile"} <= public


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


def modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "contrib" not in p.parts]


def test_only_edges_import_web_frameworks_and_servers() -> None:
    for path in modules():
        if path.name in EDGES or "server" in path.relative_to(PACKAGE).parts:
            continue
        allowed = FRAMEWORK_ON_USE.get(path.name, set())
        frameworks = {"starlette", "uvicorn", "a2wsgi", "django", "flask"} - allowed
        assert not imports(path) & frameworks, path


def test_only_the_render_package_imports_pillow() -> None:
    for path in modules():
        if "render" in path.relative_to(PACKAGE).parts:
            continue
        assert "PIL" not in imports(path), path


def test_optional_dependencies_stay_in_their_modules() -> None:
    for path in modules():
        for module, owners in OPTIONAL.items():
            if path.name not in owners:
                assert module not in imports(path), path
