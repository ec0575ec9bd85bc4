"""`syslab grade LAB DIR`: submission layouts, bad folders, and a class with hostile notebooks."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lab_core.autograde import sandbox
from lab_core.autograde.classroom import SubmissionError, find_submissions
from lab_core.autograde.nbgrader_runs import _failures
from lab_core.course import fill, reference_answers
from lab_core.labs import get_lab

SYSLAB = str(Path(sys.executable).with_name("syslab"))


def _nb(path: Path, source: str = "x = 1") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_submissions_as_files_folders_and_nbgrader_layout(tmp_path):
    _nb(tmp_path / "ada.ipynb")
    _nb(tmp_path / "bob" / "lab.ipynb")
    _nb(tmp_path / "cy" / "01_rate_limiter" / "lab.ipynb")
    _nb(tmp_path / "cy" / "01_rate_limiter" / ".ipynb_checkpoints" / "lab-checkpoint.ipynb")
    _nb(tmp_path / "dee" / "lab.ipynb")
    _nb(tmp_path / "dee" / "scratch.ipynb")
    (tmp_path / "notes.txt").write_text("ignored")
    found, unreadable = find_submissions(tmp_path, "lab.ipynb")
    assert sorted(found) == ["ada", "bob", "cy", "dee"] and unreadable == {}
    assert found["dee"].name == "lab.ipynb" and found["cy"].parent.name == "01_rate_limiter"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: _nb(d / "two" / "a.ipynb") and _nb(d / "two" / "b.ipynb"), "two/: 2 notebooks"),
        (lambda d: (d / "empty").mkdir(), "empty/: no .ipynb"),
        (lambda d: _nb(d / "bad name!.ipynb"), "'bad name!.ipynb': a student id"),
        (lambda d: _nb(d / "\u00e9l\u00e8ve.ipynb"), "a student id"),
        (lambda d: None, "no notebooks in"),
    ],
)
def test_a_folder_that_cannot_be_graded_is_refused_naming_the_entry(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(SubmissionError, match=message.replace("(", r"\(").replace("!", "!")):
        find_submissions(tmp_path, "lab.ipynb")


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5, "x": "\\ud800"}\xff',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_an_unreadable_notebook_is_that_students_zero_not_the_classs(tmp_path, content):
    _nb(tmp_path / "ada.ipynb")
    (tmp_path / "broken.ipynb").write_bytes(content)
    found, unreadable = find_submissions(tmp_path, "lab.ipynb")
    assert list(found) == ["ada"]
    assert list(unreadable) == ["broken"] and "not a readable notebook: broken.ipynb" in unreadable["broken"]


def test_a_missing_folder_and_bad_options_exit_2_with_the_reason(tmp_path):
    proc = subprocess.run([SYSLAB, "grade", "ratelimit", str(tmp_path / "nope")], capture_output=True, text=True)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = subprocess.run(
        [SYSLAB, "grade", "ratelimit", str(tmp_path), "--timeout", "0"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "--timeout" in proc.stderr
    proc = subprocess.run([SYSLAB, "grade", "nolab", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown lab" in proc.stderr


def test_failures_are_read_from_nbgrader_log():
    log = (
        "[AutogradeApp | ERROR] Kernel died while waiting for execute reply.\n"
        "[AutogradeApp | ERROR] There was an error processing assignment: /c/submitted/eve/01_rate_limiter\n"
        "[AutogradeApp | ERROR] Traceback (most recent call last):\n"
        '      File "x.py", line 1, in f\n'
        "    nbclient.exceptions.DeadKernelError: Kernel died\n"
        "[AutogradeApp | ERROR] While processing assignment /c/submitted/hal/01_rate_limiter, the kernel became unresponsive and we could not interrupt it.\n"
        "[AutogradeApp | ERROR] There was an error processing assignment '01_rate_limiter' for student 'eve'\n"
        "[AutogradeApp | ERROR] There was an error processing assignment '01_rate_limiter' for student 'hal'\n"
        "[AutogradeApp | ERROR] There was an error processing assignment '01_rate_limiter' for student 'ivy'\n"
    )
    assert _failures(log) == {"eve": "DeadKernelError", "hal": "UnresponsiveKernelError", "ivy": "error"}


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.timeout(400)
def test_a_class_with_hostile_notebooks_is_graded_and_harms_nothing(tmp_path):
    """A loop, a flood of output, an exit and a deletion outside the folder each cost that
    student points (or the notebook); the others are graded exactly; nothing outside is touched."""
    lab = get_lab("ratelimit")
    release = nbformat.read(lab.release, as_version=4)
    answers = reference_answers(nbformat.read(lab.solution, as_version=4))
    first = next(iter(answers))
    canary = tmp_path / "canary.txt"
    canary.write_text("keep me")
    subs = tmp_path / "class"
    subs.mkdir()
    hostile = {
        "reference": {},
        "looper": {first: "while True:\n    pass\n"},
        "printer": {first: answers[first] + "\nprint('x' * (50 * 2**20))\n"},
        "exiter": {first: "import os\nos._exit(3)\n"},
        "deleter": {first: f"import os\nos.remove({str(canary)!r})\n" + answers[first]},
    }
    for name, cells in hostile.items():
        nbformat.write(fill(release, {**answers, **cells}), subs / f"{name}.ipynb")
    nbformat.write(release, subs / "blank.ipynb")
    (subs / "corrupt.ipynb").write_text("{half an upload")
    course = tmp_path / "course"
    proc = subprocess.run(
        [SYSLAB, "grade", "ratelimit", str(subs), "--course", str(course), "--timeout", "20"],
        capture_output=True,
        text=True,
        timeout=380,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "grading 01_rate_limiter" in proc.stderr and "6/6" in proc.stderr  # the progress bar (readable ones)

    with (course / "grades.csv").open() as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == sorted([*hostile, "blank", "corrupt"])
    assert float(rows["corrupt"]["score"]) == 0 and "not a readable notebook" in proc.stdout
    top = float(rows["reference"]["max_score"])
    score = {s: float(r["score"]) for s, r in rows.items()}
    assert score["reference"] == top > 0 and score["blank"] == 0
    assert score["exiter"] == 0 and "DeadKernelError" in proc.stdout
    assert 0 < score["looper"] < top  # only the interrupted exercise's tests fail
    # The deletion fails before the answer is defined; the flood fails after it: that cell alone.
    assert score["printer"] == top
    if sandbox.landlock_abi():
        assert score["deleter"] < top and canary.read_text() == "keep me"

    executed = course / "autograded"

    def solution_error(student):
        nb = nbformat.read(executed / student / lab.folder / lab.notebook, as_version=4)
        cell = next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == first)
        return next((o.ename for o in cell.outputs if o.output_type == "error"), None)

    assert solution_error("printer") == "OutputLimitExceeded"
    if sandbox.landlock_abi():
        assert solution_error("deleter") == "PermissionError"
    assert solution_error("looper") in ("KeyboardInterrupt", "CellTimeoutError")
    assert not (executed / "exiter" / lab.folder / lab.notebook).exists()  # nbgrader removed the failed run

    with (course / "cells.csv").open() as f:
        cells = list(csv.DictReader(f))
    ref_cells = {r["grade_id"]: float(r["score"]) for r in cells if r["student_id"] == "reference"}
    assert ref_cells and all(v > 0 for v in ref_cells.values())
    assert [r["failure"] for r in cells if r["student_id"] == "exiter"] == ["DeadKernelError"]
