"""Wrap the shared Transformer for one parallel strategy: DDP, FSDP2, tensor parallel, 2D FSDP x TP, or a
pipeline stage, all on ``torch.distributed`` (gloo on CPU, NCCL on GPU).

Each strategy answers the same questions for the trainer (:class:`Parallel`): which module the optimiser
and the checkpoint see, which data-parallel rank this process reads data for, how to skip the gradient
all-reduce on the micro-steps of an accumulation, and how to run one micro-step forward and backward.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from lab_core.llm.config import ModelConfig
from lab_core.llm.gpus import GPUS
from lab_core.llm.model import Transformer, build_model
from lab_core.training.config import Mesh, TrainConfig


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """BF16 autocast for ``precision == "bf16"`` (weights and optimizer stay FP32), else nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def tp_plan(cfg: ModelConfig) -> dict:
    """Megatron-style split of every block: q/k/v and the two up-projections by column (heads and hidden
    units to ranks), the output projections by row, so each block needs one all-reduce forward and one
    backward per sub-layer. Embedding, norms and head stay replicated."""
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    plan = {}
    for i in range(cfg.n_layers):
        for name in ("attn.wq", "attn.wk", "attn.wv", "ffn.w1", "ffn.w3"):
            plan[f"layers.{i}.{name}"] = ColwiseParallel()
        for name in ("attn.wo", "ffn.w2"):
            plan[f"layers.{i}.{name}"] = RowwiseParallel()
    return plan


def stage_layers(n_layers: int, pp: int, stage: int) -> range:
    """The layers of pipeline ``stage``: contiguous, as even as possible, earlier stages take the extra."""
    base, extra = divmod(n_layers, pp)
    start = stage * base + min(stage, extra)
    return range(start, start + base + (1 if stage < extra else 0))


class StageModule(nn.Module):
    """One pipeline stage of a :class:`Transformer`: the embedding on the first, the norm and head on the
    last. Parameter names match the full model's, so a checkpoint saved by stages loads into one model."""

    def __init__(self, full: Transformer, layers: range, *, first: bool, last: bool, precision: str) -> None:
        super().__init__()
        self.cfg, self.precision = full.cfg, precision
        self.embed = full.embed if first else None
        self.layers = nn.ModuleDict({str(i): full.layers[i] for i in layers})
        self.norm = full.norm if last else None
        self.head = full.head if last else None
        self.register_buffer("cos", full.cos, persistent=False)
        self.register_buffer("sin", full.sin, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids (first stage) or hidden states in; hidden states or logits (last stage) out."""
        with autocast(self.cos.device, self.precision):
            if self.embed is not None:
                x = self.embed(x)
            t = x.shape[1]
            cos, sin = self.cos[:t], self.sin[:t]
            for layer in self.layers.values():
                x = layer(x, cos, sin)
            if self.head is not None:
                x = self.head(self.norm(x)).float()
        return x


@dataclass
class Parallel:
    """A model laid out over the mesh, and how the trainer drives it."""

    module: nn.Module
    mesh: Mesh
    rank: int
    dp_rank: int
    device: torch.device
    config: TrainConfig
    schedule: object | None = None
    is_last_stage: bool = True

    @property
    def dp_size(self) -> int:
        """Data-parallel replicas: how many different batches one step sees."""
        return self.mesh.dp

    @contextlib.contextmanager
    def gradient_sync(self, enabled: bool) -> Iterator[None]:
        """All-reduce (or reduce-scatter) gradients only when ``enabled``: the accumulation's last
        micro-step. Earlier micro-steps just add into local gradients, so k micro-steps cost one
        collective, not k."""
        strategy = self.config.strategy
        if strategy == "ddp" and not enabled:
            with self.module.no_sync():
                yield
            return
        if strategy in ("fsdp", "fsdp+tp"):
            self.module.set_requires_gradient_sync(enabled)
        yield

    def micro_step(self, x: torch.Tensor, y: torch.Tensor, scale: float) -> float | None:
        """Forward and backward of one micro-batch, the loss scaled by ``scale`` (1 / accumulation
        steps) so accumulated gradients are the mean over the whole batch. Returns the unscaled loss,
        or None on pipeline stages that do not see it."""
        if self.schedule is not None:
            losses: list[torch.Tensor] = []
            first = self.module.embed is not None
            if first and self.is_last_stage:
                raise RuntimeError("a pipeline needs at least two stages")
            if first:
                self.schedule.step(x.to(self.device))
                return None
            self.schedule.step(target=y.to(self.device), losses=losses)
            return float(torch.stack([loss.detach() for loss in losses]).sum()) / scale
        with autocast(self.device, self.config.precision):
            loss = self.module(x.to(self.device), y.to(self.device))
        (loss * scale).backward()
        return float(loss.detach())


def _pipeline(
    config: TrainConfig, full: Transformer, mesh: Mesh, rank: int, device: torch.device, grad_accum: int
) -> tuple[StageModule, object]:
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    stage = StageModule(
        full,
        stage_layers(full.cfg.n_layers, mesh.pp, rank),
        first=rank == 0,
        last=rank == mesh.pp - 1,
        precision=config.precision,
    ).to(device)

    # The schedule's own scale_grads would rescale gradients accumulated by earlier steps too, so the
    # loss carries the whole 1 / (micro-batches x accumulation steps) instead.
    divisor = config.pp_microbatches * grad_accum

    def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten()) / divisor

    pipe_stage = PipelineStage(stage, rank, mesh.pp, device)
    kind = ScheduleGPipe if config.pp_schedule == "gpipe" else Schedule1F1B
    return stage, kind(pipe_stage, config.pp_microbatches, loss_fn=loss_fn, scale_grads=False)


def parallelize(config: TrainConfig, cfg: ModelConfig, *, device: torch.device | None = None) -> Parallel:
    """Build the model (seeded, identical on every rank) and lay it out for ``config.strategy`` over the
    current process group (or alone when none is initialised)."""
    device = device or torch.device("cpu")
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    mesh = config.mesh(world)
    full = build_model(cfg, seed=config.seed).train()
    if config.strategy == "pp":
        module, schedule = _pipeline(config, full, mesh, rank, device, config.grad_accum)
        return Parallel(module, mesh, rank, 0, device, config, schedule, is_last_stage=rank == mesh.pp - 1)
    full = full.to(device)
    if config.strategy in ("single",) or world == 1 and config.strategy == "ddp":
        return Parallel(full, mesh, rank, 0, device, config)
    if config.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return Parallel(DistributedDataParallel(full), mesh, rank, rank, device, config)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import parallelize_module

    if config.strategy == "fsdp":
        dp_mesh = init_device_mesh(device.type, (world,), mesh_dim_names=("dp",))
        for block in full.layers:
            fully_shard(block, mesh=dp_mesh)
        fully_shard(full, mesh=dp_mesh)
        return Parallel(full, mesh, rank, rank, device, config)
    device_mesh = init_device_mesh(device.type, (mesh.dp, mesh.tp), mesh_dim_names=("dp", "tp"))
    parallelize_module(full, device_mesh["tp"], tp_plan(cfg))
    if config.strategy == "fsdp+tp":
        for block in full.layers:
            fully_shard(block, mesh=device_mesh["dp"])
        fully_shard(full, mesh=device_mesh["dp"])
    return Parallel(full, mesh, rank, device_mesh["dp"].get_local_rank(), device, config)


def grad_norm_and_clip(params: list[nn.Parameter], max_norm: float, *, pipeline: bool = False) -> float:
    """The global L2 norm of all gradients (sharded, replicated or split over pipeline stages), and clip
    them to ``max_norm`` when it is > 0. Sharded (DTensor) norms are reduced by DTensor itself."""
    from torch.distributed.tensor import DTensor

    total = torch.zeros((), dtype=torch.float64)
    grads = [p.grad for p in params if p.grad is not None]
    for g in grads:
        norm = g.norm(dtype=torch.float32) if not isinstance(g, DTensor) else g.norm(dtype=torch.float32).full_tensor()
        total += norm.double().cpu() ** 2
    if pipeline and dist.is_initialized():
        dist.all_reduce(total)
    norm = math.sqrt(float(total))
    if max_norm > 0 and norm > max_norm:
        coef = max_norm / (norm + 1e-6)
        for g in grads:
            g.mul_(coef)
    return norm


class WarmupCosine:
    """LR multiplier: linear warmup, then cosine decay to ``min_ratio`` at ``total`` steps. A class, not a
    lambda, so ``LambdaLR.state_dict`` saves it and a resumed scheduler continues the same curve."""

    def __init__(self, warmup: int, total: int, min_ratio: float) -> None:
        self.warmup, self.total, self.min_ratio = warmup, total, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(
    module: nn.Module, config: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with weight decay on matrices only (not norms), and the warmup + cosine schedule."""
    decay = [p for p in module.parameters() if p.ndim >= 2]
    no_decay = [p for p in module.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.95),
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(config.warmup_steps, config.steps, config.min_lr_ratio))
    return opt, sched


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6 per weight (forward 2, backward 4) plus attention's score and value
    products, 12 x layers x dim x context (the PaLM paper's appendix B)."""
    return 6 * cfg.num_params() + 12 * cfg.n_layers * cfg.dim * seq_len


def datasheet_peak(name: str) -> float | None:
    """BF16 dense peak of a GPU by its CUDA device name, from the shared GPU datasheets, or None for a
    GPU without a spec."""
    for key, spec in (("H100", "H100-SXM"), ("H200", "H200-SXM"), ("A100", "A100-SXM")):
        if key in name:
            return GPUS[spec].peak_flops
    return None


def peak_flops(device: torch.device, measure: Callable[[torch.device], float] | None = None) -> float:
    """Peak FLOP/s of one rank's device: the BF16 dense datasheet figure for known GPUs, else a measured
    matrix-multiply rate on that device, so MFU is against what it can actually do."""
    if device.type == "cuda" and (peak := datasheet_peak(torch.cuda.get_device_name(device))) is not None:
        return peak
    return (measure or measure_matmul_flops)(device)


CPU = torch.device("cpu")


def measure_matmul_flops(device: torch.device = CPU, n: int = 384, repeats: int = 6) -> float:
    """Best matmul rate of an ``n x n`` product on ``device`` (FP32 on CPU, BF16 on GPU)."""
    import time

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = n if device.type != "cuda" else 4096
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device, dtype)
    b = torch.randn(n, n, generator=gen).to(device, dtype)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best
