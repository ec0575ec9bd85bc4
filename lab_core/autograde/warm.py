"""Warm kernels for nbgrader: a zygote for one notebook and a ``python3`` kernelspec that forks from it.

``nbgrader autograde`` (and any Jupyter client) finds kernels by name through ``JUPYTER_PATH``;
:func:`warm_kernels` yields the environment that puts a ``python3`` kernelspec whose command is
:mod:`lab_core.autograde.launcher` first on that path. nbgrader itself is unchanged: it still
restores the locked and hidden test cells, executes every cell in order with its timeout, and
scores each test cell from its outputs. Only the kernel's start differs.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nbformat

from lab_core.procs import stop_process, wait_until

LAUNCHER = Path(__file__).with_name("launcher.py")


def _nbgrader_meta(cell: nbformat.NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _imports(source: str) -> list[ast.stmt]:
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython syntax (magics); its imports are simply not preloaded
        return []
    return [
        node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "level", 0) == 0
    ]


def _modules(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    return {node.module or ""}


def preload_statements(notebook: nbformat.NotebookNode) -> list[str]:
    """The top-level import statements of the notebook's ungraded cells, in order.

    Cells the student writes or that are graded are left out, and so is any module such a cell
    imports before an ungraded one does: whatever a first import prints (a warning on stderr,
    which nbgrader scores as a failure) must happen in the same cell in a warm kernel as in a cold one.
    """
    statements: list[str] = []
    graded_first: set[str] = set()
    seen: set[str] = set()
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        meta = _nbgrader_meta(cell)
        student_or_graded = bool(meta.get("solution") or meta.get("grade"))
        for node in _imports(cell.source):
            modules = _modules(node)
            if student_or_graded:
                graded_first |= modules - seen
                continue
            if modules & graded_first:
                continue
            seen |= modules
            statement = ast.unparse(node)
            if statement not in statements:
                statements.append(statement)
    return statements


def kernelspec_folder(root: Path, socket_path: Path) -> Path:
    """Write ``root/kernels/python3/kernel.json`` for the launcher; return ``root`` (a JUPYTER_PATH entry)."""
    folder = root / "kernels" / "python3"
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, str(LAUNCHER), str(socket_path), "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel, warm)",
        "language": "python",
        "interrupt_mode": "signal",
        "metadata": {"debugger": False},
    }
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
    return root


@contextlib.contextmanager
def warm_kernels(
    statements: list[str], env: dict[str, str] | None = None, *, sandbox: bool = True, timeout: float = 120.0
) -> Iterator[dict[str, str]]:
    """Start a zygote that has run ``statements``; yield ``env`` plus the ``JUPYTER_PATH`` that
    makes Jupyter's ``python3`` kernels forks of it. The zygote and its kernels end on exit.

    ``env`` is the environment the kernels would have had (it is the zygote's too, so modules
    that read it at import see the same values). ``sandbox=False`` lets kernels write anywhere.
    """
    base = dict(os.environ if env is None else env)
    # A short path: Unix socket paths are limited to about 100 bytes.
    work = Path(tempfile.mkdtemp(prefix="syslab-warm-"))
    socket_path = work / "zygote.sock"
    (work / "preload.json").write_text(json.dumps(statements))
    log = work / "zygote.log"
    cmd = [
        sys.executable,
        "-m",
        "lab_core.autograde.zygote",
        "--socket",
        str(socket_path),
        "--preload",
        str(work / "preload.json"),
        *([] if sandbox else ["--no-sandbox"]),
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=base, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_until(socket_path.exists, proc, timeout=timeout, what="warm-kernel zygote", log=log)
        jupyter_path = os.pathsep.join(
            filter(None, [str(kernelspec_folder(work / "jupyter", socket_path)), base.get("JUPYTER_PATH")])
        )
        yield {**base, "JUPYTER_PATH": jupyter_path}
    finally:
        stop_process(proc, timeout=10)
        shutil.rmtree(work, ignore_errors=True)
