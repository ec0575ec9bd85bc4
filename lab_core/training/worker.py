"""The process ``torchrun`` starts on every rank: ``python -m lab_core.training.worker --config FILE ...``.

It joins the process group (gloo on CPU, NCCL when a GPU is present), trains, and leaves. Rank, world size
and rendezvous come from the environment ``torchrun`` sets, so the same command serves a fixed world, an
elastic one (``--nnodes MIN:MAX``) and a restart after a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from lab_core.training.config import TrainConfig
from lab_core.training.trainer import train


def init_process_group(backend: str) -> None:
    """Join the job's process group. Under torchrun the store outlives a restart, so each attempt gets a
    key prefix of its own: otherwise restarted ranks read the dead ranks' addresses and fail to connect."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        dist.init_process_group(backend)
        return
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False)
    dist.init_process_group(
        backend,
        store=dist.PrefixStore(f"attempt{attempt}", store),
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the job's files and flags, set up the process group, train."""
    parser = argparse.ArgumentParser(prog="lab_core.training.worker")
    parser.add_argument("--config", required=True, type=Path, help="TrainConfig as JSON")
    parser.add_argument("--data", required=True, help="object-store URL of the prepared dataset")
    parser.add_argument("--checkpoints", type=Path, help="checkpoint folder (resume from its newest)")
    parser.add_argument("--tracker", type=Path, help="tracker SQLite file (rank 0 logs)")
    parser.add_argument("--run-id", help="tracker run to log into")
    parser.add_argument("--fail-at-step", type=int, help="exit abruptly after this step on the first attempt")
    args = parser.parse_args(argv)
    config = TrainConfig.from_dict(json.loads(args.config.read_text()))
    distributed = "WORLD_SIZE" in os.environ
    device = torch.device("cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    # One GPU per rank when there are enough; otherwise every rank runs on the CPU (gloo), rather than
    # several ranks sharing a GPU that NCCL would refuse.
    if torch.cuda.is_available() and int(os.environ.get("LOCAL_WORLD_SIZE", 1)) <= torch.cuda.device_count():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if distributed:
        init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        train(
            config,
            data_url=args.data,
            checkpoint_dir=args.checkpoints,
            tracker_path=args.tracker,
            run_id=args.run_id,
            device=device,
            fail_at_step=args.fail_at_step,
        )
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
