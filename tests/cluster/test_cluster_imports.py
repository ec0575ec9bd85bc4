"""Lab 09's modules import one another one way only: no loop, not even one hidden in a function
(a back-reference for type hints, under ``TYPE_CHECKING``, is not an import at run time)."""

from __future__ import annotations

import ast
from pathlib import Path

import lab_core.cluster

PACKAGE = Path(lab_core.cluster.__file__).parent


def runtime_imports(path: Path) -> set[str]:
    """The ``lab_core.cluster`` modules ``path`` imports when it runs, at any depth except ``if TYPE_CHECKING``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lab_core.cluster"):
            parts = node.module.split(".")
            found.update([parts[2]] if len(parts) > 2 else [a.name for a in node.names])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found - {path.stem}


def test_no_import_loops_inside_the_lab():
    graph = {p.stem: runtime_imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert graph["simulator"] >= {"schedulers", "view", "health", "protocol", "failures"}  # the graph is read

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(d == goal or (d not in seen and reaches(d, goal, seen | {d})) for d in graph.get(start, ()))

    loops = sorted(m for m in graph if reaches(m, m, {m}))
    assert not loops, {m: sorted(graph[m]) for m in loops}


def test_the_student_seams_live_in_protocol():
    from lab_core.cluster import protocol

    assert {"Scheduler", "Placer"} <= set(vars(protocol))
    assert runtime_imports(PACKAGE / "protocol.py") <= {"job", "model"}  # seams hold no answer and no simulator
