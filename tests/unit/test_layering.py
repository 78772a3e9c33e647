"""The package's imports go one way, from the edges to the core, with no cycle of any kind.

Read from the source with ``ast``, so ``TYPE_CHECKING`` and function-local imports count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fnhost

PACKAGE = Path(fnhost.__file__).resolve().parent

# Lower ranks are nearer the core; a module may import only its own rank or lower.
RANK = {
    "fnhost.errors": 0,
    "fnhost.observability": 1,
    "fnhost.execution": 2,
    "fnhost.control": 3,
    "fnhost.api": 4,
    "fnhost.v1": 4,  # generated stubs: the API edge's wire types
    "fnhost.client": 5,
    "fnhost.client_layers": 5,
    "fnhost.client_stream": 5,
    "fnhost.client_async": 5,
    "fnhost.client_esm": 5,
    "fnhost.systemd": 5,
    "fnhost.daemon": 6,
    "fnhost.stdin_stream": 6,
    "fnhost.testing": 7,
    "fnhost.cli": 7,
    "fnhost.__main__": 8,
    "fnhost": 0,  # fnhost/__init__.py
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _rank(module: str) -> int:
    while module not in RANK:
        module = module.rpartition(".")[0]
    return RANK[module]


def _imports(path: Path) -> set[str]:
    return _imports_in(path.read_text(), _module_name(path), is_package=path.name == "__init__.py")


def _imports_in(source: str, here: str, *, is_package: bool = False) -> set[str]:
    package = here if is_package else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fnhost"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("fnhost"):
                continue
            for alias in node.names:  # `from . import x` names a module; `from .m import x` a member
                candidate = f"{module}.{alias.name}"
                is_module = (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py").exists() or \
                    (PACKAGE.parent / Path(*candidate.split("."))).is_dir()
                found.add(candidate if is_module else module)
    found.discard(here)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py") if "v1" not in p.parts}


def test_imports_point_from_the_edges_to_the_core() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if target != "fnhost" and _rank(target) > _rank(module)
    ]
    assert wrong == []


def test_no_import_cycles() -> None:
    graph = _graph()
    modules = {m for m in graph}
    # A package's __init__ imports nothing here; edges to a package mean its __init__.
    edges = {m: {t for t in targets if t in modules} for m, targets in graph.items()}
    cycle: list[str] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                cycle.extend(path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt])
                return True
            if nxt not in state and visit(nxt, path + [node]):
                return True
        state[node] = 2
        return False

    for module in sorted(modules):
        if module not in state and visit(module, []):
            break
    assert cycle == [], " -> ".join(cycle)


def test_the_checker_sees_a_wrong_way_import() -> None:
    """An execution-plane module importing the control plane, even only for type checking."""
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..control import config\n"
    found = _imports_in(source, "fnhost.execution.probe")
    assert found == {"fnhost.control.config"}
    assert _rank("fnhost.control.config") > _rank("fnhost.execution.probe")
