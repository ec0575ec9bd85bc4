"""CheckpointManager in one process: exact resume, async snapshots, retention, crashes and damaged files."""

from __future__ import annotations

import json
import logging
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR

from lab_core.llm.model import build_model
from lab_core.training.checkpoint import (
    MANIFEST,
    CheckpointManager,
    CorruptCheckpointError,
)

STEPS = 8
WARMUP = 2


def warmup_cosine(step: int) -> float:
    if step < WARMUP:
        return (step + 1) / WARMUP
    progress = (step - WARMUP) / max(1, STEPS - WARMUP)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def make(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer, LambdaLR]:
    model = build_model("tiny", seed=seed).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    return model, opt, LambdaLR(opt, warmup_cosine)


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, sched: LambdaLR) -> float:
    """One step whose data, loss scale and gradient noise come from all three global RNGs."""
    x = torch.randint(0, 259, (2, 20))
    shift = random.randrange(4)
    scale = float(np.random.uniform(0.5, 1.5))
    loss = model(x[:, shift : shift + 12], x[:, shift + 1 : shift + 13]) * scale
    opt.zero_grad(set_to_none=True)
    loss.backward()
    for p in model.parameters():
        p.grad.add_(torch.randn_like(p), alpha=1e-3)
    opt.step()
    sched.step()
    return loss.item()


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def snapshot(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Every parameter and optimizer-state tensor, cloned, by name."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = {f"param/{n}": p.detach().clone() for n, p in model.named_parameters()}
    for p, st in opt.state.items():
        for k, v in st.items():
            out[f"optim/{names[id(p)]}/{k}"] = torch.as_tensor(v).clone()
    return out


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("asynchronous", [False, True])
def test_resume_is_bitwise_exact(tmp_path: Path, asynchronous: bool) -> None:
    seed_all(0)
    model, opt, sched = make()
    straight = [train_step(model, opt, sched) for _ in range(STEPS)]
    want = snapshot(model, opt)
    want_lr = sched.get_last_lr()

    seed_all(0)
    model, opt, sched = make()
    first = [train_step(model, opt, sched) for _ in range(STEPS // 2)]
    with CheckpointManager(tmp_path) as ckpt:
        ckpt.save(
            STEPS // 2,
            model,
            opt,
            scheduler=sched,
            loader_state={"epoch": 0, "position": 8},
            extra={"tokens": 123},
            asynchronous=asynchronous,
        )
    # A crash: every object and every random stream is gone; different init weights prove the load.
    del model, opt, sched
    seed_all(99)
    model, opt, sched = make(seed=7)
    with CheckpointManager(tmp_path) as ckpt:
        state = ckpt.load(model, opt, scheduler=sched)
    assert state is not None
    assert (state.step, state.loader_state, state.extra, state.world_size) == (
        STEPS // 2,
        {"epoch": 0, "position": 8},
        {"tokens": 123},
        1,
    )
    rest = [train_step(model, opt, sched) for _ in range(STEPS - STEPS // 2)]

    assert first + rest == straight
    assert_same(snapshot(model, opt), want)
    assert sched.get_last_lr() == want_lr


def test_async_save_captures_the_state_at_call_time(tmp_path: Path) -> None:
    seed_all(1)
    model, opt, sched = make()
    for _ in range(2):
        train_step(model, opt, sched)
    at_save = snapshot(model, opt)
    with CheckpointManager(tmp_path / "sync") as sync_ckpt, CheckpointManager(tmp_path / "async") as async_ckpt:
        sync_ckpt.save(2, model, opt, scheduler=sched)
        result = async_ckpt.save(2, model, opt, scheduler=sched, asynchronous=True)
        assert result.path == tmp_path / "async" / "step_00000002"
        # Training moves on while the background thread writes.
        for _ in range(2):
            train_step(model, opt, sched)
        async_ckpt.wait()
        assert [i.step for i in async_ckpt.list()] == [2]
        for ckpt in (sync_ckpt, async_ckpt):
            fresh, fresh_opt, fresh_sched = make(seed=5)
            ckpt.load(fresh, fresh_opt, scheduler=fresh_sched, restore_rng=False)
            assert_same(snapshot(fresh, fresh_opt), at_save)
            assert fresh_sched.last_epoch == 2


def test_checkpoint_holds_weights_and_both_adam_moments(tmp_path: Path) -> None:
    seed_all(2)
    model, opt, sched = make()
    train_step(model, opt, sched)
    with CheckpointManager(tmp_path) as ckpt:
        ckpt.save(1, model, opt, scheduler=sched)
        (info,) = ckpt.list()
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    on_disk = sum(f.stat().st_size for f in info.path.rglob("*") if f.is_file() and f.name != MANIFEST)
    assert info.bytes == on_disk
    assert info.world_size == 1
    # fp32 AdamW: weights + exp_avg + exp_avg_sq. DCP adds a ~1.7 KB record header per tensor,
    # which is 10% of a model this small and noise for a real one.
    assert 3.0 <= info.bytes / model_bytes < 3.5


def test_keep_last_deletes_the_oldest(tmp_path: Path) -> None:
    model, opt, sched = make()
    with CheckpointManager(tmp_path, keep_last=2) as ckpt:
        for step in (1, 2, 3):
            ckpt.save(step, model, opt)
        ckpt.save(4, model, opt, asynchronous=True)
        ckpt.wait()
        assert [i.step for i in ckpt.list()] == [3, 4]
        assert ckpt.latest().step == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000003", "step_00000004"]


@pytest.mark.parametrize("asynchronous", [False, True])
def test_failed_commit_leaves_nothing_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, asynchronous: bool
) -> None:
    model, opt, _ = make()
    ckpt = CheckpointManager(tmp_path)
    ckpt.save(1, model, opt)

    def boom(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(CheckpointManager, "_commit", boom)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save(2, model, opt, asynchronous=asynchronous)
        ckpt.wait()
    monkeypatch.undo()
    assert [i.step for i in ckpt.list()] == [1]
    assert ckpt.latest().step == 1
    assert not list(tmp_path.glob(".tmp-*"))
    ckpt.save(2, model, opt)  # the manager is still usable
    assert [i.step for i in ckpt.list()] == [1, 2]
    ckpt.close()


def test_half_written_folder_of_a_killed_job_is_ignored_and_cleaned(tmp_path: Path) -> None:
    model, opt, _ = make()
    with CheckpointManager(tmp_path) as ckpt:
        ckpt.save(1, model, opt)
        # What a job killed during its next save leaves behind.
        partial = tmp_path / ".tmp-step_00000002"
        (partial / "rng").mkdir(parents=True)
        (partial / "__0_0.distcp").write_bytes(b"\0" * 100)
        assert [i.step for i in ckpt.list()] == [1]
        assert ckpt.latest().step == 1
    with CheckpointManager(tmp_path) as restarted:
        assert not partial.exists()
        assert restarted.latest().step == 1


def _two_checkpoints(tmp_path: Path) -> tuple[CheckpointManager, dict, torch.nn.Module]:
    seed_all(3)
    model, opt, sched = make()
    ckpt = CheckpointManager(tmp_path)
    train_step(model, opt, sched)
    ckpt.save(1, model, opt, scheduler=sched)
    first = snapshot(model, opt)
    train_step(model, opt, sched)
    ckpt.save(2, model, opt, scheduler=sched)
    return ckpt, first, model


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_newest_falls_back_to_previous(tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str) -> None:
    ckpt, first, _ = _two_checkpoints(tmp_path)
    (bad,) = (tmp_path / "step_00000002").glob("*.distcp")
    data = bad.read_bytes()
    if damage == "truncate":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        bad.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    else:
        bad.unlink()
    with caplog.at_level(logging.WARNING, logger="lab_core.training.checkpoint"):
        assert ckpt.latest().step == 1
    assert bad.name in caplog.text and "step_00000002" in caplog.text

    model, opt, sched = make(seed=4)
    assert ckpt.load(model, opt, scheduler=sched).step == 1
    assert_same(snapshot(model, opt), first)
    with pytest.raises(CorruptCheckpointError, match=bad.name):
        ckpt.load(model, opt, step=2)
    ckpt.close()


def test_unreadable_manifest_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ckpt, _, _ = _two_checkpoints(tmp_path)
    manifest = tmp_path / "step_00000002" / MANIFEST
    manifest.write_text(json.dumps({"files": []})[:5])
    with caplog.at_level(logging.WARNING, logger="lab_core.training.checkpoint"):
        assert [i.step for i in ckpt.list()] == [1]
        assert ckpt.latest().step == 1
    assert str(manifest) in caplog.text
    ckpt.close()


def test_empty_root_and_bad_arguments(tmp_path: Path) -> None:
    model, opt, _ = make()
    with pytest.raises(ValueError, match="keep_last"):
        CheckpointManager(tmp_path, keep_last=0)
    with CheckpointManager(tmp_path) as ckpt:
        assert ckpt.list() == [] and ckpt.latest() is None
        assert ckpt.load(model, opt) is None
        with pytest.raises(ValueError, match="step"):
            ckpt.save(-1, model, opt)
        with pytest.raises(ValueError, match="extra"):
            ckpt.save(1, model, opt, extra=[1, 2])
        ckpt.save(1, model, opt)
        with pytest.raises(ValueError, match="already exists"):
            ckpt.save(1, model, opt)
        with pytest.raises(ValueError, match=r"step 5 .*committed steps: \[1\]"):
            ckpt.load(model, opt, step=5)
        with pytest.raises(ValueError, match="scheduler"):
            ckpt.load(model, opt, scheduler=LambdaLR(opt, warmup_cosine))
        fresh = build_model("tiny", seed=9)
        assert ckpt.load(fresh, step=1).step == 1
        assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters(), strict=True))
