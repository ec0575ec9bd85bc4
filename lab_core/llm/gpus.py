"""Accelerator datasheets shared by the labs that reason about GPUs: serving's fleet (07) and
training's MFU (08). Figures are vendor peaks (BF16 dense, HBM bandwidth, memory)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GPU:
    """One accelerator. ``mfu`` and ``bw_efficiency`` are assumptions: the fraction of peak FLOP/s a
    prefill reaches (~0.5) and of peak bandwidth a decode reaches (~0.8)."""

    name: str
    peak_flops: float  # bf16 dense FLOP/s
    mem_bandwidth: float  # bytes/s
    memory: float  # bytes
    mfu: float = 0.5
    bw_efficiency: float = 0.8


GPUS: dict[str, GPU] = {
    "H100-SXM": GPU("H100-SXM", peak_flops=989e12, mem_bandwidth=3.35e12, memory=80e9),
    # The H100's compute with more and faster HBM (HBM3e).
    "H200-SXM": GPU("H200-SXM", peak_flops=989e12, mem_bandwidth=4.8e12, memory=141e9),
    "A100-SXM": GPU("A100-SXM", peak_flops=312e12, mem_bandwidth=2.039e12, memory=80e9),
}
