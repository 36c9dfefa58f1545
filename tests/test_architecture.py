"""The shape of the code, checked: small modules, `portal` using no app, no import circle across sub-packages,
models that import no procedure, and one module that starts programs."""

from __future__ import annotations

import ast
import re
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


RUNNER = "portal.programs"
ARCHIVE_COMMAND = "backups.wal.walarchive"  # run by PostgreSQL without Django: it spawns zstd itself
PROCESS_MODULES = {"subprocess", "pty", "multiprocessing"}
OS_STARTERS = re.compile(r"(system|popen|fork|forkpty|posix_spawnp?|exec[lv]p?e?|spawn[lv]p?e?)")
ASYNC_STARTERS = {"create_subprocess_exec", "create_subprocess_shell"}
ARCHIVE_COMMAND_OWN = {"Child", "run_zstd", "open_content", "close_content", "same_content"}


def starters_among(module: str, names: set[str]) -> set[str]:
    """The names imported from `module` that start a process."""
    if module.split(".")[0] in PROCESS_MODULES:
        return names
    if module == "os":
        return {name for name in names if OS_STARTERS.fullmatch(name)}
    if module == "asyncio":
        return names & ASYNC_STARTERS
    return names & ARCHIVE_COMMAND_OWN if module.endswith("walarchive") else set()


def starts_a_process(owner: str, name: str) -> bool:
    """`owner.name` (a module's attribute) starts a process."""
    return owner in PROCESS_MODULES or bool(starters_among(owner, {name}))


def process_starts(source: str) -> list[str]:
    """Every way `source` starts a process, or could: an import of subprocess, pty or multiprocessing (or of what
    starts one from os, asyncio or the archive command), a call of os.system, os.popen, os.fork, os.posix_spawn,
    an os.exec* or os.spawn*, and the archive command's own way of running zstd."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in PROCESS_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = starters_among(node.module, {alias.name for alias in node.names})
            found += [f"from {node.module} import {name}" for name in sorted(names)]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if starts_a_process(node.value.id, node.attr):
                found.append(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.Call) and any(isinstance(a, ast.Constant) and a.value in PROCESS_MODULES
                                                for a in node.args):  # __import__("subprocess"), import_module(...)
            found.append(ast.unparse(node))
    return found


def test_no_module_outside_the_runner_starts_a_process():
    """Every program starts in portal/programs.py (time limit, session, job tag, scrubbed environment, OS user,
    one typed error); the standalone archive command, run by PostgreSQL without Django, is the one exception."""
    starting = {name: found for name, path in MODULES.items()
                if name not in (RUNNER, ARCHIVE_COMMAND) and (found := process_starts(path.read_text()))}
    assert starting == {}
    assert process_starts(MODULES[RUNNER].read_text()) and process_starts(MODULES[ARCHIVE_COMMAND].read_text()), \
        "the check sees the two modules that do start processes"


@pytest.mark.parametrize("source", [
    "import subprocess",
    "import subprocess as sp",
    "from subprocess import run",
    "import multiprocessing.pool",
    "import pty\npty.spawn(['sh'])",
    "import os\nos.system('ls')",
    "import os\nos.popen('ls')",
    "import os\nos.execvp('ls', ['ls'])",
    "import os\nos.execl('/bin/ls', 'ls')",
    "import os\nos.spawnlp(os.P_WAIT, 'ls', 'ls')",
    "import os\npid = os.fork()",
    "import os\nos.forkpty()",
    "import os\nos.posix_spawn('/bin/ls', ['ls'], {})",
    "from os import posix_spawnp",
    "from os import execv as run",
    "import asyncio\nasyncio.create_subprocess_exec('ls')",
    "from asyncio import create_subprocess_shell",
    "from backups.wal import walarchive\nwalarchive.open_content(path)",
    "from backups.wal.walarchive import Child",
    "def late():\n    import subprocess\n    subprocess.run(['ls'])",
    "proc = __import__('subprocess')",
    "import importlib\nimportlib.import_module('pty')",
])
def test_the_check_finds_each_way_of_starting_a_process(source: str):
    assert process_starts(source) != []


def test_the_check_lets_signals_and_the_runner_be():
    source = ("import os\nfrom portal import programs\nos.kill(1, 9)\nos.killpg(1, 15)\nos.getpid()\n"
              "programs.run(['/bin/true'], timeout=5)\nfrom backups.wal import walarchive\nwalarchive.zstd_program()")
    assert process_starts(source) == []
