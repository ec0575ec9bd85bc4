"""Lab 08's graders, in process: the notebook's reference answers pass every check, each mutant in
``tests/training/mutants`` fails the check written for its mistake, and a blank exercise's
``NotImplementedError`` goes through unchanged."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from collections.abc import Callable

import nbformat
import numpy as np
import pytest
import torch

from lab_core.course import load_mutants, reference_answers
from lab_core.labs import get_lab
from lab_core.training import grading
from lab_core.training.calculators import job_mtbf, young_daly_interval

LAB = get_lab("training")
REFERENCE = reference_answers(nbformat.read(LAB.solution, as_version=4))


def _namespace(sources: dict[str, str]) -> dict:
    """Run answer cells as the notebook would, in a namespace holding the names its setup cell imports."""
    ns = {
        "contextlib": contextlib,
        "os": os,
        "random": random,
        "tempfile": tempfile,
        "np": np,
        "torch": torch,
        "young_daly_interval": young_daly_interval,
        "job_mtbf": job_mtbf,
        "print": lambda *a, **k: None,
    }
    for grade_id in ("accumulation", "zero_memory", "answer_min_dp", "checkpoint", "answer_interval"):
        exec(sources.get(grade_id, REFERENCE[grade_id]), ns)  # noqa: S102 -- the course's own answer cells
    return ns


CHECKS: dict[str, list[Callable[[dict], None]]] = {
    "accumulation": [
        lambda ns: grading.check_accumulation(ns["accumulation_step"]),
        lambda ns: grading.check_accumulation_sync(ns["accumulation_step"]),
    ],
    "zero_memory": [lambda ns: grading.compare_zero_memory(ns["zero_bytes_per_gpu"], max_examples=40)],
    "answer_min_dp": [lambda ns: grading.check_min_dp(ns["min_dp_answer"])],
    "checkpoint": [
        lambda ns: grading.check_resume(ns["save_checkpoint"], ns["load_checkpoint"]),
        lambda ns: grading.check_atomic_save(ns["save_checkpoint"], ns["load_checkpoint"]),
    ],
    "answer_interval": [lambda ns: grading.check_interval_answer(ns["interval_answer"])],
}


def test_reference_passes_every_check():
    ns = _namespace({})
    for checks in CHECKS.values():
        for check in checks:
            check(ns)


def test_reference_answers_have_the_documented_values():
    ns = _namespace({})
    assert ns["min_dp_answer"] == 5  # 2*13e9 + 14*13e9/dp <= 64e9
    assert ns["interval_answer"] == pytest.approx(98.0, abs=0.1)  # sqrt(2 * 120 s * 144,000 s) / 60


MUTANTS = load_mutants(LAB)


def test_there_are_mutants_for_every_exercise():
    assert {gid for m in MUTANTS for gid in m.cells} == set(CHECKS)


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_each_mutant_fails_a_check(mutant):
    ns = _namespace(mutant.cells)
    failures = []
    for grade_id in mutant.cells:
        for check in CHECKS[grade_id]:
            try:
                check(ns)
            except AssertionError as exc:
                failures.append(str(exc))
    assert failures, f"mutant {mutant.name} passes every check of {sorted(mutant.cells)}"
    assert all(msg.strip() for msg in failures), "a failure must say what is wrong"


def test_blank_exercises_raise_not_implemented():
    def blank(*args, **kwargs):
        raise NotImplementedError()

    for check in (
        lambda: grading.check_accumulation(blank),
        lambda: grading.check_accumulation_sync(blank),
        lambda: grading.compare_zero_memory(blank),
        lambda: grading.check_resume(blank, blank),
        lambda: grading.check_atomic_save(blank, blank),
    ):
        with pytest.raises(NotImplementedError):
            check()
