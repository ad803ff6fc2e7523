"""The tree's architecture, held: imports flow one way and nothing imports itself in a circle.

Every import statement counts, wherever it stands (module level, inside a function, under
`TYPE_CHECKING`): a lazy import is still a dependency, and a circle through one is still a circle.
`LAYERS` is the map DESIGN.md draws, bottom first: a module may import from its own subpackage and
from any layer below its own, never from a layer above nor from a neighbour in the same layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LAYERS: tuple[tuple[str, ...], ...] = (
    # Lambda's pure vocabulary: errors, the invocation and phase state machines, sample events
    ("rie.model",),
    # the HTTP/1.1 core; logs, metrics and telemetry; a function's settings and their loaders
    ("rie.http", "rie.observe", "rie.settings"),
    # one execution environment: its processes, cgroups, extensions
    ("rie.sandbox",),
    # a function = settings + a pool of environments + its Event queue
    ("rie.functions",),
    # Lambda's wire protocols on the HTTP core: Invoke, Runtime, Extensions APIs
    ("rie.api",),
    # user-facing web surfaces: the HTTP front (on the HTTP core), the dashboard (aiohttp)
    ("rie.fronts",),
    # the harness users' tests import (a public path of its own): a real rie in a subprocess
    ("rie.testing",),
    # developer tools: rie invoke / event, watch, the pytest plugin
    ("rie.dev",),
    ("rie.app",),
    ("rie.__main__",),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # `from pkg import mod` imports the module pkg.mod when there is one
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {
        _module_name(p): p for pkg in ("rie", "runtime") for p in sorted((ROOT / pkg).rglob("*.py"))
    }
    return {
        name: {imp for imp in _imports(path, name) if imp in modules and imp != name}
        for name, path in modules.items()
    }


def _layer(module: str) -> tuple[int, str] | None:
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if module == prefix or module.startswith(prefix + "."):
                return index, prefix
    return None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circles() -> None:
    assert _cycles(_graph()) == []


def test_the_check_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_rie_module_has_a_layer() -> None:
    unplaced = [m for m in _graph() if m.startswith("rie.") and _layer(m) is None]
    assert unplaced == [], "add these to LAYERS (and DESIGN.md's map)"


def test_imports_flow_down_the_layers() -> None:
    wrong = []
    for module, deps in _graph().items():
        here = _layer(module)
        if here is None:
            continue
        for dep in deps:
            there = _layer(dep)
            if there is None or there[1] == here[1]:
                continue  # the package's root, or its own subpackage
            if there[0] >= here[0]:
                wrong.append(f"{module} -> {dep}")
    assert wrong == []


@pytest.mark.parametrize(("package", "other"), [("rie", "runtime"), ("runtime", "rie")])
def test_the_emulator_and_the_runtime_meet_only_over_http(package: str, other: str) -> None:
    crossing = [
        f"{m} -> {d}"
        for m, deps in _graph().items()
        if m.split(".")[0] == package
        for d in deps
        if d.split(".")[0] == other
    ]
    assert crossing == []
