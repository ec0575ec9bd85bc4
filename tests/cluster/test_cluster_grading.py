"""Lab 09's graders: they pass the reference and fail every wrong answer in ``tests/cluster/mutants``.

`syslab check cluster` proves this through nbgrader; these tests prove it in seconds, directly on
the helpers in `lab_core.cluster.grading`, by running each mutant's function (exactly the source
that `syslab check` splices into the notebook) against the graders it must fail.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lab_core.cluster import grading
from lab_core.cluster.fragmentation import stranded_ratio as reference_stranded_ratio
from lab_core.cluster.job import FULL_GPU, Job
from lab_core.cluster.model import Cluster
from lab_core.cluster.placement import best_fit as reference_best_fit
from lab_core.cluster.placement import whole_nodes
from lab_core.cluster.schedulers import Misses
from lab_core.cluster.schedulers import easy_backfill as reference_easy_backfill
from lab_core.course import load_mutants, parse_mutant
from lab_core.labs import ROOT, get_lab

MUTANTS = ROOT / "tests" / "cluster" / "mutants"

# Which graders each function mutant must fail (with a message matching the pattern) or pass (None).
EXPECTED = {
    "backfill_estimate_vs_clock": {"easy_backfill": {"promises": "later than promised", "compare": "other times"}},
    "backfill_stops_at_first_miss": {"easy_backfill": {"promises": None, "compare": "other times"}},
    "backfill_no_reservation": {"easy_backfill": {"promises": "reservation", "compare": "other times"}},
    "best_fit_ignores_nvlink": {"best_fit": {"invariants": "NVLink", "compare": "reference"}},
    "best_fit_double_books": {"best_fit": {"invariants": "double-booked", "compare": "reference"}},
    "best_fit_worst_fit": {"best_fit": {"invariants": None, "compare": "reference"}},
    "stranded_counts_reserved": {"stranded_ratio": {"compare": "reference"}},
    "stranded_over_total": {"stranded_ratio": {"compare": "reference"}},
}

GRADERS = {
    "easy_backfill": {"promises": grading.check_backfill_keeps_promises, "compare": grading.compare_backfill},
    "best_fit": {"invariants": grading.check_best_fit_invariants, "compare": grading.compare_best_fit},
    "stranded_ratio": {"compare": grading.compare_stranded},
}


def _function(mutant_name: str, grade_id: str):
    """The mutant's replacement cell, executed with the names the notebook's setup cell defines."""
    source = parse_mutant(MUTANTS / f"{mutant_name}.py").cells[grade_id]
    namespace = {"np": np, "pd": pd, "FULL_GPU": FULL_GPU, "whole_nodes": whole_nodes, "Misses": Misses}
    exec(compile(source, f"{mutant_name}.py", "exec"), namespace)  # noqa: S102 - our own test fixture
    return namespace[grade_id]


def test_every_mutant_file_parses_and_names_a_cell():
    mutants = {p.stem for p in MUTANTS.glob("*.py")}
    assert len(mutants) >= 8
    assert set(EXPECTED) <= mutants, "EXPECTED names a mutant file that does not exist"
    for m in load_mutants(get_lab("cluster")):
        assert m.description, f"mutant {m.name} needs a one-line docstring"
        assert set(m.cells) <= {
            "best_fit",
            "easy_backfill",
            "stranded_ratio",
            "answer_stranded",
            "answer_schedulers",
            "answer_detection",
        }, m.cells.keys()


def test_reference_passes_every_grader():
    grading.check_best_fit_invariants(reference_best_fit, max_examples=60)
    grading.compare_best_fit(reference_best_fit, max_examples=60)
    grading.check_backfill_keeps_promises(reference_easy_backfill)
    grading.compare_backfill(reference_easy_backfill)
    grading.compare_stranded(reference_stranded_ratio, max_examples=60)


def test_backfill_workloads_block_the_head():
    """The promise check only means something if heads are blocked and reservations made."""
    for index, (name, _kwargs, _) in enumerate(grading.WORKLOADS):
        promised = [r for _, r, _ in grading._reference_run(index, False).values() if r is not None]
        assert len(promised) >= 5, f"workload {name!r} barely blocks the head ({len(promised)} reservations)"


@pytest.mark.parametrize(
    ("mutant", "grade_id", "grader"),
    [(m, gid, g) for m, cells in EXPECTED.items() for gid, graders in cells.items() for g in graders],
)
def test_mutant_against_grader(mutant: str, grade_id: str, grader: str):
    fn = _function(mutant, grade_id)
    check = GRADERS[grade_id][grader]
    message = EXPECTED[mutant][grade_id][grader]
    if message is not None:
        with pytest.raises(AssertionError, match=message):
            check(fn)
    else:
        check(fn)  # this mutant is legal here; another grader catches it


def test_a_blank_exercise_raises_not_implemented():
    def blank(*args, **kwargs):
        raise NotImplementedError()

    for check in (
        grading.check_best_fit_invariants,
        grading.compare_best_fit,
        grading.compare_stranded,
        grading.check_backfill_keeps_promises,
        grading.compare_backfill,
    ):
        with pytest.raises(NotImplementedError):
            check(blank)


def test_graders_reject_answers_that_change_the_cluster():
    def allocating(cluster, job, exclude=None):
        placement = reference_best_fit(cluster, job, exclude)
        if placement is not None and job.num_gpus:
            cluster.allocate(job, placement)
        return placement

    with pytest.raises(AssertionError, match="not change the cluster"):
        grading.compare_best_fit(allocating, max_examples=30)


def test_stranding_example():
    c = Cluster.build(racks=2, nodes_per_rack=4)
    for node in range(c.num_nodes):
        c.allocate(Job(node, 0.0, 60.0), ((node, 0, FULL_GPU),))
    assert reference_stranded_ratio(c, [Job(100, 0.0, 60.0, num_gpus=8)]) == 1.0
    assert "node 0" in grading.describe_cluster(c)
