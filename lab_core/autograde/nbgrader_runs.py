"""Real ``nbgrader autograde`` runs, several at once, and their per-cell points.

nbgrader's SQLite gradebook takes one writer, so each concurrent run ("shard") works in its own
copy of the course folder holding only its students. Every shard is plain ``nbgrader autograde
ASSIGNMENT --force`` with an environment of its own: the cold one nbgrader would use, or one from
:func:`lab_core.autograde.warm.warm_kernels` whose kernels are warm forks. Scores are read back
from each shard's gradebook, cell by cell.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_STARTED = re.compile(r"Converting notebook .*[/\\]submitted[/\\]([^/\\]+)[/\\]")
_FAILED = re.compile(r"There was an error processing assignment '[^']*' for student '([^']+)'")
_UNRESPONSIVE = re.compile(
    r"While processing assignment \S*?submitted[/\\]([^/\\]+)[/\\]\S*, the kernel became unresponsive"
)
_ERROR_NAME = re.compile(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception|Exit|Interrupt))\b", re.MULTILINE)


@dataclass(frozen=True)
class Grade:
    """One graded submission: total and per-cell points (``cells[grade_id] = (score, max_score)``)."""

    score: float
    max_score: float
    cells: dict[str, tuple[float | None, float]]

    @property
    def lost(self) -> list[str]:
        """Grade ids of the cells that scored below their maximum."""
        return sorted(k for k, (s, m) in self.cells.items() if m and (s or 0) < m)


@dataclass
class Shard:
    """Students graded by one ``nbgrader autograde`` process, with that process's environment."""

    students: list[str]
    env: dict[str, str]
    grades: dict[str, Grade] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    log: str = ""
    returncode: int | None = None
    folder: Path | None = None  # the course copy it ran in: autograded/ holds its executed notebooks


def nbgrader_env(base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment for nbgrader and its kernels: this interpreter's folder first on PATH
    (nbgrader runs alembic and kernels found there), one OpenMP thread unless set, plus ``extra``."""
    env = dict(os.environ if base is None else base)
    # Several kernels run at once; with OpenMP's default of a thread per core in each, their spinning
    # threads starve one another (the training notebook ran 5x slower two at a time).
    env.setdefault("OMP_NUM_THREADS", "1")
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])
    env.update(extra)
    return env


def nbgrader(course: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in ``course``; output captured."""
    return subprocess.run(_command(*args), cwd=course, env=env or nbgrader_env(), capture_output=True, text=True)


def _command(*args: str) -> list[str]:
    exe = Path(sys.executable).with_name("nbgrader")
    return [str(exe) if exe.exists() else "nbgrader", *args]


def write_course(course: Path, assignment: str, notebook: Path, *, timeout: int) -> None:
    """A fresh nbgrader course folder with ``notebook`` as the source of ``assignment``."""
    (course / "source" / assignment).mkdir(parents=True)
    shutil.copy(notebook, course / "source" / assignment / notebook.name)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "c.CourseDirectory.root = '.'\n"
        f"c.CourseDirectory.db_assignments = [{{'name': {assignment!r}}}]\n"
        f"c.Execute.timeout = {int(timeout)}\n"
    )


def autograde(
    course: Path, assignment: str, shards: list[Shard], progress: Callable[[int], None] | None = None
) -> list[Shard]:
    """Autograde every shard's students at once, each shard in its own copy of ``course``
    (which holds ``submitted/<student>/<assignment>/``), kept as ``shard.folder``. ``progress(n)`` is called as the number of finished submissions grows.
    A submission nbgrader could not grade (its kernel died, it hung past every interrupt) is in
    ``shard.failures`` with the error's name; the other submissions are graded all the same."""
    running = []
    for i, shard in enumerate(shards):
        copy = course.parent / f"{course.name}-shard{i}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(course, copy, ignore=shutil.ignore_patterns("submitted", "autograded"))
        for student in shard.students:
            shutil.copytree(course / "submitted" / student, copy / "submitted" / student)
        # A log file, not a pipe: pipes read one after another would stall a chatty shard.
        log = (copy / "autograde.log").open("w")
        proc = subprocess.Popen(
            _command("autograde", assignment, "--force"),
            cwd=copy,
            env=shard.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        running.append((shard, copy, proc, log))
    done = -1
    while True:
        alive = [proc.poll() is None for _, _, proc, _ in running]
        if progress is not None:
            started = sum(len(set(_STARTED.findall(_read(copy / "autograde.log")))) for _, copy, _, _ in running)
            finished = started - sum(alive)
            if finished != done:
                done = finished
                progress(max(0, done))
        if not any(alive):
            break
        time.sleep(0.25)
    for shard, copy, proc, log in running:
        log.close()
        shard.returncode = proc.returncode
        shard.log = _read(copy / "autograde.log")
        shard.grades = read_grades(copy / "gradebook.db", assignment)
        shard.failures = _failures(shard.log)
        shard.folder = copy
    return shards


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _failures(log: str) -> dict[str, str]:
    """Student -> the name of the error that stopped nbgrader grading them (from its log)."""
    out = {}
    for block in log.split("There was an error processing assignment: ")[1:]:
        m = re.match(r"\S*?submitted[/\\]([^/\\]+)", block)
        if m:
            names = _ERROR_NAME.findall(block.split("There was an error processing assignment '")[0])
            out[m.group(1)] = names[-1] if names else "error"
    for m in _UNRESPONSIVE.finditer(log):
        out[m.group(1)] = "UnresponsiveKernelError"
    for student in _FAILED.findall(log):
        out.setdefault(student, "error")
    return out


def read_grades(gradebook: Path, assignment: str) -> dict[str, Grade]:
    """Every graded submission of ``assignment`` in an nbgrader gradebook, with per-cell points."""
    from nbgrader.api import Gradebook, MissingEntry

    out: dict[str, Grade] = {}
    if not gradebook.exists():
        return out
    with Gradebook(f"sqlite:///{gradebook}") as gb:
        for student in gb.students:
            try:
                sub = gb.find_submission(assignment, student.id)
            except MissingEntry:
                continue
            cells = {
                g.name: (None if g.score is None else float(g.score), float(g.max_score))
                for nb in sub.notebooks
                for g in nb.grades
            }
            out[student.id] = Grade(float(sub.score), float(sub.max_score), cells)
    return out
