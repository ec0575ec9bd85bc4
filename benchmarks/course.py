"""Course speed: ``syslab check`` with the fast path against all-nbgrader, and ``syslab grade``
against plain ``nbgrader autograde``.

``syslab bench course [--quick]`` runs ``run(quick)``:

1. **``syslab check LAB`` wall time** for every lab, twice in the same run: the fast path (the
   reference and the blank by cold nbgrader, every submission again through the fork tree of
   :mod:`lab_core.autograde.fastpath`, per-cell points compared) and the baseline that grades every submission with cold kernels
   (``--all-nbgrader``, what ``syslab check`` did before). Both must hold all their checks; the
   order alternates between labs so drift on a shared machine hits both alike.
2. **Notebooks graded per minute** on the same 20 rate-limiter submissions (the reference, the
   blank and the mutants, repeated to 20): ``syslab grade`` (warm, sandboxed, parallel shards)
   against one plain ``nbgrader autograde`` with cold kernels, as an instructor runs it.

``--quick``: the rate limiter only, and 6 submissions.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import nbformat

from lab_core.autograde.classroom import default_workers, grade_class
from lab_core.autograde.nbgrader_runs import Shard, autograde, nbgrader, nbgrader_env, write_course
from lab_core.bench import Figure
from lab_core.course import check_lab, fill, load_mutants, reference_answers
from lab_core.labs import LABS, Lab, get_lab


def _timed_check(lab: Lab, fast: bool) -> float:
    work = Path(tempfile.mkdtemp(prefix="syslab-bench-check-"))
    try:
        started = time.perf_counter()
        report = check_lab(lab, work, fast=fast)
        elapsed = time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not report.ok:
        raise RuntimeError(f"syslab check {lab.name} ({'fast' if fast else 'all-nbgrader'}) failed: {report.rows}")
    return elapsed


def _class_of(lab: Lab, folder: Path, count: int) -> None:
    """``count`` submissions: the reference, the blank and the mutants, repeated."""
    release = nbformat.read(lab.release, as_version=4)
    answers = reference_answers(nbformat.read(lab.solution, as_version=4))
    kinds = [fill(release, answers), release] + [fill(release, {**answers, **m.cells}) for m in load_mutants(lab)]
    folder.mkdir(parents=True)
    for i in range(count):
        nbformat.write(kinds[i % len(kinds)], folder / f"student{i:03d}.ipynb")


def _plain_autograde(lab: Lab, submissions: Path, course: Path) -> float:
    """One ``nbgrader autograde`` over every submission, cold kernels; seconds."""
    env = nbgrader_env(SYSLAB_FAST="1")
    write_course(course, lab.folder, lab.solution, timeout=120)
    if nbgrader(course, "generate_assignment", lab.folder, "--force", env=env).returncode != 0:
        raise RuntimeError("nbgrader generate_assignment failed")
    students = sorted(p.stem for p in submissions.glob("*.ipynb"))
    for s in students:
        (course / "submitted" / s / lab.folder).mkdir(parents=True)
        shutil.copy(submissions / f"{s}.ipynb", course / "submitted" / s / lab.folder / lab.notebook)
    started = time.perf_counter()
    (shard,) = autograde(course, lab.folder, [Shard(students, env)])
    elapsed = time.perf_counter() - started
    if shard.returncode != 0 or len(shard.grades) != len(students):
        raise RuntimeError(f"plain nbgrader autograde failed:\n{shard.log[-2000:]}")
    return elapsed


def run(quick: bool) -> list[Figure]:
    figures = []
    names = ["ratelimit"] if quick else sorted(LABS)
    for i, name in enumerate(names):
        lab = get_lab(name)
        order = (True, False) if i % 2 == 0 else (False, True)
        seconds = {fast: _timed_check(lab, fast) for fast in order}
        figures.append(
            Figure(
                f"syslab check {name}: wall time, fast path vs all-nbgrader ({len(load_mutants(lab))} mutants)",
                seconds[True],
                "s",
                "every submission graded by nbgrader with cold kernels",
                seconds[False],
                target="ratio <= 0.35",
            )
        )
    count = 6 if quick else 20
    lab = get_lab("ratelimit")
    work = Path(tempfile.mkdtemp(prefix="syslab-bench-grade-"))
    try:
        _class_of(lab, work / "class", count)
        started = time.perf_counter()
        outcomes = grade_class(lab, work / "class", work / "fast", show_progress=False, workers=default_workers())
        fast = time.perf_counter() - started
        if len(outcomes) != count or any(o.grade is None for o in outcomes):
            raise RuntimeError("syslab grade did not grade every submission")
        cold = _plain_autograde(lab, work / "class", work / "cold")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures.append(
        Figure(
            f"notebooks graded per minute, syslab grade vs nbgrader autograde ({count} rate-limiter submissions)",
            count / fast * 60,
            "notebooks/min",
            "one nbgrader autograde, cold kernels",
            count / cold * 60,
            target="ratio >= 3",
        )
    )
    return figures
