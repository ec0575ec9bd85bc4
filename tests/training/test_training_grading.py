"""Lab 08's graders, in process: the notebook's reference answers pass every check, each mutant in
``tests/training/mutants`` fails the check written for its mistake, and a blank exercise's
``NotImplementedError`` goes through unchanged."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from lab_core.course import load_mutants, reference_answers
from lab_core.labs import get_lab
from lab_core.procs import free_port
from lab_core.training import grading
from lab_core.training.calculators import job_mtbf, young_daly_interval
from lab_core.training.probes import watching_durability

LAB = get_lab("training")
ROOT = Path(__file__).resolve().parents[2]
TWO_RANKS = Path(__file__).with_name("dist_accumulation_script.py")
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


# --- properties one process cannot see (issue 16): which mutant loses which check, and why -----------

# mutant -> (its cell, the index in CHECKS[cell] of the one check it must fail, words of that failure)
ONE_PROCESS_HOLES = {
    "accum_syncs_first_micro_batch": ("accumulation", 1, "all-reduced during micro-batch 1's backward"),
    "ckpt_temp_file_in_tmp": ("checkpoint", 1, "not in the checkpoint's folder"),
    "ckpt_fsync_after_rename": ("checkpoint", 1, "fsynced only after it was renamed"),
    "ckpt_fsyncs_folder_not_file": ("checkpoint", 1, "never fsynced the checkpoint file itself"),
}


@pytest.mark.parametrize("name", sorted(ONE_PROCESS_HOLES))
def test_one_process_mutant_fails_only_the_new_check(name):
    """Every other check passes it (the hole was real); the strengthened one fails it, saying why."""
    grade_id, index, words = ONE_PROCESS_HOLES[name]
    (mutant,) = [m for m in MUTANTS if m.name == name]
    assert set(mutant.cells) == {grade_id}
    ns = _namespace(mutant.cells)
    for i, check in enumerate(CHECKS[grade_id]):
        if i != index:
            check(ns)
    with pytest.raises(AssertionError, match=re.escape(words)):
        CHECKS[grade_id][index](ns)


def _step_syncing_micro_batch(j: int) -> Callable:
    """The reference step, except that micro-batch ``j`` (0-based, -1 the last) is the one outside no_sync()."""

    def step(model, micro_batches, optimizer, *, no_sync=contextlib.nullcontext, max_norm=1.0):
        k = len(micro_batches)
        total = 0.0
        for i, (x, y) in enumerate(micro_batches):
            with no_sync() if i != j % k else contextlib.nullcontext():
                loss = model(x, y)
                (loss / k).backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return total / k

    return step


def test_sync_check_names_the_micro_batch_that_synchronised():
    grading.check_accumulation_sync(_step_syncing_micro_batch(-1))  # the last one: right
    grading.check_accumulation(_step_syncing_micro_batch(1))  # one rank's result cannot tell
    with pytest.raises(AssertionError, match="during micro-batch 2's backward, not the last"):
        grading.check_accumulation_sync(_step_syncing_micro_batch(1))


def _save_variant(write: str) -> Callable:
    """The reference save_checkpoint with its write-fsync-rename lines replaced by ``write`` (which has
    ``state`` and ``path`` and may use os, tempfile and torch)."""
    src = "def save_checkpoint(path, *, step, model, optimizer, scheduler, loader):\n"
    src += "    path = os.fspath(path)\n"
    src += "    state = {'step': step, 'model': model.state_dict(), 'optimizer': optimizer.state_dict(),\n"
    src += "             'scheduler': scheduler.state_dict(), 'loader': loader.state_dict(),\n"
    src += "             'rng': {'torch': torch.get_rng_state(), 'python': random.getstate(),\n"
    src += "                     'numpy': np.random.get_state()}}\n"
    src += "".join(f"    {line}\n" for line in write.strip("\n").splitlines())
    ns = _namespace({})
    exec(src, ns)  # noqa: S102 -- a test's own variant of the answer
    return ns["save_checkpoint"]


SAVE_VARIANTS = {
    "fsyncs another file": (
        "with open(path + '.tmp', 'wb') as f:\n    torch.save(state, f)\n"
        "with open(path + '.done', 'wb') as marker:\n    os.fsync(marker.fileno())\n"
        "os.unlink(path + '.done')\nos.replace(path + '.tmp', path)",
        "never fsynced the checkpoint file itself (it fsynced 1 other",
    ),
    "fsyncs before writing": (
        "with open(path + '.tmp', 'wb') as f:\n    os.fsync(f.fileno())\n    torch.save(state, f)\n"
        "os.replace(path + '.tmp', path)",
        "fsynced when it held 0 of its",
    ),
    "renames across folders": (
        "tmp = os.path.join(tempfile.mkdtemp(), 'ckpt.pt')\n"
        "with open(tmp, 'wb') as f:\n    torch.save(state, f)\n    os.fsync(f.fileno())\n"
        "os.replace(tmp, path)\nos.rmdir(os.path.dirname(tmp))",
        "not in the checkpoint's folder",
    ),
    "no fsync at all": (
        "with open(path + '.tmp', 'wb') as f:\n    torch.save(state, f)\nos.replace(path + '.tmp', path)",
        "(no os.fsync at all)",
    ),
    "fdatasync before the rename": (
        "with open(path + '.tmp', 'wb') as f:\n    torch.save(state, f)\n    os.fdatasync(f.fileno())\n"
        "os.replace(path + '.tmp', path)",
        None,
    ),
}


@pytest.mark.parametrize("variant", sorted(SAVE_VARIANTS))
def test_atomic_save_asks_for_fsync_of_the_temp_file_before_its_rename_in_its_folder(variant):
    write, words = SAVE_VARIANTS[variant]
    save, load = _save_variant(write), _namespace({})["load_checkpoint"]
    grading.check_resume(save, load)  # every variant checkpoints completely
    if words is None:
        grading.check_atomic_save(save, load)
    else:
        with pytest.raises(AssertionError, match=re.escape(words)):
            grading.check_atomic_save(save, load)


def test_watching_durability_restores_os_and_records_in_order(tmp_path):
    before = (os.fsync, os.replace, os.rename)
    with watching_durability() as events:
        with open(tmp_path / "a", "wb") as f:
            f.write(b"abc")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp_path / "a", tmp_path / "b")
    assert (os.fsync, os.replace, os.rename) == before
    ino = os.stat(tmp_path / "b").st_ino
    assert [type(e).__name__ for e in events] == ["Fsync", "Rename"]
    assert (events[0].ino, events[0].size) == (ino, 3)
    assert (events[1].ino, events[1].src_folder, events[1].dst) == (
        ino,
        str(tmp_path.resolve()),
        str((tmp_path / "b").resolve()),
    )


def _two_real_replicas(step: str, out: Path) -> dict[str, float]:
    """``dist_accumulation_script.py`` under torchrun with 2 gloo ranks: how far apart the replicas end, and how
    far from one process on the global batch."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port())]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([*cmd, str(TWO_RANKS), step, str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "result.json").read_text())


@pytest.mark.slow
def test_the_one_rank_recording_agrees_with_two_real_replicas(tmp_path: Path) -> None:
    """The grader's one-rank check stands in for a real group: the step it passes keeps two gloo replicas equal
    (and equal to one process on the global batch); the mutant it fails lets them drift apart."""
    right = _two_real_replicas("reference", tmp_path)
    assert right["replicas_apart"] == 0.0 and right["from_global_batch"] < 1e-5
    wrong = _two_real_replicas("accum_syncs_first_micro_batch", tmp_path)
    assert wrong["replicas_apart"] > 1e-3
