"""Gradient parity: does a parallel strategy compute the same gradients as one process on the whole batch?

Run under ``torchrun`` (``python -m torch.distributed.run --nproc-per-node 2 -m lab_core.training.parity``):
every rank builds the same seeded model twice, once laid out by the strategy and once whole, runs one
global batch (each data-parallel rank its slice), gathers the strategy's gradients to full tensors and
prints, per strategy and precision, the largest per-tensor relative difference ``|g - g_ref| / |g_ref|``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from lab_core.llm.model import build_model
from lab_core.training.config import TrainConfig
from lab_core.training.parallel import autocast, parallelize


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if isinstance(t, DTensor) else t


def gradient_parity(
    strategy: str, precision: str, *, model: str = "tiny", batch: int = 8, seq_len: int = 32, grad_accum: int = 2
) -> float:
    """Largest relative gradient difference between ``strategy`` and one process, over all tensors
    (collective: every rank calls it; all get the same number)."""
    world = dist.get_world_size()
    probe = TrainConfig(
        model=model,
        strategy=strategy,
        tp=2 if strategy == "fsdp+tp" else 1,
        pp_microbatches=2 if strategy == "pp" else 4,
    )
    dp = probe.mesh(world).dp
    config = dataclasses.replace(
        probe, micro_batch=batch // grad_accum // dp, grad_accum=grad_accum, seq_len=seq_len, precision=precision
    )
    par = parallelize(config, config.model_config())
    gen = torch.Generator().manual_seed(1)
    cfg = config.model_config()
    x = torch.randint(0, cfg.vocab_size, (batch, seq_len + 1), generator=gen)
    inputs, targets = x[:, :-1], x[:, 1:]
    rows = config.micro_batch * grad_accum
    mine = slice(par.dp_rank * rows, (par.dp_rank + 1) * rows)
    for i in range(grad_accum):
        part = slice(mine.start + i * config.micro_batch, mine.start + (i + 1) * config.micro_batch)
        with par.gradient_sync(i == grad_accum - 1):
            par.micro_step(inputs[part], targets[part], 1.0 / grad_accum)
    ref = build_model(cfg, seed=config.seed).train()
    with autocast(torch.device("cpu"), precision):
        loss = ref(inputs, targets)
    loss.backward()
    ref_grads = {name: p.grad for name, p in ref.named_parameters()}
    worst = torch.zeros((), dtype=torch.float64)
    for name, p in par.module.named_parameters():
        name = name.removeprefix("module.")
        g = _full(p.grad)
        r = ref_grads[name]
        worst = torch.maximum(worst, ((g - r).norm() / r.norm().clamp_min(1e-12)).double())
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst)


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line (rank 0): {strategy: {precision: max relative difference}}."""
    parser = argparse.ArgumentParser(prog="lab_core.training.parity")
    parser.add_argument("--strategies", default="ddp,fsdp,tp,pp")
    parser.add_argument("--precisions", default="fp32,bf16")
    args = parser.parse_args(argv)
    dist.init_process_group("gloo")
    results: dict[str, dict[str, float]] = {}
    for strategy in args.strategies.split(","):
        for precision in args.precisions.split(","):
            results.setdefault(strategy, {})[precision] = gradient_parity(strategy, precision)
    if dist.get_rank() == 0:
        print(json.dumps(results), flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
