"""The package's shape (docs/architecture.md): stages talk through files, never through each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "focalinfer"
STAGES = ("preprocess", "export", "precision", "atc", "infer", "postprocess")


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
                                           "errors", "util", "machine", "runlock")))
def test_shared_modules_import_no_stage(module):
    stages = sorted(i for i in _imports(MODULES[module], module) if _stage_of(i))
    assert not stages, f"{module} is shared by the stages but imports {stages}"


def _top_level_imports(path: Path, module: str) -> set[str]:
    """focalinfer modules imported when ``module`` is imported (module-level statements only)."""
    tree = ast.parse(path.read_text())
    body = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    found = set()
    for node in body:
        found |= _imports_of_node(node, path, module)
    return {m for m in found if m in MODULES}


def _imports_of_node(node, path, module):
    wrapper = ast.Module(body=[node], type_ignores=[])
    tmp_names = set()
    for sub in ast.walk(wrapper):
        if isinstance(sub, ast.Import):
            tmp_names.update(a.name for a in sub.names)
        elif isinstance(sub, ast.ImportFrom):
            tmp_names.add(sub.module or "")
            tmp_names.update(f"{sub.module}.{a.name}" for a in sub.names)
    return {n for n in tmp_names if n.startswith("focalinfer")}


def test_no_import_cycles():
    graph = {m: _top_level_imports(p, m) - {m} for m, p in MODULES.items()}
    # A package's own __init__ re-exporting its modules is not a cycle.
    for m in graph:
        graph[m] = {d for d in graph[m] if not (m.startswith(d + ".") and MODULES[d].name == "__init__.py")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
