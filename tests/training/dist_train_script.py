"""Run under torchrun (2 ranks): short trainings with every 2-rank strategy on one prepared dataset, in one
process group, and print {name: {step: loss}} on rank 0 as one JSON line. Usage: SCRIPT DATA_URL OUT_JSON."""

from __future__ import annotations

import dataclasses
import json
import sys

import torch.distributed as dist

from lab_core.training.config import TrainConfig
from lab_core.training.trainer import train

BASE = TrainConfig(steps=6, micro_batch=8, seq_len=32, warmup_steps=2, grad_clip=1.0)
RUNS = {
    "ddp": BASE,
    "fsdp": dataclasses.replace(BASE, strategy="fsdp"),
    "tp": dataclasses.replace(BASE, strategy="tp"),
    "pp_1f1b": dataclasses.replace(BASE, strategy="pp", pp_schedule="1f1b"),
    "pp_gpipe": dataclasses.replace(BASE, strategy="pp", pp_schedule="gpipe"),
    "ddp_mb4": dataclasses.replace(BASE, micro_batch=4),
    "ddp_accum": dataclasses.replace(BASE, micro_batch=4, grad_accum=2),
    "fsdp_accum": dataclasses.replace(BASE, strategy="fsdp", micro_batch=4, grad_accum=2),
    "ddp_bf16": dataclasses.replace(BASE, precision="bf16"),
}


def main() -> None:
    data, out = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    losses = {name: train(config, data_url=data) for name, config in RUNS.items()}
    if dist.get_rank() == 0:
        with open(out, "w") as f:
            json.dump(losses, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
