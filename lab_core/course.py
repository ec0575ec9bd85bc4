"""``syslab check``: the course's integrity, proved with real nbgrader runs.

For each lab, in a throwaway nbgrader course folder:

1. the committed student notebook (``labs/``) equals what ``nbgrader generate_assignment``
   makes from the instructor notebook (``solutions/``);
2. the reference answers score full marks under ``nbgrader autograde``;
3. the blank student notebook scores less;
4. every mutant in ``tests/<lab>/mutants/`` scores less;
5. the reference submission runs with no error in any cell, graded or not;
6. the blank submission breaks only where the student writes: every exercise raises
   ``NotImplementedError`` (in its cell or its first test), every test cell with visible code
   fails, nothing before the first exercise fails, and no error is of another kind than
   ``BLANK_ERRORS``.

Checks 5 and 6 read the notebooks nbgrader executed for checks 2 and 3, so they cost no extra run.

The fast path (the default): the reference and the blank are graded by plain ``nbgrader
autograde`` with cold kernels, as an instructor's machine would; every submission, the reference
and the blank included, is graded again through :mod:`lab_core.autograde.fastpath`: nbgrader's own
preprocessors and scoring, the cells run in a process tree that runs each cell the submissions
share once and forks where they diverge. A seventh check holds the fast path to nbgrader's
verdicts: for each submission graded both ways (the reference, the blank, and ``compare``
mutants), the points of every cell must be equal. ``fast=False`` grades everything cold, as
before the fast path existed (the benchmark's baseline).

Submissions are built from the student notebook, as a student would hand it in: "reference"
has every exercise cell answered with the solution; a mutant is that, with the cells it names
replaced by its wrong answer.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from lab_core.autograde.fastpath import FastRun
from lab_core.autograde.nbgrader_runs import Grade, Shard, autograde, nbgrader, nbgrader_env, write_course
from lab_core.autograde.warm import preload_statements
from lab_core.labs import Lab, get_lab

# Per cell, as the course's nbgrader_config.py: the slowest graded demonstration stays well below it.
EXECUTE_TIMEOUT = 300

# The blank student version may break only in these ways: a stub, a name a stub never defined,
# a test that fails on the stub's absence.
BLANK_ERRORS = {"NotImplementedError", "NameError", "AssertionError"}

MUTANT_MARK = re.compile(r"^# %% grade_id: (\S+)\s*$", re.MULTILINE)
_SOLUTION_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)


@dataclass(frozen=True)
class Mutant:
    """A plausible wrong answer: replacement sources keyed by the solution cells' grade_id."""

    name: str
    description: str
    cells: dict[str, str]


def parse_mutant(path: Path) -> Mutant:
    """Read a mutant file: a docstring, then sections opened by ``# %% grade_id: ID``."""
    text = path.read_text()
    parts = MUTANT_MARK.split(text)
    if len(parts) < 3:
        raise ValueError(f"mutant {path.name}: no '# %% grade_id: <id>' section found")
    head = parts[0].strip().strip('"').strip()
    cells = {parts[i]: parts[i + 1].strip("\n") + "\n" for i in range(1, len(parts), 2)}
    for grade_id, source in cells.items():
        # A mutant that does not even parse would lose every test and look caught: refuse it instead.
        try:
            compile(source, f"{path.name}:{grade_id}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError as exc:
            raise ValueError(
                f"mutant {path.name}: cell {grade_id!r} is not valid Python ({exc.msg}, line {exc.lineno})"
            ) from None
    return Mutant(path.stem, head.splitlines()[0] if head else "", cells)


def load_mutants(lab: Lab) -> list[Mutant]:
    """Every mutant of ``lab``, sorted by name."""
    return [parse_mutant(p) for p in sorted(lab.mutants.glob("*.py"))] if lab.mutants.is_dir() else []


def _grade_id(cell: nbformat.NotebookNode) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _is_solution(cell: nbformat.NotebookNode) -> bool:
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get("solution"))


def reference_answers(solution: nbformat.NotebookNode) -> dict[str, str]:
    """The solution cells' sources without the BEGIN/END SOLUTION marker lines, by grade_id."""
    return {
        _grade_id(c): _SOLUTION_MARKERS.sub("", c.source) for c in solution.cells if _is_solution(c) and _grade_id(c)
    }


def fill(release: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """A copy of the student notebook with the given cells answered; unknown grade_ids are an error."""
    nb = nbformat.from_dict(release)
    known = {_grade_id(c) for c in nb.cells if _is_solution(c)}
    unknown = set(answers) - known
    if unknown:
        raise ValueError(f"no solution cell with grade_id {', '.join(sorted(unknown))}")
    for cell in nb.cells:
        if _is_solution(cell) and _grade_id(cell) in answers:
            cell.source = answers[_grade_id(cell)]
    return nb


def _comparable(nb: nbformat.NotebookNode) -> list[tuple]:
    return [(c.cell_type, c.source.strip(), c.get("metadata", {}).get("nbgrader")) for c in nb.cells]


def _label(cell: nbformat.NotebookNode) -> str:
    return _grade_id(cell) or cell.get("id", "?")


def _error(cell: nbformat.NotebookNode) -> nbformat.NotebookNode | None:
    return next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)


def run_errors(nb: nbformat.NotebookNode) -> list[str]:
    """ "cell: ErrorName: message" for every executed cell that raised."""
    return [f"{_label(c)}: {e.ename}: {e.evalue[:200]}" for c in nb.cells if (e := _error(c))]


def blank_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Where an executed blank student notebook breaks other than where the student writes."""
    cells = [c for c in nb.cells if c.cell_type == "code"]
    meta = [c.get("metadata", {}).get("nbgrader", {}) for c in cells]
    exercises = [i for i, m in enumerate(meta) if m.get("solution")]
    if not exercises:
        return ["the notebook has no exercise cell"]
    problems = [
        f"{_label(c)} fails before the first exercise: {_error(c).ename}" for c in cells[: exercises[0]] if _error(c)
    ]
    for i in exercises:
        # A stub cell raises itself; a class skeleton raises when its test cell first calls it.
        test = next((c for c, m in zip(cells[i + 1 :], meta[i + 1 :]) if m.get("grade")), None)
        raised = [e.ename for e in (_error(cells[i]), test and _error(test)) if e]
        if "NotImplementedError" not in raised:
            problems.append(f"exercise {meta[i]['grade_id']}: expected NotImplementedError, got {raised or 'no error'}")
    for cell, m in zip(cells, meta):
        visible = any(line.strip() and not line.lstrip().startswith("#") for line in cell.source.splitlines())
        if m.get("grade") and visible and not _error(cell):
            problems.append(f"test cell {m['grade_id']} passes on the blank version")
    problems += [
        f"{_label(c)}: {e.ename} ({e.evalue[:120]}) where the student does not write"
        for c in cells
        if (e := _error(c)) and e.ename not in BLANK_ERRORS
    ]
    return problems


@dataclass
class LabReport:
    """Every check of one lab: (what, score, max_score, ok, detail) rows."""

    lab: str
    rows: list[tuple[str, float | None, float | None, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every row holds."""
        return bool(self.rows) and all(row[3] for row in self.rows)


def generate_release(lab: Lab, course: Path) -> tuple[nbformat.NotebookNode, bool]:
    """The student notebook ``nbgrader generate_assignment`` makes from the solution, in a fresh
    course folder ``course``, and whether the committed ``labs/`` copy equals it."""
    write_course(course, lab.folder, lab.solution, timeout=EXECUTE_TIMEOUT)
    gen = nbgrader(course, "generate_assignment", lab.folder, "--force", env=nbgrader_env(SYSLAB_FAST="1"))
    generated = course / "release" / lab.folder / lab.notebook
    if gen.returncode != 0 or not generated.exists():
        raise RuntimeError(gen.stderr.strip() or "nbgrader generate_assignment made no notebook")
    fresh = nbformat.read(generated, as_version=4)
    committed = nbformat.read(lab.release, as_version=4) if lab.release.exists() else None
    return fresh, committed is not None and _comparable(committed) == _comparable(fresh)


def check_lab(lab: Lab, workdir: Path, *, fast: bool = True, compare: int = 0, workers: int | None = None) -> LabReport:
    """Run the checks for ``lab`` inside ``workdir`` (an empty folder).

    ``fast``: every submission through the fork tree, the reference and the blank by nbgrader too
    (see the module docstring); ``compare``: how many mutants (first by name) are graded cold too,
    to prove the fast path on them. ``workers``: concurrent processes of each kind (default: the
    cores, 2 to 4).
    """
    report = LabReport(lab.name)
    course = workdir / lab.name
    env = nbgrader_env(SYSLAB_FAST="1")
    try:
        fresh, current = generate_release(lab, course)
    except RuntimeError as exc:
        report.rows.append(("generate student version", None, None, False, str(exc)[-800:]))
        return report
    report.rows.append(
        (
            "student notebook current",
            None,
            None,
            current,
            "" if current else f"regenerate: nbgrader generate_assignment {lab.folder} --force",
        )
    )

    answers = reference_answers(nbformat.read(lab.solution, as_version=4))
    submissions = {"reference": fill(fresh, answers), "blank": fresh}
    mutants = load_mutants(lab)
    for m in mutants:
        submissions[f"mutant-{m.name}"] = fill(fresh, {**answers, **m.cells})
    for student, nb in submissions.items():
        folder = course / "submitted" / student / lab.folder
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / lab.notebook)

    workers = workers or max(2, min(os.cpu_count() or 1, 4))
    students = list(submissions)
    graded_fast: dict[str, Grade] = {}
    not_graded: dict[str, str] = {}
    if fast:
        cold_students = ["reference", "blank", *[f"mutant-{m.name}" for m in mutants[:compare]]]
        # Both kinds at once, more processes than cores: a notebook often waits (servers
        # starting, sockets, sleeps), and one process per core left cores idle then.
        tree = FastRun(
            course,
            lab.folder,
            students,
            workdir / f"{lab.name}-fast",
            preload_statements(fresh),
            EXECUTE_TIMEOUT,
            env,
            workers=workers,
        ).start()
        cold = [Shard(cold_students[i::2], env) for i in range(2)]
        autograde(course, lab.folder, cold)
        graded_fast, not_graded = tree.wait()
    else:
        cold = [Shard(students[i::workers], env) for i in range(workers)]
        autograde(course, lab.folder, cold)
    errors = [s.log.strip()[-800:] for s in cold if s.returncode != 0]
    if errors:
        report.rows.append(("autograde", None, None, False, "\n".join(errors)))
        return report
    graded_cold = {k: v for s in cold for k, v in s.grades.items()}
    scores = {**graded_fast, **graded_cold}  # nbgrader's own verdict wherever there is one
    descriptions = {f"mutant-{m.name}": m.description for m in mutants}
    for student in submissions:
        grade = scores.get(student)
        if grade is None:
            report.rows.append((student, None, None, False, "not graded: " + not_graded.get(student, "no result")))
            continue
        full = grade.score >= grade.max_score
        ok = full if student == "reference" else not full
        detail = descriptions.get(student, "")
        if grade.lost:
            detail = (detail + "; " if detail else "") + "lost: " + ", ".join(grade.lost)
        if fast and student not in graded_cold:
            detail += " (fast path)"
        report.rows.append((student, grade.score, grade.max_score, ok, detail))
    if fast:
        differences = [f"{s}: {d}" for s in graded_cold for d in cell_differences(graded_cold[s], graded_fast.get(s))]
        report.rows.append(
            (
                f"fast path = nbgrader ({len(graded_cold)})",
                None,
                None,
                not differences,
                "; ".join(differences)[:1500] or "per-cell points equal: " + ", ".join(graded_cold),
            )
        )
    executed = {s: shard.folder / "autograded" for shard in cold for s in shard.students if shard.folder}
    for student, what, problems_of in (
        ("reference", "no errors in the reference run", run_errors),
        ("blank", "only exercises break in blank", blank_problems),
    ):
        path = executed[student] / student / lab.folder / lab.notebook
        problems = problems_of(nbformat.read(path, as_version=4)) if path.exists() else [f"{path} was not written"]
        report.rows.append((what, None, None, not problems, "; ".join(problems)[:1500]))
    return report


def cell_differences(cold: Grade, fast: Grade | None) -> list[str]:
    """Where two gradings of one submission disagree, cell by cell ("cell: cold -> fast")."""
    if fast is None:
        return ["not graded by the fast path"]
    cells = sorted(set(cold.cells) | set(fast.cells))
    return [f"{c}: {cold.cells.get(c)} -> {fast.cells.get(c)}" for c in cells if cold.cells.get(c) != fast.cells.get(c)]


def format_report(reports: list[LabReport]) -> str:
    """The check results as an aligned text table."""
    lines = [f"{'lab':<10} {'check':<34} {'score':>11}  {'ok':<4} detail"]
    for rep in reports:
        for what, score, max_score, ok, detail in rep.rows:
            s = "" if score is None else f"{score:g}/{max_score:g}"
            lines.append(f"{rep.lab:<10} {what:<34} {s:>11}  {'yes' if ok else 'NO':<4} {detail}")
    return "\n".join(lines)


def check_labs(names: list[str], *, keep: bool = False, fast: bool = True, compare: int = 0) -> int:
    """Check each lab, print the table; 0 only if every check of every lab holds."""
    labs = [get_lab(n) for n in names]
    workdir = Path(tempfile.mkdtemp(prefix="syslab-check-"))
    try:
        reports = [check_lab(lab, workdir, fast=fast, compare=compare) for lab in labs]
    finally:
        if keep:
            print(f"course folders kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(format_report(reports))
    ok = all(r.ok for r in reports)
    print("all checks hold" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1
