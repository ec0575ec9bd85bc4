"""The fork-tree fast path: kernel-like cell outputs, nbgrader's verdicts, isolation between submissions.

The end-to-end fidelity test over every lab is ``test_syslab_check.py`` (``--compare 3``). Here a
small assignment made for the edge cases nbgrader scores (stderr, partial credit, errors, a cell
that kills its process, state that is not safe to fork) is graded by real ``nbgrader autograde``
with cold kernels and by the fast path, and every cell's points must be equal.
"""

from __future__ import annotations

import textwrap

import nbformat
import pytest

from lab_core.autograde.cellrun import CellRunner
from lab_core.autograde.fastpath import FastRun, partition
from lab_core.autograde.nbgrader_runs import Shard, autograde, nbgrader, nbgrader_env, write_course

ASSIGNMENT = "ps1"


@pytest.fixture(scope="module")
def runner():
    return CellRunner(timeout=5)


def _types(outputs):
    return [(o["output_type"], o.get("name")) for o in outputs]


def test_streams_results_and_errors_come_out_as_a_kernel_sends_them(runner):
    assert _types(runner.run("print('a'); import sys; print('b', file=sys.stderr)")) == [
        ("stream", "stdout"),
        ("stream", "stderr"),
    ]
    result = runner.run("x = 41\nx + 1")
    assert _types(result) == [("execute_result", None)]
    assert result[0]["data"]["text/plain"] == "42"
    error = runner.run("1 / 0")
    assert [(o["output_type"], o["ename"]) for o in error] == [("error", "ZeroDivisionError")]
    assert runner.run("x") and runner.run("x")[0]["data"]["text/plain"] == "41", "state carries across cells"


def test_writes_below_python_are_streams_too(runner):
    outputs = runner.run("import os\nos.write(2, b'from C\\n')\nos.write(1, b'out\\n');")
    assert ("stream", "stderr") in _types(outputs) and ("stream", "stdout") in _types(outputs)
    assert any(o.get("text") == "from C\n" for o in outputs)


def test_display_clear_output_and_input(runner):
    assert _types(runner.run("from IPython.display import display\ndisplay(3)")) == [("display_data", None)]
    cleared = runner.run(
        "import sys\nprint('x', file=sys.stderr)\nfrom IPython.display import clear_output\nclear_output()"
    )
    assert cleared == [], "clear_output removes what the cell wrote before, as in a notebook"
    assert runner.run("input()")[0]["ename"] == "StdinNotImplementedError"


def test_a_loop_is_running_as_in_a_kernel(runner):
    assert runner.run("import asyncio\nawait asyncio.sleep(0)\n'awaited'")[0]["data"]["text/plain"] == "'awaited'"
    refused = runner.run("import asyncio\nasync def f(): return 1\nasyncio.run(f())")
    assert refused[0]["output_type"] == "error" and refused[0]["ename"] == "RuntimeError"


def test_a_cell_past_its_timeout_is_interrupted_and_the_next_runs(runner):
    outputs = runner.run("while True: pass")
    assert outputs[0]["ename"] == "KeyboardInterrupt"
    assert runner.run("'next'")[0]["data"]["text/plain"] == "'next'"


def test_partition_keeps_late_divergers_together_and_balances_work():
    shared = [f"c{i}" for i in range(10)]
    cells = {
        "reference": shared,
        "early": ["x", *shared[1:]],
        "late1": [*shared[:9], "y"],
        "late2": [*shared[:9], "z"],
    }
    groups = partition(cells, 2)
    assert sorted(sum(groups, [])) == sorted(cells)
    assert any({"late1", "late2"} <= set(g) for g in groups)
    assert all(groups) and len(groups) == 2, "two trees, each with work"
    assert "early" not in next(g for g in groups if "late1" in g), "the early diverger is not with the late ones"
    assert [sorted(g) for g in partition(cells, 1)] == [sorted(cells)]


def _grade(points: int, grade_id: str, source: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(textwrap.dedent(source).strip())
    cell.metadata.nbgrader = {
        "grade": True,
        "grade_id": grade_id,
        "locked": True,
        "points": points,
        "schema_version": 3,
        "solution": False,
    }
    return cell


def _solution(grade_id: str, source: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(textwrap.dedent(source).strip())
    cell.metadata.nbgrader = {
        "grade": False,
        "grade_id": grade_id,
        "locked": False,
        "schema_version": 3,
        "solution": True,
    }
    return cell


SOURCE = [
    nbformat.v4.new_code_cell(
        "import os, sys, threading, time, asyncio\nshared = {'n': 1}\nopen('seed.txt', 'w').write('0')"
    ),
    _solution("answer", "### BEGIN SOLUTION\ndef answer():\n    return 42\n### END SOLUTION"),
    _grade(2, "test_answer", "assert answer() == 42"),
    _grade(3, "test_partial", "1.5 if answer() == 42 else 0"),
    _grade(1, "test_quiet", "import sys\nif answer() != 42: print('wrong', file=sys.stderr)"),
    _grade(1, "test_warned", "import warnings\nif answer() != 42: warnings.warn('close, but not it')"),
    _solution("isolated", "### BEGIN SOLUTION\nnote = 'kept'\n### END SOLUTION"),
    _grade(
        2,
        "test_isolated",
        """
        # Another submission's files, globals and module changes must not be seen here.
        assert not os.path.exists('written.txt')
        assert 'leaked' not in shared and not hasattr(os, 'patched_by_a_submission')
        assert open('seed.txt').read() == '0'
        """,
    ),
    # A running thread: forking after it would give a child a state a kernel never has.
    nbformat.v4.new_code_cell(
        "gate = threading.Event()\nworker = threading.Thread(target=gate.wait, args=(60,))\nworker.start()"
    ),
    _solution("after_thread", "### BEGIN SOLUTION\nlate = 7\n### END SOLUTION"),
    _grade(1, "test_thread", "assert worker.is_alive()\ngate.set()\nassert late == 7"),
]

SUBMISSIONS = {
    "reference": {},
    "noisy": {"answer": "def answer():\n    return 41"},
    "writer": {
        "isolated": "note = 'x'\nopen('written.txt', 'w').write('x')\n"
        "open('seed.txt', 'w').write('1')\nshared['leaked'] = True\nos.patched_by_a_submission = True"
    },
    "dies": {"isolated": "os._exit(3)"},
    "late_wrong": {"after_thread": "late = 8"},
}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A tiny nbgrader course with SOURCE released and SUBMISSIONS handed in."""
    root = tmp_path_factory.mktemp("fastpath")
    course = root / "course"
    nb = nbformat.v4.new_notebook()
    nb.cells = SOURCE
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = root / "ps1.ipynb"
    nbformat.write(nb, source)
    write_course(course, ASSIGNMENT, source, timeout=30)
    made = nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    assert made.returncode == 0, made.stdout + made.stderr
    release = nbformat.read(course / "release" / ASSIGNMENT / "ps1.ipynb", as_version=4)
    answers = {"answer": "def answer():\n    return 42", "isolated": "note = 'kept'", "after_thread": "late = 7"}
    for student, changes in SUBMISSIONS.items():
        submitted = nbformat.from_dict(release)
        for cell in submitted.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in answers:
                cell.source = changes.get(grade_id, answers[grade_id])
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(submitted, folder / "ps1.ipynb")
    return course


@pytest.mark.notebook
@pytest.mark.parametrize("workers", [1, 2])
def test_the_fast_path_gives_nbgraders_points_cell_by_cell(course, tmp_path, workers):
    env = nbgrader_env()
    (cold,) = autograde(course, ASSIGNMENT, [Shard(list(SUBMISSIONS), env)])
    fast, failures = (
        FastRun(course, ASSIGNMENT, list(SUBMISSIONS), tmp_path, [], 30, env, workers=workers).start().wait()
    )
    assert set(cold.failures) == set(failures) == {"dies"}, (cold.failures, failures)
    assert "exit 3" in failures["dies"]
    assert sorted(fast) == sorted(cold.grades) == sorted(SUBMISSIONS)
    for student in SUBMISSIONS:
        assert fast[student].cells == cold.grades[student].cells, student
        assert (fast[student].score, fast[student].max_score) == (
            cold.grades[student].score,
            cold.grades[student].max_score,
        )
    # The cases are live: each one scores something different.
    assert fast["reference"].score == 8.5 and fast["reference"].max_score == 10
    assert fast["noisy"].cells["test_partial"] == (0.0, 3.0) and fast["noisy"].cells["test_quiet"] == fast[
        "noisy"
    ].cells["test_warned"] == (0.0, 1.0)
    assert fast["reference"].cells["test_partial"] == (1.5, 3.0)
    assert fast["writer"].cells["test_isolated"] == (0.0, 2.0)
    assert fast["late_wrong"].cells["test_thread"] == (0.0, 1.0)
    executed = nbformat.read(tmp_path / "autograded" / "noisy" / ASSIGNMENT / "ps1.ipynb", as_version=4)
    assert any(o.output_type == "stream" and o.name == "stderr" for c in executed.cells for o in c.get("outputs", []))
