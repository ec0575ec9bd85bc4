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
    "backfill_cpu_only_ignores_reservation": {"easy_backfill": {"promises": None, "compare": "other nodes"}},
    "backfill_keeps_off_reserved_first": {"easy_backfill": {"promises": None, "compare": "other nodes"}},
    "best_fit_ignores_nvlink": {"best_fit": {"invariants": "NVLink", "compare": "reference"}},
    "best_fit_double_books": {"best_fit": {"invariants": "double-booked", "compare": "reference"}},
    "best_fit_worst_fit": {"best_fit": {"invariants": None, "compare": "reference"}},
    "best_fit_share_first_shared_gpu": {"best_fit": {"invariants": None, "compare": "reference"}},
    "best_fit_cpu_only_first_node": {"best_fit": {"invariants": None, "compare": "reference"}},
    "stranded_counts_reserved": {"stranded_ratio": {"compare": "reference"}},
    "stranded_over_total": {"stranded_ratio": {"compare": "reference"}},
    "stranded_wide_job_counts_reserved_nodes": {"stranded_ratio": {"compare": "reference"}},
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
        promised = [r for _, r, _, _ in grading._reference_run(index, False).values() if r is not None]
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


# --- the generated cases reach what the hand-made ones pin down (issue 16) ----------------------


def _generated_cases_catch(strategy, case_check) -> str:
    """Run ``case_check`` on ``strategy``'s generated cases only (no hand-made ones); the failure message."""
    from hypothesis import given

    from lab_core.grading_kit import hypothesis_settings, run_property

    @hypothesis_settings(200)
    @given(strategy)
    def test(case) -> None:
        case_check(*case)

    with pytest.raises(AssertionError) as caught:
        run_property(test)
    return str(caught.value)


def test_generated_clusters_compare_which_shared_gpu_a_fractional_job_gets():
    mutant = _function("best_fit_share_first_shared_gpu", "best_fit")
    message = _generated_cases_catch(grading._placement_cases(), lambda *case: grading._compare_case(mutant, *case))
    assert "gpu_milli=" in message and "reference" in message


def test_generated_jobs_include_cpu_only_jobs_placed_on_the_tightest_node():
    mutant = _function("best_fit_cpu_only_first_node", "best_fit")
    message = _generated_cases_catch(grading._placement_cases(), lambda *case: grading._compare_case(mutant, *case))
    assert "num_gpus=0" in message


def test_generated_queues_put_wide_jobs_beside_reserved_empty_nodes():
    mutant = _function("stranded_wide_job_counts_reserved_nodes", "stranded_ratio")
    message = _generated_cases_catch(
        grading._stranded_cases(), lambda *case: grading._compare_stranded_case(mutant, *case)
    )
    assert "reserved" in message


def test_hand_made_cases_pin_down_the_cases_the_issue_named():
    """The reference's answers on the explicit cases added for issue 16, in their order."""
    wide = tuple((n, g, FULL_GPU) for n in (0, 2) for g in range(8))
    want = [
        ((0, 4, 250),),  # shared GPUs 750, 500, 250, 500 free: the fullest with room, not the first shared
        ((0, 3, 500),),  # equal shares: the lowest GPU
        ((0, 1, 750),),
        ((1, 2, 250),),  # node 0 excluded: node 1's shared GPU
        ((2, -1, 0),),  # a CPU-only job: the tightest node (full), not the first
        ((1, -1, 0),),  # node 2 has no CPU left
        None,  # no node has the CPU
        wide,  # node 1 is empty but reserved: nodes 0 and 2
        None,  # and with node 2 excluded, nothing
    ]
    got = [reference_best_fit(c, j, e) for c, j, e in grading._explicit_placement_cases()[-len(want) :]]
    assert got == want
    held, queued = grading._explicit_stranded_cases()[0]
    assert held.reserved[1] and reference_stranded_ratio(held, queued) == pytest.approx(14 / 22)


def test_a_backfill_workload_has_cpu_only_jobs_and_wide_heads_beside_reserved_empty_nodes():
    """The CPU-only and 16-GPU workload reaches what the others never do: CPU-only jobs, and reservations
    for a job wider than a node that hold nodes already empty."""
    name, kwargs, placer = next(w for w in grading.WORKLOADS if w[1]["mix"] is grading.CPU_AND_WIDE)
    beside_empty: list[int] = []

    class Spy:
        """The scheduler's view, noting each wide head's reservation that holds an empty node."""

        def __init__(self, view) -> None:
            self._view = view

        def __getattr__(self, attr: str):
            return getattr(self._view, attr)

        def reservation(self, job):
            res = self._view.reservation(job)
            c = self._view.cluster
            if c.spans_nodes(job) and (res.nodes & (c.whole_free() == c.gpu_count)).any():
                beside_empty.append(job.id)
            return res

    jobs = grading._simulate(lambda view: reference_easy_backfill(Spy(view)), kwargs, placer)
    cpu_only = [j for j in jobs.values() if j.num_gpus == 0]
    assert len(cpu_only) >= 20 and all(j.end is not None for j in cpu_only), name
    assert len(set(beside_empty)) >= 3, f"{name}: wide heads held empty nodes {len(set(beside_empty))} times"


def test_backfill_comparison_reads_where_each_job_started():
    """Start times alone miss a backfill that starts the right jobs at the right times in the wrong place."""
    index = next(i for i, w in enumerate(grading.WORKLOADS) if w[1]["mix"] is grading.CPU_AND_WIDE)
    reference = grading._reference_run(index, False)
    assert all(nodes is not None and nodes.startswith("started on nodes [") for *_, nodes in reference.values())
    mutant = _function("backfill_keeps_off_reserved_first", "easy_backfill")
    _, kwargs, placer = grading.WORKLOADS[index]
    jobs = grading._simulate(mutant, kwargs, placer)
    assert all(j.start == reference[jid][0] for jid, j in jobs.items())  # the same start times...
    assert any(grading._started_on(j) != reference[jid][3] for jid, j in jobs.items())  # ...on other nodes


def test_invariants_take_a_cpu_only_placement_only_in_its_own_form():
    """A CPU-only job is placed as ((node, -1, 0),); a best-fit that forgets the case returns ()."""

    def forgets_cpu_only(cluster, job, exclude=None):
        if job.num_gpus == 0:
            candidates = np.flatnonzero(cluster.fits(job, exclude=exclude))
            return None if candidates.size == 0 else ()
        return reference_best_fit(cluster, job, exclude)

    with pytest.raises(AssertionError, match=r"CPU-only job's placement is \(\(node, -1, 0\),\)"):
        grading.check_best_fit_invariants(forgets_cpu_only)
    grading.check_best_fit_invariants(reference_best_fit)
