"""Run under torchrun (2 ranks, gloo): measure what FSDP2 and tensor parallelism put on each rank.

Writes ``<out>/rank<r>.json`` with the local bytes of weights, gradients and AdamW state after one step of a
tiny Transformer under ``fully_shard``, and the local weight bytes under a Megatron-style TP plan, for
``test_training_calculators_measured.py`` to compare with ``memory_per_gpu``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

from lab_core.llm.model import build_model


def local_bytes(t: torch.Tensor) -> int:
    """Bytes this rank stores for ``t`` (its shard when ``t`` is a DTensor)."""
    local = t.to_local() if isinstance(t, DTensor) else t
    return local.numel() * local.element_size()


def fsdp_step(world: int) -> dict[str, int]:
    model = build_model("tiny", seed=0).train()
    mesh = init_device_mesh("cpu", (world,))
    for block in model.layers:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(dist.get_rank())
    idx = torch.randint(0, model.cfg.vocab_size, (2, 33), generator=gen)
    model(idx[:, :-1], idx[:, 1:]).backward()
    opt.step()
    states = [s for p in model.parameters() for k, s in opt.state[p].items() if k in ("exp_avg", "exp_avg_sq")]
    return {
        "params": sum(local_bytes(p) for p in model.parameters()),
        "grads": sum(local_bytes(p.grad) for p in model.parameters() if p.grad is not None),
        "optimizer": sum(local_bytes(s) for s in states),
        "optimizer_tensors": len(states),
        "param_tensors": sum(1 for _ in model.parameters()),
    }


def tp_weights(world: int) -> dict[str, int]:
    model = build_model("tiny", seed=0)
    mesh = init_device_mesh("cpu", (world,))
    plan = {"embed": RowwiseParallel(), "head": ColwiseParallel()}
    for i in range(len(model.layers)):
        plan.update({f"layers.{i}.attn.{w}": ColwiseParallel() for w in ("wq", "wk", "wv")})
        plan.update({f"layers.{i}.ffn.{w}": ColwiseParallel() for w in ("w1", "w3")})
        plan[f"layers.{i}.attn.wo"] = RowwiseParallel()
        plan[f"layers.{i}.ffn.w2"] = RowwiseParallel()
    parallelize_module(model, mesh, plan)
    return {"params": sum(local_bytes(p) for p in model.parameters())}


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    result = {"world": world, "fsdp": fsdp_step(world), "tp": tp_weights(world)}
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
