"""The layout's promises (README "How it is built"), read from the source itself: the import
graph has no circle, no project import hides inside a function, nothing imports upwards
(the shared nouns at the root know neither process; the web side does not reach into the
worker's runtime, fetcher or page job; parsers do no I/O), and README's folder tree names
every module, one line each, and no module that is gone."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from config import PROJECT_ROOT

SOURCE_FOLDERS = ("web", "jobs", "parsers", "cli")  # with the root's own modules: the project's code
ENTRY_POINTS = {"server", "launch", "gunicorn.conf"}  # the root's modules that start a process
WORKER_SIDE = ("jobs.worker", "jobs.fetch", "jobs.tasks")  # what only a worker process runs


def project_files() -> dict[str, Path]:
    """Module name -> file, for every module of the project (not tests, bench or scripts)."""
    files = {path.stem: path for path in PROJECT_ROOT.glob("*.py")}
    for folder in SOURCE_FOLDERS:
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


MODULES = project_files()


def imported_module(name: str) -> str | None:
    """The project module an import names (the longest known prefix), or None for a library."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [f"{node.module}.{alias.name}" for alias in node.names]
    return []


def edges(module: str) -> list[tuple[str, ast.AST]]:
    """(imported project module, import statement) for every project import in a module."""
    tree = ast.parse(MODULES[module].read_text())
    found = []
    for node in ast.walk(tree):
        for name in imports_of(node):
            target = imported_module(name)
            if target and target != module and not module.startswith(target + "."):
                found.append((target, node))
    return found


GRAPH = {module: {target for target, _ in edges(module)} for module in MODULES}


def circles() -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []
    for start in GRAPH:
        if start in index:
            continue
        work = [(start, iter(sorted(GRAPH[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                work.append((child, iter(sorted(GRAPH[child]))))
            elif child in stack:
                low[node] = min(low[node], index[child])
    return found


def side(module: str) -> str:
    top = module.split(".")[0]
    if top in SOURCE_FOLDERS:
        return top
    return "entry" if module in ENTRY_POINTS else "shared"


def test_the_import_graph_has_no_circle():
    assert circles() == []


def test_no_project_import_hides_inside_a_function():
    hidden = []
    for module, path in MODULES.items():
        for function in ast.walk(ast.parse(path.read_text())):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                hidden += [f"{module}:{node.lineno}" for node in ast.walk(function)
                           for name in imports_of(node) if imported_module(name)]
    assert hidden == []


ALLOWED = {  # side -> the sides it may import
    "shared": {"shared"},
    "parsers": {"parsers", "shared"},
    "jobs": {"jobs", "parsers", "shared"},
    "web": {"web", "jobs", "parsers", "shared"},
    "cli": {"cli"},
    "entry": {"web", "jobs", "parsers", "shared", "entry"},
}


def test_nothing_imports_upwards():
    upward = [f"{module} -> {target}" for module, targets in GRAPH.items() for target in targets
              if side(target) not in ALLOWED[side(module)]]
    assert upward == []


def test_the_web_side_does_not_reach_into_the_worker():
    reaching = [f"{module} -> {target}" for module, targets in GRAPH.items() if side(module) == "web"
                for target in targets if target.startswith(WORKER_SIDE)]
    assert reaching == []


TREE_LINE = re.compile(r"^(?P<path>[\w./-]+?)(?:,\s*[\w./-]+)*\s{2,}\S", re.M)


def readme_tree() -> list[str]:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## How it is built", 1)[1]
    block = section.split("```", 2)[1]
    return [match["path"] for match in TREE_LINE.finditer(block)]


def test_readme_tree_names_every_module_once_and_nothing_that_is_gone():
    listed = readme_tree()
    files = {str(path.relative_to(PROJECT_ROOT)) for path in MODULES.values()}
    named = [path for path in listed if path.endswith(".py")]
    assert sorted(set(files) - set(named)) == []
    assert sorted(set(named) - files) == []
    assert len(named) == len(set(named))
