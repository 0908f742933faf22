"""The package's shape, checked from its real imports: ARCHITECTURE.md's diagram is current, no
module imports from a layer above its own, no import cycle, and the variant stage (headers,
ETags, 304s) never loads Pillow."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import architecture

ARCHITECTURE = Path(__file__).resolve().parent.parent / "ARCHITECTURE.md"


def test_every_module_has_a_layer() -> None:
    for module in architecture.modules():
        architecture.layer_of(module)  # raises for a module no layer names


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = [
        (module, target)
        for module, targets in architecture.imports().items()
        for target in targets
        if architecture.layer_of(target) < architecture.layer_of(module)
    ]
    assert upward == []


PROGRAM_ONLY = ("uvicorn", "tqdm", "imgproxy.server")


def _imported_names(path: Path) -> set[str]:
    """Every module an import statement in `path` names, at any depth (lazy imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_the_program_imports_the_server_and_its_libraries() -> None:
    """The library a web app embeds never loads the server's dependencies (the `server`
    extra) nor the program (imgproxy/server/); the program is free to use the library."""
    package = architecture.PACKAGE
    offending = {
        str(path.relative_to(package)): sorted(
            name
            for name in _imported_names(path)
            if name.split(".")[0] in PROGRAM_ONLY or name.startswith("imgproxy.server")
        )
        for path in package.rglob("*.py")
        if path.relative_to(package).parts[0] not in ("server", "__main__.py")
    }
    assert {path: names for path, names in offending.items() if names} == {}


def test_no_import_cycles() -> None:
    graph = architecture.imports()
    done: set[str] = set()

    def visit(module: str, trail: tuple[str, ...]) -> None:
        assert module not in trail, " -> ".join((*trail, module))
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, (*trail, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())


def loaded_by(module: str) -> set[str]:
    """Every package module importing `module` runs (module-level imports, not the ones
    under TYPE_CHECKING or inside functions)."""
    graph = architecture.imports(runtime_only=True)
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(graph[current])
    return seen


def test_choosing_a_variant_loads_no_pillow() -> None:
    for module in ("variant", "targets", "response", "urls", "settings"):
        assert not {m for m in loaded_by(module) if m.startswith("render")}, module


def test_the_checker_sees_pillow_where_it_is() -> None:
    assert "render" in loaded_by("pipeline")


def test_the_architecture_diagram_is_current() -> None:
    """Regenerate with `python -m tests.support.architecture` and paste between the markers
    of ARCHITECTURE.md."""
    text = ARCHITECTURE.read_text()
    begin = text.index(architecture.BEGIN)
    end = text.index(architecture.END) + len(architecture.END)
    assert text[begin:end] == architecture.markdown_block()


def test_the_architecture_names_every_test_folder() -> None:
    folders = {
        p.name
        for p in ARCHITECTURE.parent.joinpath("tests").iterdir()
        if (p / "__init__.py").exists()
    }
    text = ARCHITECTURE.read_text()
    assert {f for f in folders if f"`tests/{f}/`" not in text} == set()
