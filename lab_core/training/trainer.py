"""The training loop each rank runs: data from the sharded store, gradient accumulation, clipping, warmup +
cosine LR, checkpoints, and per-step metrics into the tracker (rank 0 writes).

``train`` runs inside a process group set up by ``torchrun`` (see :mod:`lab_core.training.worker`) or
alone in one process; the code path is the same.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from lab_core.store.object_store import ObjectStore
from lab_core.training.checkpoint import CheckpointManager
from lab_core.training.config import TrainConfig
from lab_core.training.dataset import load_tokenizer
from lab_core.training.loader import ShardedLoader
from lab_core.training.parallel import (
    Parallel,
    flops_per_token,
    grad_norm_and_clip,
    make_optimizer,
    parallelize,
    peak_flops,
)
from lab_core.training.tracker import Tracker


def _world() -> tuple[int, int]:
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _global_loss(par: Parallel, local: float | None) -> float:
    """The step's loss over all data-parallel replicas (pipeline: the last stage's)."""
    if not dist.is_initialized():
        return float(local)
    world = dist.get_world_size()
    value = torch.tensor([(local or 0.0) if par.schedule is not None else float(local) / world], dtype=torch.float64)
    dist.all_reduce(value)
    return float(value)


def train(
    config: TrainConfig,
    *,
    data_url: str,
    checkpoint_dir: Path | None = None,
    tracker_path: Path | None = None,
    run_id: str | None = None,
    device: torch.device | None = None,
    fail_at_step: int | None = None,
) -> dict[int, float]:
    """Train ``config.steps`` optimiser steps on the dataset at ``data_url``, resuming from the newest
    valid checkpoint in ``checkpoint_dir`` if there is one. ``fail_at_step`` kills this process (exit 1)
    once that step is done: the fault the checkpoint and elastic tests inject. Returns the global loss
    of each step this process ran."""
    device = device or torch.device("cpu")
    rank, world = _world()
    tokenizer = load_tokenizer(data_url)
    cfg = config.model_config(tokenizer.vocab_size)
    par = parallelize(config, cfg, device=device)
    opt, sched = make_optimizer(par.module, config)
    loader = ShardedLoader(
        ObjectStore(data_url),
        "train",
        seq_len=config.seq_len,
        batch_size=config.micro_batch,
        rank=par.dp_rank,
        world_size=par.dp_size,
        seed=config.seed,
    )
    losses: dict[int, float] = {}
    step = 0
    ckpt = CheckpointManager(checkpoint_dir, keep_last=config.keep_last) if checkpoint_dir else None
    if ckpt is not None:
        state = ckpt.load(par.module, opt, scheduler=sched)
        if state is not None:
            step = state.step
            loader.load_state_dict(state.loader_state)
    tracker = Tracker(tracker_path) if tracker_path is not None and rank == 0 else None
    if tracker is not None and run_id is None:
        run_id = tracker.start_run("train", {"config": config.__dict__, "world_size": world})
    per_token = flops_per_token(cfg, config.seq_len)
    peak = peak_flops(device) * world
    tokens = config.tokens_per_step(world)
    params = list(par.module.parameters())
    try:
        while step < config.steps:
            t0 = time.perf_counter()
            local: list[float] = []
            for i in range(config.grad_accum):
                x, y = loader.next_batch()
                with par.gradient_sync(i == config.grad_accum - 1):
                    loss = par.micro_step(x, y, 1.0 / config.grad_accum)
                if loss is not None:
                    local.append(loss)
            norm = grad_norm_and_clip(params, config.grad_clip, pipeline=par.schedule is not None)
            lr = sched.get_last_lr()[0]
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            loss = _global_loss(par, sum(local) / len(local) if local else None)
            seconds = time.perf_counter() - t0
            losses[step] = loss
            if tracker is not None and (step % config.log_every == 0 or step == config.steps):
                tracker.log(
                    run_id,
                    step,
                    {
                        "loss": loss,
                        "lr": lr,
                        "grad_norm": norm,
                        "tokens_per_s": tokens / seconds,
                        "mfu": per_token * tokens / seconds / peak,
                        "step_time_s": seconds,
                        "world_size": world,
                    },
                )
            if ckpt is not None and (
                step == config.steps or config.checkpoint_every and step % config.checkpoint_every == 0
            ):
                saved = ckpt.save(
                    step,
                    par.module,
                    opt,
                    scheduler=sched,
                    loader_state=loader.state_dict(),
                    asynchronous=config.async_checkpoint and step != config.steps,
                )
                if tracker is not None:
                    tracker.log(run_id, step, {"checkpoint_blocked_s": saved.blocked_s})
            if (
                fail_at_step is not None
                and step == fail_at_step
                and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
            ):
                if ckpt is not None:
                    ckpt.wait()
                os._exit(1)
    finally:
        if ckpt is not None:
            ckpt.close()
    if tracker is not None:
        tracker.finish(run_id, "finished")
    return losses
