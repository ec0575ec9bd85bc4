"""The trainer end to end under torchrun: every strategy computes the same training, accumulation equals a
bigger batch, a crash resumes onto the same loss curve, and bad configs fail before anything starts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab_core.procs import free_port
from lab_core.training import launch
from lab_core.training.config import TrainConfig
from lab_core.training.dataset import prepare_dataset

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("dist_train_script.py")


@pytest.fixture(scope="module")
def strategy_losses(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[float]]:
    """Per-step losses of the runs in dist_train_script.py (2 ranks, one launch)."""
    base = tmp_path_factory.mktemp("strategies")
    data = str(base / "data")
    prepare_dataset(data)
    out = base / "losses.json"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
        str(SCRIPT),
        data,
        str(out),
    ]
    proc = subprocess.run(
        cmd,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    return {name: [by_step[str(s)] for s in range(1, 7)] for name, by_step in json.loads(out.read_text()).items()}


@pytest.mark.parametrize(
    ("strategy", "same_as"), [("fsdp", "ddp"), ("tp", "ddp_mb4"), ("pp_1f1b", "ddp_mb4"), ("pp_gpipe", "ddp_mb4")]
)
def test_every_strategy_trains_like_ddp(strategy_losses: dict[str, list[float]], strategy: str, same_as: str) -> None:
    # Same seed, same global batches (TP and PP ranks share one batch of 8, like DDP's 2 x 4), same
    # optimiser: only the order of the arithmetic differs.
    assert strategy_losses[strategy] == pytest.approx(strategy_losses[same_as], rel=1e-4)
    assert strategy_losses[strategy][-1] < strategy_losses[strategy][0] - 0.1


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_gradient_accumulation_equals_the_bigger_batch(strategy_losses: dict[str, list[float]], strategy: str) -> None:
    assert strategy_losses[f"{strategy}_accum"] == pytest.approx(strategy_losses[strategy], rel=1e-4)


def test_bf16_autocast_stays_close_to_fp32(strategy_losses: dict[str, list[float]]) -> None:
    bf16, fp32 = strategy_losses["ddp_bf16"], strategy_losses["ddp"]
    assert bf16 != fp32
    assert bf16 == pytest.approx(fp32, rel=0.02)


@pytest.mark.parametrize(
    ("config", "nproc", "mentions"),
    [
        (TrainConfig(strategy="tp"), 3, "does not divide the model's n_heads (4)"),
        (TrainConfig(strategy="fsdp+tp", tp=2), 3, "world size 3 does not fit the mesh"),
        (TrainConfig(strategy="pp"), 3, "pipeline size 3 exceeds the model's 2 layers"),
        (TrainConfig(strategy="single"), 2, "strategy 'single' runs on one process"),
    ],
)
def test_a_config_that_does_not_fit_fails_before_launch(
    tmp_path: Path, config: TrainConfig, nproc: int, mentions: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(mentions)):
        launch.start(config, workdir=tmp_path, nproc=nproc)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "tracker.db").exists()


@pytest.mark.parametrize(
    ("field", "value", "mentions"),
    [
        ("strategy", "zero", "strategy must be one of"),
        ("precision", "fp16", "precision must be one of"),
        ("grad_accum", 0, "grad_accum must be a positive integer"),
        ("seq_len", 100_000, "exceeds the model's max_seq_len"),
        ("tp", 2, "tp=2 needs strategy 'tp' or 'fsdp+tp'"),
        ("lr", -1.0, "lr must be > 0"),
    ],
)
def test_bad_settings_are_named(field: str, value: object, mentions: str) -> None:
    with pytest.raises(ValueError, match=re.escape(mentions)):
        TrainConfig(**{field: value})


def test_unknown_settings_are_named() -> None:
    with pytest.raises(ValueError, match="unknown training setting\\(s\\): stpes"):
        TrainConfig.from_dict({"stpes": 3})


def test_nproc_must_be_a_positive_integer(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nproc must be a positive integer"):
        launch.start(TrainConfig(), workdir=tmp_path, nproc=0)


def test_fsdp_x_tp_on_four_ranks_computes_one_process_gradients() -> None:
    # 2D: FSDP over 2 data-parallel groups of 2 tensor-parallel ranks (4 processes on this machine).
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "4",
        "--master-port",
        str(free_port()),
        "-m",
        "lab_core.training.parity",
        "--strategies",
        "fsdp+tp",
        "--precisions",
        "fp32",
    ]
    proc = subprocess.run(
        cmd,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["fsdp+tp"]["fp32"] < 1e-5
