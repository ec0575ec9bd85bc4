"""Grading the course's own submissions fast: nbgrader's preprocessors and scoring, the cells run in a fork tree.

For each submission, nbgrader's own sanitising preprocessors (``ClearOutput``, ``DeduplicateIds``,
``OverwriteKernelspec``, ``OverwriteCells`` against the course gradebook, ``CheckCellMetadata``)
give the notebook ``nbgrader autograde`` would execute, hidden tests restored. Their code cells run
in :mod:`lab_core.autograde.forktree` (shared cells once), and nbgrader's ``LimitOutput`` and
``determine_grade`` score the outputs, cell by cell, as ``SaveAutoGrades`` would.

It is for notebooks the course wrote (``syslab check``'s reference, blank and mutants): a cell
shared by several submissions runs once, which only holds when they are the course's. A class's
notebooks go through :mod:`lab_core.autograde.classroom` (warm kernels, one per student).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from lab_core.autograde.nbgrader_runs import Grade


def _sanitisers() -> list:
    from nbgrader.preprocessors import (
        CheckCellMetadata,
        ClearOutput,
        DeduplicateIds,
        OverwriteCells,
        OverwriteKernelspec,
    )

    return [ClearOutput(), DeduplicateIds(), OverwriteKernelspec(), OverwriteCells(), CheckCellMetadata()]


def sanitise(
    nb: nbformat.NotebookNode, course: Path, assignment: str, notebook_id: str, student: str
) -> nbformat.NotebookNode:
    """The notebook ``nbgrader autograde`` would execute for ``student``: outputs cleared, locked and test cells from the gradebook."""
    resources = {
        "nbgrader": {
            "db_url": f"sqlite:///{course / 'gradebook.db'}",
            "assignment": assignment,
            "notebook": notebook_id,
            "student": student,
        }
    }
    for pre in _sanitisers():
        nb, resources = pre.preprocess(nb, resources)
    return nb


def _notebook_id(course: Path, assignment: str) -> str:
    (source,) = sorted((course / "source" / assignment).glob("*.ipynb"))
    return source.stem


def score(nb: nbformat.NotebookNode) -> Grade:
    """Per-cell points of an executed notebook, as nbgrader's ``LimitOutput`` + ``SaveAutoGrades`` give them."""
    from nbgrader.preprocessors import LimitOutput
    from nbgrader.utils import determine_grade, is_grade

    nb, _ = LimitOutput().preprocess(nb, {})
    cells: dict[str, tuple[float | None, float]] = {}
    for cell in nb.cells:
        if is_grade(cell):
            points, max_points = determine_grade(cell)
            cells[cell.metadata.nbgrader["grade_id"]] = (None if points is None else float(points), float(max_points))
    return Grade(
        sum(s or 0.0 for s, _ in cells.values()),
        sum(m for _, m in cells.values()),
        cells,
    )


def partition(cells: dict[str, list[str]], parts: int) -> list[list[str]]:
    """Split submissions into ``parts`` groups of about equal work, keeping those that diverge late together.

    A submission's work is the cells it does not share with the first one; sorted by where they
    diverge, contiguous runs share the most cells in one tree."""

    def divergence(name: str) -> int:
        first, mine = next(iter(cells.values())), cells[name]
        return next((i for i, (a, b) in enumerate(zip(first, mine)) if a != b), min(len(first), len(mine)))

    where = {name: divergence(name) for name in cells}
    order = sorted(cells, key=where.__getitem__)
    work = {name: len(cells[name]) - where[name] + 1 for name in order}
    total, groups, current, load = sum(work.values()), [], [], 0
    for name in order:
        current.append(name)
        load += work[name]
        if load >= total * (len(groups) + 1) / parts and len(groups) < parts - 1:
            groups.append(current)
            current = []
    groups.append(current)
    return [g for g in groups if g]


@dataclass
class FastRun:
    """Fork-tree runs over ``students``' submissions in ``course`` (``submitted/<student>/<assignment>/``)."""

    course: Path
    assignment: str
    students: list[str]
    work: Path
    preload: list[str]
    timeout: float
    env: dict[str, str]
    workers: int = 1
    sandbox: bool = True
    notebooks: dict[str, nbformat.NotebookNode] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)
    notebook_id: str = ""
    log: str = ""

    @property
    def results(self) -> Path:
        return self.work / "results"

    def start(self) -> FastRun:
        """Sanitise every submission and start ``workers`` tree processes; returns at once."""
        self.notebook_id = notebook_id = _notebook_id(self.course, self.assignment)
        self.results.mkdir(parents=True, exist_ok=True)
        cells = {}
        for student in self.students:
            submitted = self.course / "submitted" / student / self.assignment
            nb = nbformat.read(submitted / f"{notebook_id}.ipynb", as_version=4)
            nb = sanitise(nb, self.course, self.assignment, notebook_id, student)
            self.notebooks[student] = nb
            cells[student] = [c.source for c in nb.cells if c.cell_type == "code"]
        for i, group in enumerate(partition(cells, self.workers)):
            self.procs.append(self._start_tree(self.work / f"tree{i}", {s: cells[s] for s in group}))
        return self

    def _start_tree(self, tree: Path, cells: dict[str, list[str]]) -> subprocess.Popen:
        folder = tree / "run" / self.assignment
        for path in (folder, tree / "tmp", tree / "snapshots"):
            path.mkdir(parents=True, exist_ok=True)
        first = self.course / "submitted" / next(iter(cells)) / self.assignment
        for extra in first.iterdir():  # the submission's other files, as nbgrader copies them beside the notebook
            if extra.suffix != ".ipynb":
                (shutil.copytree if extra.is_dir() else shutil.copy2)(extra, folder / extra.name)
        plan = {
            "folder": str(folder),
            "tmp": str(tree / "tmp"),
            "results": str(self.results),
            "store": str(tree / "snapshots"),
            "preload": self.preload,
            "timeout": self.timeout,
            "cells": cells,
        }
        (tree / "plan.json").write_text(json.dumps(plan))
        with (tree / "forktree.log").open("w") as log:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lab_core.autograde.forktree",
                    str(tree / "plan.json"),
                    *([] if self.sandbox else ["--no-sandbox"]),
                ],
                cwd=folder,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def finished(self) -> int:
        """How many submissions have their results (graded or failed)."""
        return sum(1 for s in self.students if self._result(s) is not None)

    def _result(self, student: str) -> Path | None:
        for suffix in (".json", ".failed"):
            path = self.results / f"{student}{suffix}"
            if path.exists():
                return path
        return None

    def wait(self, progress: Callable[[int], None] | None = None) -> tuple[dict[str, Grade], dict[str, str]]:
        """Wait for the trees; every submission's points and, for those whose process died, why
        (their points are zero, as nbgrader records a dead kernel's submission).

        Executed notebooks are written to ``work/autograded/<student>/<assignment>/``."""
        assert self.procs, "start() first"
        done = -1
        while any(proc.poll() is None for proc in self.procs):
            if progress is not None and self.finished() != done:
                done = self.finished()
                progress(done)
            time.sleep(0.25)
        self.log = "".join(log.read_text(errors="replace") for log in sorted(self.work.glob("tree*/forktree.log")))
        codes = sorted({proc.returncode for proc in self.procs})
        grades: dict[str, Grade] = {}
        failures: dict[str, str] = {}
        for student in self.students:
            path = self._result(student)
            if path is None:
                failures[student] = f"the fork tree ended (exit {codes}) without it"
                grades[student] = self._zero(student)
            elif path.suffix == ".failed":
                failures[student] = path.read_text()
                grades[student] = self._zero(student)
            else:
                nb = self._executed(student, json.loads(path.read_text()))
                grades[student] = score(nb)
        if progress is not None:
            progress(len(self.students))
        return grades, failures

    def _zero(self, student: str) -> Grade:
        # What nbgrader records for a submission whose kernel died: the submission, every cell at zero.
        cells = {
            c.metadata.nbgrader["grade_id"]: (0.0, float(c.metadata.nbgrader["points"]))
            for c in self.notebooks[student].cells
            if c.get("metadata", {}).get("nbgrader", {}).get("grade")
        }
        return Grade(0.0, sum(m for _, m in cells.values()), cells)

    def _executed(self, student: str, outputs: list[list[dict]]) -> nbformat.NotebookNode:
        nb = self.notebooks[student]
        code = [c for c in nb.cells if c.cell_type == "code"]
        for count, (cell, outs) in enumerate(zip(code, outputs), start=1):
            cell.outputs = [nbformat.from_dict(o) for o in outs]
            cell.execution_count = count
        folder = self.work / "autograded" / student / self.assignment
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / f"{self.notebook_id}.ipynb")
        return nb
