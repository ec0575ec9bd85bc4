"""The pieces of `syslab check` that need no nbgrader run: mutant files, splicing, staleness."""

from __future__ import annotations

import nbformat
import pytest

from lab_core.course import (
    LabReport,
    _comparable,
    blank_problems,
    fill,
    format_report,
    parse_mutant,
    reference_answers,
    run_errors,
)


def _cell(source: str, grade_id: str | None = None, solution: bool = False, grade: bool = False):
    cell = nbformat.v4.new_code_cell(source)
    if grade_id:
        cell.metadata["nbgrader"] = {
            "grade_id": grade_id,
            "solution": solution,
            "grade": grade,
            "locked": not solution,
            "schema_version": 3,
            **({"points": 1} if grade else {}),
        }
    return cell


def _notebook(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def test_parse_mutant_reads_description_and_sections(tmp_path):
    path = tmp_path / "uncapped.py"
    path.write_text('"""Bucket never capped."""\n# %% grade_id: a\nx = 1\n\n# %% grade_id: b\ny = 2\n')
    m = parse_mutant(path)
    assert m.name == "uncapped"
    assert m.description == "Bucket never capped."
    assert m.cells == {"a": "x = 1\n", "b": "y = 2\n"}


def test_parse_mutant_without_sections_is_an_error(tmp_path):
    path = tmp_path / "empty.py"
    path.write_text('"""Nothing here."""\nx = 1\n')
    with pytest.raises(ValueError, match="empty.py"):
        parse_mutant(path)


def test_reference_answers_strip_solution_markers_and_fill_splices_by_grade_id():
    solution = _notebook(
        _cell("### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION", "ex1", solution=True),
        _cell("assert answer == 42", "test1", grade=True),
    )
    release = _notebook(
        _cell("# YOUR CODE HERE\nraise NotImplementedError()", "ex1", solution=True),
        _cell("assert answer == 42", "test1", grade=True),
    )
    answers = reference_answers(solution)
    assert answers == {"ex1": "answer = 42\n"}
    filled = fill(release, answers)
    assert filled.cells[0].source == "answer = 42\n"
    assert release.cells[0].source.startswith("# YOUR CODE HERE"), "fill must not modify its input"
    with pytest.raises(ValueError, match="nope"):
        fill(release, {"nope": "x"})
    with pytest.raises(ValueError, match="test1"):
        fill(release, {"test1": "assert True"})


def test_comparison_sees_changed_source_and_metadata_but_not_outputs():
    a = _notebook(_cell("x = 1", "c", solution=True))
    b = nbformat.from_dict(a)
    b.cells[0].outputs = [nbformat.v4.new_output("stream", text="noise")]
    assert _comparable(a) == _comparable(b)
    b.cells[0].source = "x = 2"
    assert _comparable(a) != _comparable(b)


def test_report_ok_only_when_every_row_holds():
    rep = LabReport("demo", [("reference", 10, 10, True, ""), ("mutant-x", 7, 10, True, "lost: t1")])
    assert rep.ok
    rep.rows.append(("mutant-y", 10, 10, False, "not caught"))
    assert not rep.ok
    assert not LabReport("empty").ok
    table = format_report([rep])
    assert "mutant-y" in table and "NO" in table and "7/10" in table


def _ran(cell, ename: str | None = None):
    cell.outputs = [nbformat.v4.new_output("error", ename=ename, evalue="boom", traceback=[])] if ename else []
    return cell


def test_run_errors_names_every_failed_cell():
    nb = _notebook(_ran(_cell("x = 1")), _ran(_cell("1/0", "ex"), "ZeroDivisionError"))
    assert run_errors(nb) == ["ex: ZeroDivisionError: boom"]
    assert run_errors(_notebook(_ran(_cell("x = 1")))) == []


def _blank(setup=None, exercise="NotImplementedError", test="NotImplementedError", other=None):
    return _notebook(
        _ran(_cell("import lab"), setup),
        _ran(_cell("raise NotImplementedError()", "ex", solution=True), exercise),
        _ran(_cell("assert f() == 1", "t_ex", grade=True), test),
        _ran(_cell("plot()"), other),
    )


def test_blank_that_breaks_only_at_its_exercises_has_no_problems():
    assert blank_problems(_blank()) == []
    assert blank_problems(_blank(exercise=None)) == []  # a class skeleton raises in its test


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"setup": "ImportError"}, "fails before the first exercise"),
        ({"exercise": None, "test": "AssertionError"}, "expected NotImplementedError"),
        ({"exercise": None, "test": None}, "passes on the blank version"),
        ({"other": "TypeError"}, "TypeError"),
    ],
)
def test_blank_problems_name_what_breaks_where_the_student_does_not_write(kwargs, expected):
    problems = blank_problems(_blank(**kwargs))
    assert any(expected in p for p in problems), problems


def test_cell_differences_name_each_cell_that_scored_differently():
    from lab_core.autograde.nbgrader_runs import Grade
    from lab_core.course import cell_differences

    cold = Grade(3.0, 4.0, {"a": (1.0, 1.0), "b": (0.0, 1.0), "c": (2.0, 2.0)})
    assert cell_differences(cold, Grade(3.0, 4.0, dict(cold.cells))) == []
    fast = Grade(3.0, 4.0, {"a": (1.0, 1.0), "b": (1.0, 1.0), "c": (1.0, 2.0)})
    assert cell_differences(cold, fast) == ["b: (0.0, 1.0) -> (1.0, 1.0)", "c: (2.0, 2.0) -> (1.0, 2.0)"]
    assert cell_differences(cold, Grade(1.0, 1.0, {"a": (1.0, 1.0)})) == [
        "b: (0.0, 1.0) -> None",
        "c: (2.0, 2.0) -> None",
    ]
    assert cell_differences(cold, None) == ["not graded by the fast path"]


def test_a_mutant_that_does_not_parse_is_refused_not_counted_as_caught(tmp_path):
    from lab_core.course import parse_mutant

    path = tmp_path / "broken.py"
    path.write_text(
        '"""Indentation broken while copying."""\n\n# %% grade_id: token_bucket\nclass A:\n    x = 1\n        y = 2\n'
    )
    with pytest.raises(ValueError, match=r"broken.py: cell 'token_bucket' is not valid Python"):
        parse_mutant(path)
    path.write_text('"""Top-level await is fine in a notebook cell."""\n\n# %% grade_id: demo\nawait send(apps, 3)\n')
    assert parse_mutant(path).cells == {"demo": "await send(apps, 3)\n"}
