"""The calculators against real tensors: what DDP, FSDP2 and tensor parallelism actually store per rank after an
AdamW step, and the size of a real ``torch.save`` checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from lab_core.llm.config import get_config
from lab_core.llm.model import build_model
from lab_core.procs import free_port
from lab_core.training.calculators import checkpoint_bytes, memory_per_gpu

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("dist_calculators.py")
TINY = get_config("tiny")
#: One embedding or head row in fp32: FSDP2 and TP split the 259-row vocabulary 130 / 129.
ROW = TINY.dim * 4


def adamw_step(model: torch.nn.Module) -> torch.optim.AdamW:
    """One forward, backward and AdamW step on a random batch; the optimizer afterwards."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    idx = torch.randint(0, TINY.vocab_size, (2, 33), generator=torch.Generator().manual_seed(0))
    model(idx[:, :-1], idx[:, 1:]).backward()
    opt.step()
    return opt


def test_ddp_replica_holds_exactly_what_the_calculator_says(tmp_path: Path) -> None:
    dist.init_process_group("gloo", rank=0, world_size=1, store=dist.FileStore(str(tmp_path / "store"), 1))
    try:
        ddp = DistributedDataParallel(build_model(TINY, seed=0).train())
        opt = adamw_step(ddp)
    finally:
        dist.destroy_process_group()
    params = list(ddp.module.parameters())
    measured = {
        "params": sum(p.numel() * p.element_size() for p in params),
        "grads": sum(p.grad.numel() * p.grad.element_size() for p in params),
        "optimizer": sum(
            opt.state[p][k].numel() * opt.state[p][k].element_size() for p in params for k in ("exp_avg", "exp_avg_sq")
        ),
    }
    calc = memory_per_gpu(TINY, "ddp", dp=1, precision="fp32")
    assert measured == {"params": calc.params, "grads": calc.grads, "optimizer": calc.optimizer}


def test_fsdp2_and_tp_shards_match_the_calculator_on_two_ranks(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
        str(SCRIPT),
        str(tmp_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]

    fsdp = memory_per_gpu(TINY, "fsdp", dp=2, precision="fp32")
    n_tensors = ranks[0]["fsdp"]["param_tensors"]
    assert ranks[0]["fsdp"]["optimizer_tensors"] == 2 * n_tensors, "AdamW keeps m and v per parameter"
    for part, calc in (("params", fsdp.params), ("grads", fsdp.grads), ("optimizer", fsdp.optimizer)):
        measured = [r["fsdp"][part] for r in ranks]
        # Every byte is on exactly one rank; each rank is off only by the odd vocabulary row of the embedding
        # and head (once per state tensor for the optimizer).
        assert sum(measured) == pytest.approx(2 * calc), part
        rows = 2 * (2 if part == "optimizer" else 1)
        assert all(abs(m - calc) <= rows * ROW / 2 for m in measured), (part, measured, calc)

    tp = memory_per_gpu(TINY, "tp", tp=2, precision="fp32")
    measured = [r["tp"]["params"] for r in ranks]
    # Linear layers, embedding and head split in two; the RMSNorm weights replicated on both ranks.
    norms = (2 * TINY.n_layers + 1) * TINY.dim * 4
    assert sum(measured) == pytest.approx(2 * tp.params) == pytest.approx(4 * TINY.num_params() + norms)
    assert all(abs(m - tp.params) <= ROW for m in measured), (measured, tp.params)


def test_a_saved_checkpoint_is_the_size_the_calculator_predicts(tmp_path: Path) -> None:
    model = build_model(TINY, seed=0).train()
    opt = adamw_step(model)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, path)
    predicted = checkpoint_bytes(TINY)
    assert path.stat().st_size == pytest.approx(predicted, rel=0.05)
    assert path.stat().st_size >= predicted, "the file holds at least every tensor byte"
