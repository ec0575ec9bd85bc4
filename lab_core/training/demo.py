"""``syslab demo training``: a short real training job with torchrun on the demo corpus, then evaluation and
registration of the model; ``--serve`` then serves it through Lab 07's gateway.

Everything lands in ``--workdir`` (default ``~/.cache/syslab/training``): the prepared dataset, the tracker
(``tracker.db``, which the dashboard reads live), each run's checkpoints and the model registry.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lab_core.training.config import PRECISIONS, STRATEGIES, TrainConfig
from lab_core.training.paths import default_workdir

DEMO_STEPS = 120


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``syslab demo training``."""
    parser.add_argument("--nproc", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--strategy", default="ddp", choices=STRATEGIES, help="parallelism (default ddp)")
    parser.add_argument("--tp", type=int, default=1, help="tensor-parallel size for fsdp+tp (default 1)")
    parser.add_argument("--model", default="tiny", help="model preset (default tiny)")
    parser.add_argument("--steps", type=int, default=DEMO_STEPS, help=f"optimiser steps (default {DEMO_STEPS})")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step (default 1)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="fp32 or bf16 autocast")
    parser.add_argument("--async-checkpoint", action="store_true", help="write checkpoints in the background")
    parser.add_argument(
        "--workdir", type=Path, help="data, tracker, checkpoints, registry (default ~/.cache/syslab/training)"
    )
    parser.add_argument("--serve", action="store_true", help="then serve the trained model with Lab 07's gateway")


def run_demo(args: argparse.Namespace) -> int:
    """Train, evaluate, register; optionally serve."""
    from lab_core.training import launch
    from lab_core.training.publish import publish_run

    config = TrainConfig(
        model=args.model,
        strategy=args.strategy,
        tp=args.tp,
        steps=args.steps,
        grad_accum=args.grad_accum,
        precision=args.precision,
        checkpoint_every=max(1, args.steps // 4),
        async_checkpoint=args.async_checkpoint,
    )
    workdir = Path(args.workdir or default_workdir())
    print(f"training {config.model} with {config.strategy} on {args.nproc} process(es); workdir {workdir}")
    job = launch.run(config, workdir=workdir, nproc=args.nproc)
    name = f"demo-{config.model}"
    version, result = publish_run(job.run_dir, str(workdir / "data"), workdir / "registry", name, run_id=job.run_id)
    logdir = job.tracker.export_tensorboard(job.run_id, workdir / "tensorboard")
    losses = job.tracker.metrics(job.run_id, ["loss"])["value"]
    print(
        f"run {job.run_id}: loss {losses.iloc[0]:.3f} -> {losses.iloc[-1]:.3f}; held-out perplexity "
        f"{result.perplexity:.2f}"
    )
    print(f"registered {name} v{version.version} ({version.stage}) in {workdir / 'registry'}")
    for sample in result.samples[:3]:
        print(f"  {sample['prompt']!r} -> {sample['output']!r}")
    print(f"TensorBoard: tensorboard --logdir {logdir}")
    print(f"dashboard:   syslab serve --lab training   (SYSLAB_TRAINING_DIR={workdir})")
    serve = f"syslab demo serving --registry {workdir / 'registry'} --registered {name}:{version.stage}"
    if not args.serve:
        print(f"serve it:    {serve}")
        return 0
    # Lab 07's own command, not its demo module: one lab never imports another lab's demo.
    argv = [
        sys.executable,
        "-m",
        "lab_core.cli",
        "demo",
        "serving",
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--registry",
        str(workdir / "registry"),
        "--registered",
        f"{name}:{version.stage}",
    ]
    sys.stdout.flush()
    os.execv(sys.executable, argv)
