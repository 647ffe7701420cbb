"""The package's structure: its modules import each other without a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import clustermine


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, package: Path, modules: set[str]) -> set[str]:
    """The modules of ``package`` that ``path`` imports, function-level imports included (they
    only hide a cycle); imports under ``if TYPE_CHECKING:`` (annotations only) are left out."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in node.body
        for inner in ast.walk(child)
    }
    name = module_name(path, package)
    parent = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = parent.split(".")[: len(parent.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return (found & modules) - {name}


def import_graph(package: Path) -> dict[str, set[str]]:
    paths = sorted(package.rglob("*.py"))
    modules = {module_name(p, package) for p in paths}
    return {module_name(p, package): imported_modules(p, package, modules) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        for other in sorted(graph[module]):
            found = visit(other, path + [module])
            if found:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module, [])
        if found:
            return found
    return None


def test_the_cycle_finder_sees_a_cycle_hidden_in_a_function(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .d import D\n")
    (package / "sub" / "d.py").write_text("D = 1\n")
    (package / "a.py").write_text("from pkg.b import f\nfrom pkg.c import C\n")
    (package / "b.py").write_text("def f():\n    from . import a\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from .sub import D\n"
        "C = D\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.a import f\n"
    )
    graph = import_graph(package)
    assert graph["pkg.b"] == {"pkg.a"}  # the relative import inside a function
    assert graph["pkg.c"] == {"pkg.sub"}  # not pkg.a: an annotation's import
    assert graph["pkg.sub"] == {"pkg.sub.d"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    (package / "b.py").write_text("def f():\n    pass\n")
    assert find_cycle(import_graph(package)) is None


def test_no_module_of_the_package_imports_back_into_a_cycle():
    graph = import_graph(Path(clustermine.__file__).parent)
    assert "clustermine.catalog.plugin" in graph["clustermine.catalog.miners"]
    assert "clustermine.config.checks" in graph["clustermine.config.workflow"]
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"
