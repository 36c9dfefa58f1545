"""The shape of the code, checked: small modules, `portal` using no app, no import circle across sub-packages, and
models that import no procedure."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
PACKAGES = ("portal", "backups", "recovery", "maintenance")
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (PROJECT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(PROJECT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules()


def imports_of(path: Path) -> set[str]:
    """Every project module `path` imports, at the top or inside a function (a late import is a dependency too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in MODULES}


GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def subpackage(module: str) -> str:
    path = MODULES[module]
    parts = module.split(".")
    return module if path.name == "__init__.py" else ".".join(parts[:-1])


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in GRAPH[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    return found


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_portal_imports_no_app():
    """Apps register what they contribute in their AppConfig.ready(); the core never reaches into them."""
    reaching = {name: sorted(i for i in imports if not i.startswith("portal")) for name, imports in GRAPH.items()
                if name.startswith("portal") and any(not i.startswith("portal") for i in imports)}
    assert reaching == {}


def test_no_import_circle_spans_two_subpackages():
    spanning = [component for component in cycles() if len({subpackage(m) for m in component}) > 1]
    assert spanning == []


def test_models_import_no_procedure():
    """A model module imports other models and the core's plain helpers, never the code that does the work."""
    allowed_core = {"portal.audit", "portal.jobs", "portal.models", "portal.schedules", "portal.pg", "portal.orphans",
                    "portal.instance"}
    procedures = defaultdict(list)
    for name, imports in GRAPH.items():
        if name.split(".")[-1] != "models" and ".models." not in name:
            continue
        for other in imports:
            if ".models" not in other and other != "backups.models" and other not in allowed_core:
                procedures[name].append(other)
    assert dict(procedures) == {}


@pytest.mark.parametrize("app", ["backups", "recovery"])
def test_each_app_registers_what_it_contributes_in_ready(app):
    """Registrations happen in AppConfig.ready(), not as a side effect of importing a module."""
    text = (PROJECT / app / "apps.py").read_text()
    assert "def ready(" in text
    for path in (PROJECT / app).rglob("*.py"):
        if path.name == "apps.py" or "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        calls = [node for node in tree.body if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)]
        assigned = [node for node in tree.body if isinstance(node, ast.Assign)
                    and any(isinstance(t, ast.Subscript) for t in node.targets)]
        assert not calls and not assigned, f"{path.relative_to(PROJECT)} registers something when imported"
