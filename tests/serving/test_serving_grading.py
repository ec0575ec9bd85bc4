"""Lab 07's graders: they pass the reference and fail every wrong answer in ``tests/serving/mutants``.

`syslab check serving` proves this through nbgrader; these tests prove it in seconds, directly on
the helpers in `lab_core.serving.grading`, by running each mutant's cell (exactly the source that
`syslab check` splices into the notebook) against the graders it must fail or pass.
"""

from __future__ import annotations

import pytest
import torch

from lab_core.course import load_mutants, parse_mutant
from lab_core.labs import ROOT, get_lab
from lab_core.serving import grading
from lab_core.serving.blocks import BlockAllocator, BlockManager, OutOfBlocks
from lab_core.serving.scheduler import Scheduler, SchedulerBase, SchedulerConfig, StepPlan

MUTANTS = ROOT / "tests" / "serving" / "mutants"

# grade_id -> grader name -> the check, called on what the cell defines.
GRADERS = {
    "block_manager": {
        "compare": lambda ns: grading.compare_block_manager(ns["MyBlockManager"], max_examples=60),
        "engine": lambda ns: grading.check_blocks_in_engine(ns["MyBlockManager"]),
    },
    "scheduler": {
        "compare": lambda ns: grading.compare_scheduler(ns["MyScheduler"], max_examples=60),
        "engine": lambda ns: grading.check_scheduler_in_engine(ns["MyScheduler"]),
    },
    "admission": {"compare": lambda ns: grading.compare_admission(ns["admit"], ns["settle"], max_examples=60)},
}

# Which graders each exercise mutant must fail (with a message matching the pattern) or pass (None).
EXPECTED = {
    "blocks_leak_on_abort": {"block_manager": {"compare": "after abort", "engine": "leak"}},
    "blocks_no_sharing": {"block_manager": {"compare": "returned", "engine": "ran out of blocks"}},
    "blocks_whole_prompt_cached": {"block_manager": {"compare": "returned", "engine": None}},
    "blocks_partial_on_out_of_blocks": {
        "block_manager": {"compare": "refused allocate changes nothing", "engine": None}
    },
    "sched_admits_after_preemption": {"scheduler": {"compare": "preempted", "engine": None}},
    "sched_chunk_ignores_budget": {"scheduler": {"compare": "expected work", "engine": None}},
    "sched_prefill_starves_decodes": {"scheduler": {"compare": "expected work", "engine": None}},
    "sched_priority_inversion": {"scheduler": {"compare": "expected work", "engine": None}},
    "sched_unchunked_ignores_cache": {
        "scheduler": {"compare": r"chunked_prefill=False[\s\S]*system prompt", "engine": None}
    },
    "admission_no_refund": {"admission": {"compare": "tokens left"}},
    "admission_not_all_or_nothing": {"admission": {"compare": "requests left"}},
    "admission_negative_refund": {"admission": {"compare": r"used=350[\s\S]*raised ValueError"}},
}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # As in the notebook: a second thread on a shared 2-core machine makes the engine checks 20x slower.
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _cell(mutant_name: str, grade_id: str) -> dict:
    """The mutant's replacement cell, executed with the names the notebook's setup cell defines."""
    source = parse_mutant(MUTANTS / f"{mutant_name}.py").cells[grade_id]
    namespace = {
        "BlockAllocator": BlockAllocator,
        "OutOfBlocks": OutOfBlocks,
        "SchedulerBase": SchedulerBase,
        "StepPlan": StepPlan,
    }
    exec(compile(source, f"{mutant_name}.py", "exec"), namespace)  # noqa: S102 - our own test fixture
    return namespace


def test_every_mutant_file_parses_and_names_a_cell():
    mutants = load_mutants(get_lab("serving"))
    exercise_mutants = {m.name for m in mutants if set(m.cells) & set(GRADERS)}
    assert exercise_mutants == set(EXPECTED), "every exercise mutant is listed in EXPECTED, and only those"
    for m in mutants:
        assert m.description, f"mutant {m.name} needs a one-line docstring"
        assert set(m.cells) <= {*GRADERS, "answer_decode_bound", "answer_fleet"}, m.cells.keys()


def test_reference_passes_every_grader():
    reference = {
        "MyBlockManager": BlockManager,
        "MyScheduler": Scheduler,
        "admit": grading.reference_admit,
        "settle": grading.reference_settle,
    }
    for checks in GRADERS.values():
        for check in checks.values():
            check(reference)


@pytest.mark.parametrize(
    ("mutant", "grade_id", "grader"),
    [(m, gid, g) for m, cells in EXPECTED.items() for gid, graders in cells.items() for g in graders],
)
def test_mutant_against_grader(mutant: str, grade_id: str, grader: str):
    namespace = _cell(mutant, grade_id)
    check = GRADERS[grade_id][grader]
    message = EXPECTED[mutant][grade_id][grader]
    if message is not None:
        with pytest.raises(AssertionError, match=message):
            check(namespace)
    else:
        check(namespace)  # this mutant is legal here; another grader catches it


def test_a_refused_allocate_is_compared_and_changes_nothing_in_the_reference():
    """Generated scripts ask for more than fits, and the reference raises OutOfBlocks untouched."""
    script = [("new", 0, [1, 2, 3, 4]), ("new", 1, [1, 2, 3, 4, 5, 6, 7, 8, 9])]
    log = dict(grading._run_blocks(BlockManager, 4, 2, script))
    assert log["allocate([1, 2, 3, 4, 5, 6, 7, 8, 9]) with 2 free blocks, too few"] == "raised OutOfBlocks"
    assert log["after new [1, 2, 3, 4, 5, 6, 7, 8, 9]"] == log["after new [1, 2, 3, 4]"]
    partial = _cell("blocks_partial_on_out_of_blocks", "block_manager")["MyBlockManager"]
    assert (
        dict(grading._run_blocks(partial, 4, 2, script))["after new [1, 2, 3, 4, 5, 6, 7, 8, 9]"]
        != log["after new [1, 2, 3, 4]"]
    )


def test_the_scheduler_cases_reach_a_cached_prefix_without_chunking():
    """The case the uncached-part rule decides: the reference admits a cached prompt the whole
    length of which exceeds the budget left."""
    config = SchedulerConfig(token_budget=8, max_seqs=4, chunked_prefill=False)
    requests = [(12, 6, 1, 0.0, 8), (11, 2, 1, 3.0, 8)]
    want = grading._run_scheduler(Scheduler, config, 4, 40, requests)
    assert want[3][1] == [("r0", 1), ("r1", 3)], "r1 joins r0's decode for its 3 uncached tokens"
    lazy = _cell("sched_unchunked_ignores_cache", "scheduler")["MyScheduler"]
    assert grading._run_scheduler(lazy, config, 4, 40, requests)[3][1] == [("r0", 1)]


def test_usage_above_max_tokens_refunds_nothing_and_charges_nothing():
    rows = grading._run_admission(grading.reference_admit, grading.reference_settle, [(0.0, "ann", 100, 200, 350)])
    assert rows[0][5:] == (True, "settled", 4, 1700)
    negative = _cell("admission_negative_refund", "admission")
    rows = grading._run_admission(negative["admit"], negative["settle"], [(0.0, "ann", 100, 200, 350)])
    assert rows[0][6].startswith("raised ValueError")


def test_a_blank_exercise_raises_not_implemented():
    class BlankBlocks(BlockAllocator):
        pass

    class BlankScheduler(SchedulerBase):
        pass

    def blank(*args, **kwargs):
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        grading.compare_block_manager(BlankBlocks)
    with pytest.raises(NotImplementedError):
        grading.compare_scheduler(BlankScheduler)
    with pytest.raises(NotImplementedError):
        grading.compare_admission(blank, blank)
