"""Every lab's notebooks: the solution runs clean, the blank student version fails only where the
student writes, and the committed student version is what nbgrader makes from the solution.

Run from the project's virtual environment: the ``python3`` kernel then starts this same
interpreter (jupyter_client swaps the kernelspec's bare ``python`` for ``sys.executable``), and
each execution checks that it did.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from lab_core.labs import LABS, ROOT, Lab

# The blank student version may break only in these ways: a stub, a name a stub never defined,
# a visible test that fails on the stub's absence.
BLANK_ERRORS = {"NotImplementedError", "NameError", "AssertionError"}

pytestmark = pytest.mark.notebook


@pytest.fixture(params=sorted(LABS))
def lab(request: pytest.FixtureRequest) -> Lab:
    return LABS[request.param]


def _gid(cell: nbformat.NotebookNode) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id") or cell.get("id", "?")


def _error(cell: nbformat.NotebookNode) -> nbformat.NotebookNode | None:
    return next((o for o in cell.get("outputs", []) if o.output_type == "error"), None)


def _execute(path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[nbformat.NotebookNode, float]:
    """Run every cell (errors recorded, not raised) with SYSLAB_FAST=1, in ``workdir``."""
    monkeypatch.setenv("SYSLAB_FAST", "1")
    nb = nbformat.read(path, as_version=4)
    probe = nbformat.v4.new_code_cell("import sys; print(sys.prefix)")
    nb.cells.append(probe)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=300, allow_errors=True, resources={"metadata": {"path": str(workdir)}}
    )
    started = time.perf_counter()
    client.execute()
    took = time.perf_counter() - started
    nb.cells.pop()
    printed = "".join(o.get("text", "") for o in probe.outputs if o.output_type == "stream").strip()
    assert printed == sys.prefix, f"the python3 kernel ran {printed!r}, not this environment {sys.prefix!r}"
    return nb, took


def test_solution_runs_top_to_bottom(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb, took = _execute(lab.solution, tmp_path, monkeypatch)
    failed = [(_gid(c), f"{e.ename}: {e.evalue[:500]}") for c in nb.cells if (e := _error(c))]
    assert not failed, f"solution cells failed: {failed}"
    print(f"{lab.folder} solution notebook executed in {took:.1f} s with SYSLAB_FAST=1")


def test_blank_version_fails_only_at_the_exercises(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb, _ = _execute(lab.release, tmp_path, monkeypatch)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    meta = [c.metadata.get("nbgrader", {}) for c in cells]
    first = next(i for i, m in enumerate(meta) if m.get("solution"))

    early = [(_gid(c), _error(c).ename) for c in cells[:first] if _error(c)]
    assert not early, f"cells before the first exercise must run cleanly: {early}"

    for i, m in enumerate(meta):
        if not m.get("solution"):
            continue
        # A stub cell raises itself; a class skeleton raises when its test cell first calls it.
        test_cell = next((c for c, tm in zip(cells[i + 1 :], meta[i + 1 :]) if tm.get("grade")), None)
        raised = [e.ename for e in (_error(cells[i]), test_cell and _error(test_cell)) if e]
        assert "NotImplementedError" in raised, f"exercise {m['grade_id']!r}: expected NotImplementedError, got {raised}"

    for cell, m in zip(cells, meta):
        has_visible_code = any(l.strip() and not l.lstrip().startswith("#") for l in cell.source.splitlines())
        if m.get("grade") and has_visible_code:
            assert _error(cell), f"test cell {m['grade_id']!r} passes on the blank version"

    unexpected = [(_gid(c), e.ename, e.evalue[:300]) for c in cells if (e := _error(c)) and e.ename not in BLANK_ERRORS]
    assert not unexpected, f"the blank version breaks where the student does not write: {unexpected}"


def _comparable(nb: nbformat.NotebookNode) -> list[tuple]:
    return [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in nb.cells]


def test_student_version_is_current(lab: Lab, tmp_path: Path) -> None:
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    shutil.copytree(lab.solution.parent, tmp_path / "solutions" / lab.folder)
    bindir = str(Path(sys.executable).parent)  # nbgrader runs `alembic` from PATH
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", lab.folder, "--force"],
        cwd=tmp_path,
        env={**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    fresh = nbformat.read(tmp_path / "labs" / lab.folder / lab.notebook, as_version=4)
    committed = nbformat.read(lab.release, as_version=4)
    stale = [
        i for i, (a, b) in enumerate(zip(_comparable(fresh), _comparable(committed))) if a != b
    ]
    assert len(fresh.cells) == len(committed.cells) and not stale, (
        f"labs/{lab.folder}/{lab.notebook} is stale (cells {stale[:10]} differ, {len(fresh.cells)} vs {len(committed.cells)} cells); "
        f"regenerate it: nbgrader generate_assignment {lab.folder} --force"
    )
