"""Graders for Lab 08's notebook, so that its test cells stay one line long.

* :func:`check_accumulation` -- the student's ``accumulation_step`` on k micro-batches updates the
  model exactly as one optimiser step on the whole batch would (same gradients, clipped the same
  way), returns the whole batch's mean loss and leaves the gradients cleared.
* :func:`check_accumulation_sync` -- under real ``DistributedDataParallel`` (a one-process gloo
  group), a comm hook records every gradient all-reduce: one round per optimiser step, not one per
  micro-batch, issued after the last micro-batch's forward and carrying, for every parameter, the sum
  of all k micro-batches' gradients (what several replicas must average; one rank's result cannot
  tell which micro-batch synchronised).
* :func:`compare_zero_memory` -- ``zero_bytes_per_gpu`` against the ZeRO formula on generated
  inputs, and ``ValueError`` for a stage that does not exist.
* :func:`check_min_dp` / :func:`check_interval_answer` -- the analysis answers by value.
* :func:`check_resume` -- ``save_checkpoint`` / ``load_checkpoint`` in a grader-owned training loop
  (dropout, AdamW, warmup + cosine LR, a sharded loader, and draws from the torch, NumPy and Python
  generators): stopping, restoring into fresh objects and continuing reproduces the uninterrupted
  run's losses bit for bit.
* :func:`check_atomic_save` -- a crash in the middle of writing (the grader makes ``torch.save``
  write half its bytes and fail) leaves the previous checkpoint intact and loadable, a successful
  save leaves no temporary file behind, and the file that ends at the path was written in the
  checkpoint's own folder, fsynced whole, and only then renamed onto the path.

Every check raises ``AssertionError`` with a readable message; a ``NotImplementedError`` from a blank
exercise is let through unchanged. Hypothesis runs derandomized.
"""

from __future__ import annotations

from lab_core.grading_kit import hypothesis_settings, run_property  # before hypothesis: sets its cache folder

# isort: split
import contextlib
import io
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from lab_core.llm.model import build_model
from lab_core.training.calculators import job_mtbf, young_daly_interval, zero_memory
from lab_core.training.drills import STEPS, first_half, micro_batches, resumed, straight_run, toy_store
from lab_core.training.probes import DDPRecording, Fsync, Rename, recording_ddp, watching_durability

__all__ = [
    "MIN_DP_QUESTION",
    "INTERVAL_QUESTION",
    "check_accumulation",
    "check_accumulation_sync",
    "check_atomic_save",
    "check_interval_answer",
    "check_min_dp",
    "check_resume",
    "compare_zero_memory",
]

# --- exercise 1: gradient accumulation ----------------------------------------------------------


class _RecordingSGD(torch.optim.SGD):
    """SGD that keeps a copy of the gradients each ``step`` applies, so the grader can compare them."""

    def __init__(self, params: Iterator[nn.Parameter], lr: float) -> None:
        super().__init__(params, lr=lr)
        self.applied: list[list[torch.Tensor | None]] = []

    def step(self, closure: Callable | None = None) -> None:  # type: ignore[override]
        self.applied.append(
            [
                None if p.grad is None else p.grad.detach().clone()
                for group in self.param_groups
                for p in group["params"]
            ]
        )
        super().step(closure)


def _whole_batch_backward(ref: nn.Module, batches: list) -> float:
    """Backward of the whole batch's mean loss on ``ref``; returns that loss."""
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    loss = ref(x, y)
    loss.backward()
    return float(loss.detach())


def _full_batch_grads(batches: list, max_norm: float) -> tuple[list[torch.Tensor], float]:
    ref = build_model("tiny", seed=0).train()
    loss = _whole_batch_backward(ref, batches)
    torch.nn.utils.clip_grad_norm_(ref.parameters(), max_norm)
    return [p.grad.detach().clone() for p in ref.parameters()], loss


def _accumulate_once(step_fn: Callable, k: int, micro: int, max_norm: float, seed: int) -> None:
    batches = micro_batches(k, micro, seed)
    model = build_model("tiny", seed=0).train()
    opt = _RecordingSGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    got_loss = step_fn(model, batches, opt, max_norm=max_norm)
    want_grads, want_loss = _full_batch_grads(batches, max_norm)
    what = f"{k} micro-batches of {micro} sequences, max_norm={max_norm}"
    assert len(opt.applied) == 1, f"{what}: optimizer.step() was called {len(opt.applied)} times; one step per call"
    assert got_loss is not None and math.isfinite(float(got_loss)), f"{what}: return the mean loss as a float"
    assert abs(float(got_loss) - want_loss) <= 1e-5 * abs(want_loss), (
        f"{what}: returned loss {float(got_loss):.6f}, but the whole batch's mean loss is {want_loss:.6f} "
        "(return the mean of the unscaled micro-batch losses)"
    )
    names = [n for n, _ in model.named_parameters()]
    for name, got, want in zip(names, opt.applied[0], want_grads):
        assert got is not None, f"{what}: {name} had no gradient when optimizer.step() ran"
        scale = want.norm().item() or 1.0
        err = (got - want).norm().item() / scale
        ratio = got.norm().item() / scale
        assert err <= 1e-4, (
            f"{what}: the gradient of {name} that optimizer.step() applied differs from the whole batch's "
            f"(relative error {err:.2e}; its norm is {ratio:.3f}x the right one). Each micro-batch's loss "
            "must count 1/k, gradients must add up over all k micro-batches, and clipping comes after the last"
        )
    for name, p in model.named_parameters():
        assert p.grad is None or not p.grad.any(), f"{what}: gradients left in {name}: zero them after the step"
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters())), f"{what}: the model did not change"


def check_accumulation(step_fn: Callable) -> None:
    """``step_fn(model, micro_batches, optimizer, max_norm=...)`` equals one step on the whole batch."""
    for k, micro, max_norm, seed in [(1, 4, 1e6, 0), (4, 2, 1e6, 1), (3, 3, 1e6, 2), (4, 2, 0.05, 3), (8, 1, 0.5, 4)]:
        _accumulate_once(step_fn, k, micro, max_norm, seed)


@contextlib.contextmanager
def _one_process_group() -> Iterator[None]:
    """A gloo process group of one rank (this process), unless one is already up."""
    if dist.is_initialized():
        yield
        return
    folder = tempfile.mkdtemp(prefix="syslab-grader-pg-")
    store = dist.FileStore(os.path.join(folder, "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _grads_at(weights: nn.Module, batches: list) -> dict[str, torch.Tensor]:
    """The whole batch's mean-loss gradient at ``weights``' current values (the sum over the micro-batches
    of their loss / k gradients), by parameter name, unclipped."""
    ref = build_model("tiny", seed=0).train()
    ref.load_state_dict(weights.state_dict())
    _whole_batch_backward(ref, batches)
    return {n: p.grad.detach().clone() for n, p in ref.named_parameters()}


def _check_reduced(what: str, k: int, seen: DDPRecording, want: dict[str, torch.Tensor]) -> None:
    """Every all-reduce came after the last forward, and together they carried each parameter's
    accumulated gradient once: the sum over all ``k`` micro-batches."""
    for r in seen.rounds:
        assert r.forwards == k, (
            f"{what}: gradients were all-reduced during micro-batch {r.forwards}'s backward, not the last "
            f"({k}). Only the last micro-batch may synchronise (every one before it inside no_sync()): on "
            "several GPUs the micro-batches after the all-reduce would never be averaged and the replicas "
            "would apply different gradients"
        )
    reduced = [name for r in seen.rounds for name in r.grads]
    assert sorted(reduced) == sorted(want), (
        f"{what}: the all-reduce carried {len(reduced)} gradients for the model's {len(want)} parameters"
    )
    got = {name: g for r in seen.rounds for name, g in r.grads.items()}
    for name, w in want.items():
        scale = w.norm().item() or 1.0
        err = (got[name] - w).norm().item() / scale
        assert err <= 1e-4, (
            f"{what}: the all-reduced gradient of {name} is not the sum over all {k} micro-batches (of loss / "
            f"k) (relative error {err:.2e}; its norm is {got[name].norm().item() / scale:.3f}x the right one). "
            "The one all-reduce must carry everything the step accumulated"
        )


def check_accumulation_sync(step_fn: Callable) -> None:
    """Under DDP, ``step_fn`` all-reduces gradients once per optimiser step (``no_sync`` on all but the
    last micro-batch), not once per micro-batch, and that all-reduce carries the sum over all of them."""
    with _one_process_group():
        plain, seen = recording_ddp(0)
        x, y = micro_batches(1, 2, 9)[0]
        plain(x, y).backward()
        per_backward = len(seen.rounds)
        assert per_backward >= 1, "grader: DDP issued no all-reduce for a plain backward"
        for k in (2, 4):
            model, seen = recording_ddp(0)
            opt = _RecordingSGD(model.parameters(), lr=0.1)
            for step in range(2):
                batches = micro_batches(k, 2, 10 + step)
                want = _grads_at(model.module, batches)
                seen.reset()
                step_fn(model, batches, opt, no_sync=model.no_sync, max_norm=1e6)
                rounds = len(seen.rounds)
                assert rounds == per_backward, (
                    f"DDP, {k} micro-batches per step: {rounds} gradient all-reduce bucket(s) in optimiser step "
                    f"{step + 1}, but one synchronised backward issues {per_backward}. Wrap every micro-batch but "
                    "the last in no_sync() so gradients are all-reduced once per step"
                    + (" (with none synchronised, replicas would drift apart)" if rounds == 0 else "")
                )
                _check_reduced(f"DDP, {k} micro-batches, optimiser step {step + 1}", k, seen, want)
            assert len(opt.applied) == 2, f"DDP: optimizer.step() ran {len(opt.applied)} times in 2 calls"


# --- exercise 2: ZeRO memory ---------------------------------------------------------------------


def compare_zero_memory(fn: Callable, max_examples: int = 150) -> None:
    """``fn(num_params, stage, dp, k=...)`` gives the ZeRO paper's bytes per GPU; a bad stage is a ValueError."""
    explicit = [(7_000_000_000, s, 64, 12) for s in range(4)] + [(1_000, 2, 1, 12), (10**9, 1, 8, 8), (10**9, 3, 3, 0)]

    def case(num_params: int, stage: int, dp: int, k: float) -> None:
        want = zero_memory(num_params, stage, dp, k=k)
        got = fn(num_params, stage, dp, k=k)
        assert got is not None and math.isclose(float(got), want, rel_tol=1e-9), (
            f"zero_bytes_per_gpu({num_params:,}, stage={stage}, dp={dp}, k={k}) = {got!r}; expected {want:,.1f} "
            f"bytes ({want / 1e9:.3f} GB)"
        )

    for args in explicit:
        case(*args)
    default = fn(10**9, 0, 4)
    assert default is not None and math.isclose(float(default), 16e9), (
        f"zero_bytes_per_gpu(1e9 params, stage 0) with the default k = {default!r}; expected 16e9 "
        "(2 + 2 + 12 bytes per parameter)"
    )

    @hypothesis_settings(max_examples)
    @given(st.integers(1, 10**12), st.sampled_from([0, 1, 2, 3]), st.integers(1, 4096), st.sampled_from([4, 8, 12, 16]))
    def test(num_params: int, stage: int, dp: int, k: int) -> None:
        case(num_params, stage, dp, k)

    run_property(test)
    for bad in (-1, 4, 5):
        try:
            fn(10**9, bad, 8)
        except ValueError:
            continue
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 -- any other type is the student's mistake to report
            raise AssertionError(f"stage={bad}: raise ValueError, not {type(exc).__name__}") from None
        raise AssertionError(f"stage={bad} does not exist (ZeRO stages are 0 to 3): raise ValueError")


MIN_DP_QUESTION = {"num_params": 13_000_000_000, "stage": 2, "gpu_bytes": 80e9, "reserve_bytes": 16e9, "k": 12}


def _min_dp() -> int:
    q = MIN_DP_QUESTION
    budget = q["gpu_bytes"] - q["reserve_bytes"]
    return next(dp for dp in range(1, 1 << 16) if zero_memory(q["num_params"], q["stage"], dp, k=q["k"]) <= budget)


def check_min_dp(answer: object) -> None:
    """The smallest data-parallel degree of the question in the notebook."""
    want = _min_dp()
    assert isinstance(answer, int | np.integer) and not isinstance(answer, bool), f"give an integer, got {answer!r}"
    assert int(answer) == want, f"min_dp_answer = {answer}: not the smallest degree at which the states fit"


# --- exercise 3: checkpoints ---------------------------------------------------------------------


def _compare_resumed(
    what: str,
    want_losses: list[float],
    want_params: list[torch.Tensor],
    step: object,
    losses: list[float],
    params: list[torch.Tensor],
) -> None:
    assert step == STEPS // 2, f"{what}: load_checkpoint returned {step!r}; expected the saved step {STEPS // 2}"
    tail = want_losses[STEPS // 2 :]
    for i, (got, want) in enumerate(zip(losses, tail)):
        assert got == want, (
            f"{what}: step {STEPS // 2 + i + 1} after resuming has loss {got:.6f}, the uninterrupted run "
            f"{want:.6f}.\n  resumed:       {[round(v, 6) for v in losses]}\n  uninterrupted: "
            f"{[round(v, 6) for v in tail]}\nA resume must restore the model, the optimizer, the LR schedule, "
            "the data position and the random generators (torch, NumPy, Python)"
        )
    for got, want in zip(params, want_params):
        assert torch.equal(got, want), f"{what}: the final weights differ from the uninterrupted run's"


def check_resume(save: Callable, load: Callable) -> None:
    """Stop after half the steps, save, load into fresh objects, continue: the same losses bit for bit."""
    store = toy_store()
    want_losses, want_params = straight_run(store)
    with tempfile.TemporaryDirectory(prefix="syslab-grader-ckpt-") as folder:
        path = Path(folder) / "ckpt.pt"
        first_half(store, save, path)
        assert path.is_file(), f"save_checkpoint({path}, ...) left no file at {path}"
        _compare_resumed("resume", want_losses, want_params, *resumed(store, load, path))


class _InjectedCrash(OSError):
    pass


@contextlib.contextmanager
def _crashing_save() -> Iterator[None]:
    """``torch.save`` writes the first half of its bytes to its target, then fails (a crash mid-write)."""
    real = torch.save

    def half_save(obj: object, f: object, *args: object, **kwargs: object) -> None:
        buf = io.BytesIO()
        real(obj, buf, *args, **kwargs)
        data = buf.getvalue()[: len(buf.getvalue()) // 2]
        if isinstance(f, str | os.PathLike):
            with open(f, "wb") as out:
                out.write(data)
        else:
            f.write(data)  # type: ignore[attr-defined]
            f.flush()  # type: ignore[attr-defined]
        raise _InjectedCrash("injected crash: the machine died half way through writing the checkpoint")

    torch.save = half_save  # type: ignore[assignment]
    torch.serialization.save = half_save  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.save = real
        torch.serialization.save = real


def _check_durable(path: Path, events: list[Fsync | Rename]) -> None:
    """The file now at ``path`` was renamed there from the same folder, after an fsync of it, whole."""
    final = os.stat(path)
    moves = [e for e in events if isinstance(e, Rename) and e.dst == os.path.realpath(path)]
    assert moves, (
        f"save_checkpoint never renamed a file onto {path.name} (os.replace): written in place, a crash "
        "mid-write destroys the last good checkpoint. Write a temporary file in the same folder, flush and "
        "fsync it, then os.replace it onto the path"
    )
    move = moves[-1]
    assert (move.dev, move.ino) == (final.st_dev, final.st_ino), (
        f"the file renamed onto {path.name} is not the one there after the save: rename it last"
    )
    folder = os.path.realpath(path.parent)
    assert move.src_folder == folder, (
        f"the temporary file was written in {move.src_folder}, not in the checkpoint's folder {folder}: a "
        "rename is atomic only within one filesystem (across them os.replace fails with EXDEV, and a move "
        "copies). Create it beside the checkpoint (tempfile.mkstemp(dir=...) or path + '.tmp')"
    )
    synced = [i for i, e in enumerate(events) if isinstance(e, Fsync) and (e.dev, e.ino) == (move.dev, move.ino)]
    others = sum(isinstance(e, Fsync) for e in events) - len(synced)
    assert synced, (
        "save_checkpoint never fsynced the checkpoint file itself"
        + (f" (it fsynced {others} other file(s) or folder(s))" if others else " (no os.fsync at all)")
        + ": after a power cut the rename could reach the disk before the data. fsync the temporary file "
        "before os.replace"
    )
    before = [events[i] for i in synced if i < events.index(move)]
    assert before, (
        f"the checkpoint was fsynced only after it was renamed onto {path.name}: until then the rename can "
        "reach the disk before the data, and a power cut leaves a torn file where the last good one was. "
        "fsync the temporary file before os.replace"
    )
    assert any(e.size == final.st_size for e in before), (
        f"the temporary file was fsynced when it held {max(e.size for e in before):,} of its {final.st_size:,} "
        "bytes: flush() the file object (or close it) before os.fsync, or the last buffered bytes are not on "
        "disk when the rename is"
    )


def check_atomic_save(save: Callable, load: Callable) -> None:
    """A crash while writing leaves the previous checkpoint intact; a save leaves no temporary files, and
    writes the checkpoint in its own folder and fsyncs it whole before renaming it onto the path."""
    store = toy_store()
    want_losses, want_params = straight_run(store)
    with tempfile.TemporaryDirectory(prefix="syslab-grader-ckpt-") as folder:
        path = Path(folder) / "ckpt.pt"
        with watching_durability() as events:
            loop = first_half(store, save, path)
        leftovers = sorted(set(os.listdir(folder)) - {path.name})
        assert not leftovers, f"after a successful save the folder holds {leftovers} besides {path.name}: clean up"
        _check_durable(path, events)
        # The job trains on and tries to save again; the machine dies half way through the write.
        for _ in range(2):
            loop.step()
        crashed = False
        with _crashing_save():
            try:
                save(path, step=STEPS // 2 + 2, **loop.kwargs())
            except _InjectedCrash:
                crashed = True
        assert crashed, "save_checkpoint did not write with torch.save (or swallowed its error): write with torch.save"
        try:
            after = resumed(store, load, path)
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 -- whatever the torn file raises, report it as the failure
            raise AssertionError(
                f"after a crash half way through the second save, {path.name} no longer loads "
                f"({type(exc).__name__}: {str(exc)[:120]}). Write to a temporary file in the same folder, flush "
                "and fsync it, then os.replace it onto the path"
            ) from None
        _compare_resumed("after a crash during the next save", want_losses, want_params, *after)


# --- checkpoint interval -------------------------------------------------------------------------

INTERVAL_QUESTION = {"n_gpus": 1000, "gpu_mtbf_hours": 40_000, "checkpoint_minutes": 2.0}


def check_interval_answer(answer: object) -> None:
    """Young/Daly's interval, in minutes, for the notebook's job (its MTBF, not one GPU's)."""
    q = INTERVAL_QUESTION
    want = young_daly_interval(q["checkpoint_minutes"] * 60, job_mtbf(q["gpu_mtbf_hours"] * 3600, q["n_gpus"])) / 60
    assert isinstance(answer, int | float) and not isinstance(answer, bool), f"give a number of minutes, got {answer!r}"
    assert abs(answer - want) <= 0.02 * want, f"interval_answer = {answer:.1f} minutes: not the Young/Daly optimum"
