"""The package's shape (docs/architecture.md): stages talk through files, never through each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "focalinfer"
# report/ reads every stage's files through focalinfer.records, as a stage would: it imports none of them.
STAGES = ("preprocess", "export", "precision", "atc", "infer", "postprocess", "report")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, module: str) -> set[str]:
    """Every focalinfer module ``path`` imports, at any depth (lazy imports count too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return {n for n in names if n == "focalinfer" or n.startswith("focalinfer.")}


MODULES = _modules()


def _stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _stage_of(m)))
def test_a_stage_imports_no_other_stage(module):
    own = _stage_of(module)
    others = sorted(i for i in _imports(MODULES[module], module) if _stage_of(i) not in (None, own))
    assert not others, f"{module} imports another stage: {others} (stages talk through files and focalinfer.records)"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.split(".")[1:2] and m.split(".")[1] in
                                          ("layout", "records", "metrics", "backend", "registry", "defaults",
                                           "errors", "util", "machine", "atc_rules", "runlock")))
def test_shared_modules_import_no_stage(module):
    stages = sorted(i for i in _imports(MODULES[module], module) if _stage_of(i))
    assert not stages, f"{module} is shared by the stages but imports {stages}"


def _import_graph() -> dict[str, set[str]]:
    """module → the focalinfer modules it imports, at any depth: an import inside a function is a
    dependency all the same, only a later one. Importing ``a.b.c`` runs package ``a.b`` first, so
    that package counts too; a module's own packages do not (they are running when it is imported)."""
    graph = {}
    for module, path in MODULES.items():
        needed = set()
        for name in _imports(path, module) & MODULES.keys():
            parts = name.split(".")
            needed.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
        graph[module] = {d for d in needed if d in MODULES and d != module and not module.startswith(d + ".")}
    return graph


def _import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each set of modules that import one another (a strongly connected component of more than
    one module), sorted; Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(m):
        index[m] = low[m] = len(index)
        stack.append(m)
        for d in sorted(graph[m]):
            if d not in index:
                visit(d)
                low[m] = min(low[m], low[d])
            elif d in stack:
                low[m] = min(low[m], index[d])
        if low[m] == index[m]:
            component = stack[stack.index(m):]
            del stack[stack.index(m):]
            if len(component) > 1:
                circles.append(sorted(component))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return sorted(circles)


def test_import_circles_are_found_through_imports_inside_functions():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _import_circles(graph) == [["a", "b", "c"]]
    assert "focalinfer.bench.prepare" in _import_graph()["focalinfer.bench.profile"]  # imported in bench_profile()


def test_no_import_cycles():
    circles = _import_circles(_import_graph())
    assert not circles, f"modules that import one another (lazily or not): {circles}"
