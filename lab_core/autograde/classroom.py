"""``syslab grade LAB SUBMISSIONS``: a class's notebooks graded by nbgrader, with warm kernels.

The result is an ordinary nbgrader course folder (``source/``, ``release/``, ``submitted/``,
``autograded/`` with every executed notebook) and the CSV that ``nbgrader export`` writes, plus a
per-cell CSV. Grading runs ``nbgrader autograde`` itself, split over parallel shards whose kernels
are forks of one warm, sandboxed zygote: a submission that loops forever is interrupted at the
cell timeout, one that prints megabytes fails that cell, one that exits its interpreter scores
zero for the notebook, one that writes or deletes outside its folder gets a PermissionError; the
others are graded as usual.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from lab_core.autograde.nbgrader_runs import Grade, Shard, autograde, nbgrader, nbgrader_env, write_course
from lab_core.autograde.warm import preload_statements, warm_kernels
from lab_core.labs import Lab

# What nbgrader accepts as a student id in its folder layout, and what a CSV row can hold safely.
_STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")


# nbgrader export's CSV columns (CsvExportPlugin), in its order.
EXPORT_COLUMNS = [
    "assignment",
    "duedate",
    "timestamp",
    "student_id",
    "last_name",
    "first_name",
    "email",
    "raw_score",
    "late_submission_penalty",
    "score",
    "max_score",
]


class SubmissionError(ValueError):
    """A submissions folder that cannot be graded as it is; the message names the entry."""


@dataclass(frozen=True)
class Outcome:
    """One student's result: their grade, or why nbgrader could not grade the notebook (scored 0)."""

    student: str
    grade: Grade | None
    failure: str = ""


def find_submissions(folder: Path, notebook: str) -> tuple[dict[str, Path], dict[str, str]]:
    """Student id -> notebook, from ``folder``: ``<student>.ipynb`` files, or ``<student>/`` folders
    holding one notebook at any depth (preferring one named ``notebook``), as nbgrader's
    ``submitted/`` and most LMS downloads are laid out; and student id -> why their notebook
    cannot be read (a corrupt upload scores 0 and the others are graded)."""
    if not folder.is_dir():
        raise SubmissionError(f"submissions folder {str(folder)!r} does not exist")
    found: dict[str, Path] = {}
    unreadable: dict[str, str] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix == ".ipynb":
            student, path = entry.stem, entry
        elif entry.is_dir():
            candidates = sorted(p for p in entry.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            named = [p for p in candidates if p.name == notebook]
            if not candidates:
                raise SubmissionError(f"{entry.name}/: no .ipynb notebook inside")
            if len(named) != 1 and len(candidates) != 1:
                raise SubmissionError(
                    f"{entry.name}/: {len(candidates)} notebooks and none is uniquely called {notebook!r}"
                )
            student, path = entry.name, (named or candidates)[0]
        else:
            continue
        if not _STUDENT_ID.match(student):
            raise SubmissionError(f"{entry.name!r}: a student id may hold letters, digits and _ . @ - (at most 100)")
        if student in found or student in unreadable:
            raise SubmissionError(f"student {student!r} has both a file and a folder")
        try:
            nbformat.read(path, as_version=4)
        except Exception as exc:  # a corrupt upload (bad JSON, bad Unicode, deep nesting) is that student's zero
            unreadable[student] = (
                f"not a readable notebook: {path.relative_to(folder)} ({type(exc).__name__}: {str(exc)[:200]})"
            )
            continue
        found[student] = path
    if not found and not unreadable:
        raise SubmissionError(f"no notebooks in {str(folder)!r} (expected <student>.ipynb or <student>/…/{notebook})")
    return found, unreadable


def grade_class(
    lab: Lab,
    submissions: Path,
    course: Path,
    *,
    timeout: int = 120,
    workers: int = 2,
    sandbox: bool = True,
    show_progress: bool = True,
) -> list[Outcome]:
    """Grade every notebook in ``submissions`` into the nbgrader course folder ``course`` (created;
    it must not exist yet); write ``grades.csv`` (nbgrader export) and ``cells.csv`` there."""
    found, unreadable = find_submissions(submissions, lab.notebook)
    if course.exists():
        raise SubmissionError(f"course folder {str(course)!r} already exists; name a new one with --course")
    env = nbgrader_env(SYSLAB_FAST="1")  # demonstrations at grading size, as `syslab check` runs them
    write_course(course, lab.folder, lab.solution, timeout=timeout)
    gen = nbgrader(course, "generate_assignment", lab.folder, "--force", env=env)
    if gen.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{gen.stderr[-2000:]}")
    for student, path in found.items():
        dest = course / "submitted" / student / lab.folder
        dest.mkdir(parents=True)
        shutil.copy(path, dest / lab.notebook)
    release = nbformat.read(course / "release" / lab.folder / lab.notebook, as_version=4)
    students = sorted(found)
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(students), desc=f"grading {lab.folder}", unit="notebook", disable=not show_progress, file=sys.stderr
    )

    def progress(done: int) -> None:
        bar.update(done - bar.n)

    try:
        with warm_kernels(preload_statements(release), env, sandbox=sandbox) as warm_env:
            shards = [Shard(students[i::workers], warm_env) for i in range(workers) if students[i::workers]]
            autograde(course, lab.folder, shards, progress)
        progress(len(students))
    finally:
        bar.close()
    outcomes = sorted(
        _collect(course, lab, shards) + [Outcome(s, None, why) for s, why in unreadable.items()],
        key=lambda o: o.student,
    )
    _write_csvs(course, lab, shards, outcomes)
    return outcomes


def _collect(course: Path, lab: Lab, shards: list[Shard]) -> list[Outcome]:
    outcomes = []
    for shard in shards:
        assert shard.folder is not None
        if (shard.folder / "autograded").is_dir():
            shutil.copytree(shard.folder / "autograded", course / "autograded", dirs_exist_ok=True)
        for student in shard.students:
            failure = shard.failures.get(student, "")
            grade = None if failure else shard.grades.get(student)
            if grade is None and not failure:
                failure = "not graded (see autograde.log)"
            outcomes.append(Outcome(student, grade, failure))
    return outcomes


def _write_csvs(course: Path, lab: Lab, shards: list[Shard], outcomes: list[Outcome]) -> None:
    """``grades.csv`` as ``nbgrader export`` writes it (rows from every shard's gradebook; a student
    nbgrader failed on scores 0), ``cells.csv`` with one row per student and graded cell, and the
    shards' logs in ``autograde.log``."""
    header: list[str] | None = None
    rows: dict[str, dict[str, str]] = {}
    for shard in shards:
        assert shard.folder is not None
        out = shard.folder / "export.csv"
        result = nbgrader(shard.folder, "export", "--to", str(out), env=shard.env)
        if result.returncode != 0 or not out.exists():
            raise RuntimeError(f"nbgrader export failed:\n{result.stderr[-2000:]}")
        with out.open(newline="") as f:
            reader = csv.DictReader(f)
            header = header or list(reader.fieldnames or [])
            for row in reader:
                if row["student_id"] in shard.students:
                    rows[row["student_id"]] = row
    header = header or EXPORT_COLUMNS  # no notebook could be read: no shard ran to export
    max_score = next((o.grade.max_score for o in outcomes if o.grade), 0.0)
    with (course / "grades.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        for o in outcomes:
            row = rows.get(o.student) or {k: "" for k in header}
            row.update(assignment=lab.folder, student_id=o.student)
            if o.failure:
                row.update(raw_score="0.0", score="0.0", max_score=str(max_score))
            writer.writerow(row)
    with (course / "cells.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "grade_id", "score", "max_score", "failure"])
        for o in outcomes:
            if o.grade is None:
                writer.writerow([o.student, "", 0.0, max_score, o.failure])
                continue
            for cell, (score, top) in sorted(o.grade.cells.items()):
                writer.writerow([o.student, cell, "" if score is None else score, top, ""])
    (course / "autograde.log").write_text("\n".join(s.log for s in shards))


def format_outcomes(outcomes: list[Outcome]) -> str:
    """The class's results as an aligned table."""
    lines = [f"{'student':<24} {'score':>11}  note"]
    for o in outcomes:
        if o.grade is None:
            lines.append(f"{o.student:<24} {'0':>11}  not graded: {o.failure}")
        else:
            lines.append(
                f"{o.student:<24} {o.grade.score:g}/{o.grade.max_score:g}".ljust(37)
                + ("  lost: " + ", ".join(o.grade.lost) if o.grade.lost else "")
            )
    return "\n".join(lines)


def default_workers() -> int:
    """One nbgrader process per core, at least 2 (notebooks wait on I/O too)."""
    return max(2, os.cpu_count() or 1)
