"""Run under torchrun (2 ranks, gloo): what two real DDP replicas do with an accumulation step.

Argument 1 names the step: ``reference`` (the notebook's answer) or a mutant in ``tests/training/mutants``.
Each rank accumulates its own 4 micro-batches for 2 optimiser steps; rank 0 writes ``<out>/result.json``:
whether the replicas still hold the same weights, and how far those are from one process taking the same
steps on the global batch (both ranks' micro-batches), for ``test_training_grading.py``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import nbformat
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from lab_core.course import parse_mutant, reference_answers
from lab_core.labs import get_lab
from lab_core.llm.model import build_model
from lab_core.training.drills import micro_batches

K, MICRO, STEPS = 4, 2, 2


def step_function(name: str):  # type: ignore[no-untyped-def]
    """The notebook's ``accumulation_step``, or a mutant's."""
    lab = get_lab("training")
    if name == "reference":
        source = reference_answers(nbformat.read(lab.solution, as_version=4))["accumulation"]
    else:
        source = parse_mutant(lab.mutants / f"{name}.py").cells["accumulation"]
    ns = {"contextlib": contextlib, "torch": torch}
    exec(source, ns)  # noqa: S102 -- the course's own answer cells
    return ns["accumulation_step"]


def replicas_and_global(name: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every rank's final weights (flattened) under DDP with ``name``'s step, and one process's on the global batch."""
    rank, world = dist.get_rank(), dist.get_world_size()
    step_fn = step_function(name)
    model = DistributedDataParallel(build_model("tiny", seed=0).train())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    one = build_model("tiny", seed=0).train()
    one_opt = torch.optim.SGD(one.parameters(), lr=0.1)
    for step in range(STEPS):
        # Rank r's micro-batches; the single process takes every rank's at once (the global batch).
        batches = [micro_batches(K, MICRO, seed=100 * step + r) for r in range(world)]
        step_fn(model, batches[rank], opt, no_sync=model.no_sync, max_norm=1e6)
        x = torch.cat([b[0] for bs in batches for b in bs])
        y = torch.cat([b[1] for bs in batches for b in bs])
        one(x, y).backward()
        one_opt.step()
        one_opt.zero_grad()
    mine = torch.cat([p.detach().flatten() for p in model.module.parameters()])
    replicas = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(replicas, mine)
    return replicas, torch.cat([p.detach().flatten() for p in one.parameters()])


def main() -> None:
    name, out = sys.argv[1], Path(sys.argv[2])
    dist.init_process_group("gloo")
    # The DDP model lives only inside the call: destroying the group under a live one aborts at exit.
    replicas, want = replicas_and_global(name)
    if dist.get_rank() == 0:
        result = {
            "replicas_apart": float((replicas[0] - replicas[1]).norm() / want.norm()),
            "from_global_batch": max(float((r - want).norm() / want.norm()) for r in replicas),
        }
        (out / "result.json").write_text(json.dumps(result))
    dist.barrier()  # neither rank tears the group down while the other still uses it
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
