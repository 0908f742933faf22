"""The package's import graph, read from the code (ast), and the layers it must respect.

`python -m tests.support.architecture` prints the diagram ARCHITECTURE.md shows;
tests/test_architecture.py checks that copy is current, that no module imports from
a layer above its own, that there is no import cycle, and that choosing a variant never
loads Pillow.
"""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import imgproxy

PACKAGE = Path(imgproxy.__file__).parent
GROUPED = (
    "cache",
    "contrib",
    "dialects",
    "headers",
    "render",
    "server",
    "stores",
)  # drawn as one room each

# Top to bottom. A module may import from its own layer or the ones below, never above.
LAYERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("edges", "translate a framework to ImageRequest", (
        "__main__", "__init__", "server/", "maintenance", "asgi", "wsgi", "contrib/",
    )),
    ("pipeline", "the SPEC §10 stages, in order", ("pipeline",)),
    ("root", "builds everything once from Settings", ("services",)),
    ("stages", "URL, source, variant: judged and remembered", (
        "targets", "source", "sharing", "variant", "watermarks",
    )),
    ("parts", "one concern each", (
        "cache/", "dialects/", "render/", "stores/", "mounts", "presets", "response", "urls",
        "params", "param_values", "query_string", "paths", "geometry", "signing", "policy",
        "negotiation", "job", "inspection", "fetching", "cdn", "responsive", "hints",
    )),
    ("values", "plain values and pure functions", (
        "settings", "sections", "errors", "messages", "facts", "formats", "conditional", "memo",
        "metrics", "timing", "forks", "extras", "logs", "coercion", "store_options", "headers/",
        "version",
    )),
)  # fmt: skip
WIDTH = 80
INDENT = " " * 18
BEGIN = "<!-- architecture: `python -m tests.support.architecture` draws it; a test checks it -->"
END = "<!-- /architecture -->"


def module_name(path: Path) -> str:
    """imgproxy/cache/disk.py -> 'cache.disk'; imgproxy/pipeline.py -> 'pipeline'."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if len(parts) > 1 and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def room(module: str) -> str:
    """The diagram's name for a module: a grouped package's modules are one room."""
    head = module.split(".")[0]
    return f"{head}/" if head in GROUPED else head


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _target(dotted: str) -> str:
    return dotted.removeprefix("imgproxy").lstrip(".") or "__init__"


def _imported(path: Path, known: set[str], *, runtime_only: bool) -> Iterator[str]:
    """imgproxy modules a file imports: at module level only, when `runtime_only` (imports
    inside functions or under TYPE_CHECKING load nothing when the module is imported)."""
    tree = ast.parse(path.read_text())
    nodes: list[ast.stmt] = list(tree.body)
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.If) and _type_checking(node):
            if not runtime_only:
                nodes.extend(node.body)
            continue
        if isinstance(node, ast.Import):
            yield from (_target(a.name) for a in node.names if a.name.startswith("imgproxy"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("imgproxy"):
            assert node.module is not None
            # `from imgproxy import render` imports a module; `from imgproxy.x import Y` a name.
            names = [_target(f"{node.module}.{a.name}") for a in node.names]
            yield from (n for n in names if n in known)
            if not all(n in known for n in names):
                yield _target(node.module)
        elif not runtime_only or isinstance(node, ast.If | ast.Try):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    nodes.append(child)


def imports(*, runtime_only: bool = False) -> dict[str, set[str]]:
    """module -> the package's modules it imports (names that are not modules dropped)."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        found = set()
        for target in _imported(path, set(known), runtime_only=runtime_only):
            if target in known and target != name:
                found.add(target)
        graph[name] = found
    return graph


def layer_of(module: str) -> int:
    name = room(module)
    for index, (_, _, members) in enumerate(LAYERS):
        if name in members:
            return index
    raise LookupError(f"{module} is in no layer: add it to tests/support/architecture.py LAYERS")


def rooms() -> dict[str, set[str]]:
    """room -> the rooms it imports, grouped packages folded into one room."""
    graph: dict[str, set[str]] = {}
    for module, targets in imports().items():
        here = room(module)
        graph.setdefault(here, set()).update(room(t) for t in targets if room(t) != here)
    return graph


def summary(member: str) -> str:
    """The first line of the room's docstring (a package's __init__.py speaks for it)."""
    path = PACKAGE / member / "__init__.py" if member.endswith("/") else PACKAGE / f"{member}.py"
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    return re.split(r"(?<=\.)\s", paragraph)[0].rstrip(".")


def diagram() -> str:
    graph = rooms()
    lines = []
    for index, (layer, purpose, members) in enumerate(LAYERS):
        if index:
            lines.append("   │")
        lines.append(f"{layer.upper()}: {purpose}")
        for member in members:
            name = member if member.endswith("/") else f"{member}.py"
            said = textwrap.wrap(summary(member), WIDTH) or [""]
            lines.append(f"  {name:<15} {said[0]}".rstrip())
            lines.extend(INDENT + text for text in said[1:])
            below = sorted(graph.get(member, set()))
            if below:
                arrows = textwrap.wrap("→ " + ", ".join(below), WIDTH)
                lines.extend(INDENT + ("  " if n else "") + text for n, text in enumerate(arrows))
    return "\n".join(lines)


def markdown_block() -> str:
    """The diagram as ARCHITECTURE.md holds it, between its markers."""
    return f"{BEGIN}\n```\n{diagram()}\n```\n{END}"


if __name__ == "__main__":
    sys.stdout.write(markdown_block() + "\n")
