"""The code's shape: no import cycles, and arrows only point down.

Every `import` in the package is read with `ast` (those inside functions too:
a late import is still an arrow), so a new module that reaches up or round
in a circle fails here, named, before it tangles the house.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mailbridge"

# Higher imports lower, never the other way; modules of one rank do not import each other
# across packages. The command line and the demo are entrances; policy is pure.
RANKS = {
    "vocabulary": 0, "ticket_ids": 0, "errors": 0, "mail": 0, "logs": 0, "metrics": 0,
    "policy": 1,
    "config": 2, "models": 2,
    "adapters": 3, "service": 3, "journal": 3,
    "outbox": 4, "views": 4, "migrations": 4,
    "workflow": 5,
    "intake": 6, "gdpr": 6,
    "jobs": 7, "demo": 7,
    "cli": 8, "__main__": 9,
}
POLICY_MAY_IMPORT = {"vocabulary", "ticket_ids", "mail", "policy"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


GRAPH = _imports()


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mailbridge"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_is_read():
    assert len(GRAPH) > 40 and GRAPH["mailbridge.intake.store"]  # the walk found the modules and their arrows


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_a_cycle_would_be_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_has_a_rank():
    assert {_area(m) for m in GRAPH} - {"mailbridge"} <= set(RANKS)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_arrows_point_down(module):
    upward = [target for target in GRAPH[module]
              if _area(target) != _area(module) and RANKS.get(_area(target), -1) >= RANKS.get(_area(module), -1)]
    assert upward == [], f"{module} reaches up or sideways to {upward}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if _area(m) == "policy"))
def test_policy_is_pure(module):
    assert {_area(t) for t in GRAPH[module]} <= POLICY_MAY_IMPORT
