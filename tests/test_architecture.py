"""The layout rules the style guide sets, checked on the source: core knows no chat library,
adapters go through the service, no import circles, no class far over 400 lines."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "bots", "benchmarks")
CHAT_LIBRARIES = ("telegram", "discord")
MAX_CLASS_LINES = 400


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield name, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _imports(name: str, tree: ast.Module) -> set[str]:
    """The modules `name` imports at run time (imports under `if TYPE_CHECKING:` left out)."""
    found: set[str] = set()
    typing_only = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for child in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in NAMES else node.module)
    return found


MODULES = dict(_modules())
NAMES = set(MODULES)
IMPORTS = {name: _imports(name, tree) for name, tree in MODULES.items()}


def test_core_imports_no_chat_library_and_nothing_above_it() -> None:
    for name, imported in IMPORTS.items():
        if name.split(".")[0] != "core":
            continue
        for module in imported:
            top = module.split(".")[0]
            assert top not in (*CHAT_LIBRARIES, "bots", "benchmarks"), f"{name} imports {module}"


def test_adapters_go_through_the_service() -> None:
    for name, tree in MODULES.items():
        if not name.startswith(("bots.telegram", "bots.discord")):
            continue
        for module in IMPORTS[name]:
            assert not module.startswith("core.store"), f"{name} imports {module}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("store", "policy"):
                assert not ast.unparse(node.value).endswith("service"), (
                    f"{name}:{node.lineno} reads {ast.unparse(node)}"
                )


def test_no_import_circles() -> None:
    graph = {
        name: {m for m in imported if m in MODULES and m != name}
        for name, imported in IMPORTS.items()
    }
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(node) :], node]))
        if node in done:
            return
        for nxt in graph[node]:
            visit(nxt, [*path, node])
        done.add(node)

    for name in graph:
        visit(name, [])


def test_no_class_over_400_lines() -> None:
    for name, tree in MODULES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                assert lines <= MAX_CLASS_LINES, f"{name}.{node.name} has {lines} lines"
