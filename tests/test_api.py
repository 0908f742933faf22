"""The public API is exactly __all__, and the layering holds: the core is framework-free and
only the render package touches Pillow."""

from __future__ import annotations

import ast
from pathlib import Path

import imgproxy
import imgproxy.stores

PACKAGE = Path(imgproxy.__file__).parent
# The edges that translate a framework (imgproxy/server/ is the program: all of it is edge).
EDGES = {"asgi.py", "wsgi.py"}
# Each optional dependency (an extra, pyproject.toml) is imported by these modules only, so
# an install without it still imports and serves everything else.
OPTIONAL = {
    "uvicorn": {"cli.py", "workers.py", "connections.py"},
    "prometheus_client": {"exposition.py", "workers.py"},
    "redis": {"redis.py"},
    "asyncpg": {"sql.py"},
    "tqdm": {"cli.py"},
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
