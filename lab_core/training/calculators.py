"""Back-of-the-envelope numbers for distributed training: memory per GPU by strategy, ZeRO stages,
checkpoint sizes, the Young/Daly checkpoint interval, and the layout of a DP x TP x PP device mesh.

Pure arithmetic (no torch), checked against measured tensors in ``tests/training/test_training_calculators_measured.py``.
References: Rajbhandari et al. 2020 (ZeRO) for model state; Korthikanti et al. 2022 ("Reducing Activation
Recomputation in Large Transformer Models") for activations; Young 1974 / Daly 2006 for checkpoint intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
import pandas as pd

from lab_core.llm.config import ModelConfig
from lab_core.training.config import MODEL_AXES

STRATEGIES: tuple[str, ...] = ("ddp", "zero1", "zero2", "zero3", "fsdp", "tp", "pp", "fsdp+tp")
#: Bytes per parameter of (weights, gradients, optimizer state) under AdamW. Mixed precision is the ZeRO
#: paper's accounting: bf16 weights and grads, fp32 master weights + Adam m and v (K = 12).
PRECISIONS: dict[str, tuple[int, int, int]] = {"bf16-mixed": (2, 2, 12), "fp32": (4, 4, 8)}
#: Optimizer state tensors per parameter that a checkpoint stores.
OPTIMIZER_STATES: dict[str, int] = {"adamw": 2, "adam": 2, "sgd-momentum": 1, "none": 0}
GB = 1e9

# Which mesh axes each strategy uses (the jobs' rule in config.MODEL_AXES, plus data parallelism), and how it
# shards model state over the data-parallel axis: (shards optimizer, shards grads, shards params).
_USES: dict[str, frozenset[str]] = {s: frozenset({"dp"}) | MODEL_AXES[s] for s in STRATEGIES}
_DP_SHARDING: dict[str, tuple[bool, bool, bool]] = {
    "ddp": (False, False, False),
    "zero1": (True, False, False),
    "zero2": (True, True, False),
    "zero3": (True, True, True),
    "fsdp": (True, True, True),
    "tp": (False, False, False),
    "pp": (False, False, False),
    "fsdp+tp": (True, True, True),
}


class MeshError(ValueError):
    """A DP x TP x PP layout that cannot run; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes one GPU holds: weights, gradients, optimizer state and saved activations."""

    params: float
    grads: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        """All four together, bytes."""
        return self.params + self.grads + self.optimizer + self.activations

    def as_dict(self, scale: float = 1.0) -> dict[str, float]:
        """The four parts (and ``total``) divided by ``scale`` (``GB`` for gigabytes)."""
        out = {f.name: getattr(self, f.name) / scale for f in fields(self)}
        out["total"] = self.total / scale
        return out


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _positive(name: str, value: object, *, zero_ok: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero_ok)
    ):
        kind = "a non-negative" if zero_ok else "a positive"
        raise ValueError(f"{name} must be {kind} finite number, got {value!r}")
    return float(value)


def _num_params(model: ModelConfig | int) -> int:
    if isinstance(model, ModelConfig):
        return model.num_params()
    return _positive_int("model (number of parameters)", model)


def _stage_params(model: ModelConfig | int, tp: int, pp: int) -> list[float]:
    """Parameters one GPU of each pipeline stage holds after tensor parallelism.

    Layers are split as evenly as possible, the first stages taking the remainder; the embedding sits on the
    first stage, the final norm and output head on the last. TP shards every linear layer and, Megatron-style,
    the embedding and head along the vocabulary; the RMSNorm weights stay replicated.
    """
    if not isinstance(model, ModelConfig):
        return [_num_params(model) / (tp * pp)] * pp
    c = model
    norms = 2 * c.dim
    sharded = c.num_params() - c.n_layers * norms - 2 * c.vocab_size * c.dim - c.dim
    per_layer = sharded / c.n_layers / tp + norms
    layers = [len(part) for part in np.array_split(np.arange(c.n_layers), pp)]
    stages = [n * per_layer for n in layers]
    stages[0] += c.vocab_size * c.dim / tp
    stages[-1] += c.vocab_size * c.dim / tp + c.dim
    return stages


def activation_bytes_per_layer(
    model: ModelConfig,
    *,
    micro_batch: int,
    seq_len: int,
    tp: int = 1,
    precision: str = "bf16-mixed",
    activation_checkpointing: bool = False,
    flash_attention: bool = False,
) -> float:
    """Activations one transformer layer saves for backward for one micro-batch (Korthikanti et al. 2022).

    ``s*b*h*(34 + 5*a*s/h)`` bytes in 16-bit, ``2*s*b*h`` (the layer's input only) with full recompute; divided
    by ``tp`` (tensor plus sequence parallelism); doubled in fp32. ``flash_attention`` drops the ``5*a*s/h``
    term: a fused kernel never stores the s x s attention scores. GQA's smaller K/V are not credited.
    """
    s, b, h, a = seq_len, micro_batch, model.dim, model.n_heads
    scores = 0.0 if flash_attention else 5 * a * s / h
    per = 2.0 * s * b * h if activation_checkpointing else s * b * h * (34 + scores)
    return per / tp * (2 if precision == "fp32" else 1)


def memory_per_gpu(
    model: ModelConfig | int,
    strategy: str,
    *,
    dp: int = 1,
    tp: int = 1,
    pp: int = 1,
    micro_batch: int = 1,
    seq_len: int = 2048,
    precision: Literal["bf16-mixed", "fp32"] = "bf16-mixed",
    activation_checkpointing: bool = False,
    microbatches_in_flight: int | None = None,
    flash_attention: bool = False,
) -> MemoryBreakdown:
    """Bytes on the busiest GPU training ``model`` with AdamW under ``strategy`` on a dp x tp x pp mesh.

    ``ddp`` replicates everything over ``dp``; ``zero1`` shards the optimizer state, ``zero2`` also the
    gradients, ``zero3``/``fsdp`` also the weights. ``tp`` and ``pp`` run DDP over ``dp`` replicas of a
    tensor- or pipeline-parallel model; ``fsdp+tp`` is FSDP over ``dp`` of a TP model. A strategy's unused
    axes must be 1. Pipeline stages hold ``microbatches_in_flight`` micro-batches of activations (GPipe: all
    m; default 1F1B: stage i holds pp - i). With full recompute the backward pass also rebuilds one layer's
    full activations at a time; that transient is counted. ``flash_attention``: see
    :func:`activation_bytes_per_layer`. Logits, temporary buffers, FSDP's all-gathered
    layer and allocator fragmentation are not. ``model`` as a parameter count: TP and PP divide it evenly and
    activations are 0 (they need the model's shape).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    dp, tp, pp = (_positive_int(n, v) for n, v in (("dp", dp), ("tp", tp), ("pp", pp)))
    micro_batch = _positive_int("micro_batch", micro_batch)
    seq_len = _positive_int("seq_len", seq_len)
    for axis, size in (("tp", tp), ("pp", pp)):
        if axis not in _USES[strategy] and size != 1:
            raise ValueError(f"strategy {strategy!r} does not use {axis}: {axis} must be 1, got {size}")
    if microbatches_in_flight is not None:
        microbatches_in_flight = _positive_int("microbatches_in_flight", microbatches_in_flight)
        if pp == 1 and microbatches_in_flight != 1:
            raise ValueError(
                f"microbatches_in_flight applies to pipeline parallelism (pp > 1), got "
                f"{microbatches_in_flight} with pp=1"
            )
    if isinstance(model, ModelConfig):
        validate_mesh(
            dp * tp * pp, dp, tp, pp, n_heads=model.n_heads, n_kv_heads=model.n_kv_heads, n_layers=model.n_layers
        )
    pb, gb, ob = PRECISIONS[precision]
    shard_opt, shard_grads, shard_params = _DP_SHARDING[strategy]
    stage_params = _stage_params(model, tp, pp)
    layers, saved, working = [0] * pp, 0.0, 0.0
    if isinstance(model, ModelConfig):
        layers = [len(part) for part in np.array_split(np.arange(model.n_layers), pp)]
        saved, full = (
            activation_bytes_per_layer(
                model,
                micro_batch=micro_batch,
                seq_len=seq_len,
                tp=tp,
                precision=precision,
                activation_checkpointing=recompute,
                flash_attention=flash_attention,
            )
            for recompute in (activation_checkpointing, False)
        )
        working = full if activation_checkpointing else 0.0
    stages = []
    for stage, (params, n_layers) in enumerate(zip(stage_params, layers)):
        in_flight = microbatches_in_flight if microbatches_in_flight is not None else pp - stage
        stages.append(
            MemoryBreakdown(
                params=params * pb / (dp if shard_params else 1),
                grads=params * gb / (dp if shard_grads else 1),
                optimizer=params * ob / (dp if shard_opt else 1),
                activations=n_layers * in_flight * saved + (working if n_layers else 0.0),
            )
        )
    return max(stages, key=lambda m: m.total)


def zero_memory(num_params: int, stage: int, dp: int, *, k: float = 12) -> float:
    """Model-state bytes per GPU at ZeRO ``stage`` (0..3) over ``dp`` ranks, the paper's formula with bf16
    weights and grads (2 B each) and ``k`` bytes of optimizer state per parameter."""
    psi = _num_params(num_params)
    dp = _positive_int("dp", dp)
    k = _positive("k", k, zero_ok=True)
    if stage not in (0, 1, 2, 3) or isinstance(stage, bool):
        raise ValueError(f"stage must be 0, 1, 2 or 3, got {stage!r}")
    return [
        (2 + 2 + k) * psi,
        2 * psi + 2 * psi + k * psi / dp,
        2 * psi + (2 + k) * psi / dp,
        (2 + 2 + k) * psi / dp,
    ][stage]


def checkpoint_bytes(model: ModelConfig | int, *, optimizer: str = "adamw", param_bytes: int = 4) -> int:
    """Bytes of a training checkpoint's tensors: weights plus the optimizer's per-parameter state (AdamW: m and
    v), all at ``param_bytes`` each; about 3x the fp32 model for AdamW."""
    if optimizer not in OPTIMIZER_STATES:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZER_STATES)}")
    param_bytes = _positive_int("param_bytes", param_bytes)
    return _num_params(model) * param_bytes * (1 + OPTIMIZER_STATES[optimizer])


def checkpoint_ratio(*, optimizer: str = "adamw", param_bytes: int = 4, weights_bytes: int | None = None) -> float:
    """A training checkpoint's size over a weights-only file of ``weights_bytes`` per parameter (default
    ``param_bytes``): 3 for AdamW in fp32, 6 against a bf16 export."""
    ref = _positive_int("weights_bytes", weights_bytes if weights_bytes is not None else param_bytes)
    return checkpoint_bytes(1, optimizer=optimizer, param_bytes=param_bytes) / ref


def job_mtbf(gpu_mtbf_s: float, n_gpus: int) -> float:
    """Mean time between failures of a job on ``n_gpus`` GPUs that each fail independently (exponential),
    any one failure stopping the job: the per-GPU MTBF over the count."""
    return _positive("gpu_mtbf_s", gpu_mtbf_s) / _positive_int("n_gpus", n_gpus)


def young_daly_interval(checkpoint_s: float, mtbf_s: float) -> float:
    """The compute time between checkpoints minimising lost time, ``sqrt(2 C M)`` (Young's first-order optimum)."""
    return math.sqrt(2 * _positive("checkpoint_s", checkpoint_s) * _positive("mtbf_s", mtbf_s))


def expected_overhead(interval_s: float, checkpoint_s: float, mtbf_s: float, restart_s: float = 0.0) -> float:
    """Fraction of time lost, to first order: ``C/tau`` writing checkpoints plus ``(tau/2 + R)/M`` redoing half an
    interval and restarting after each failure. Valid while tau and C are well below M."""
    tau = _positive("interval_s", interval_s)
    c = _positive("checkpoint_s", checkpoint_s, zero_ok=True)
    m = _positive("mtbf_s", mtbf_s)
    r = _positive("restart_s", restart_s, zero_ok=True)
    return c / tau + (tau / 2 + r) / m


def interval_tradeoff(
    checkpoint_s: float, mtbf_s: float, restart_s: float = 0.0, intervals: np.ndarray | list[float] | None = None
) -> pd.DataFrame:
    """Lost-time fractions across checkpoint intervals: interval_s, checkpoint_overhead (C/tau), lost_work
    ((tau/2 + R)/M) and total. Default: 81 intervals from 1/20 to 20x the Young/Daly optimum (log spaced)."""
    if intervals is None:
        best = young_daly_interval(checkpoint_s, mtbf_s)
        intervals = np.geomspace(best / 20, best * 20, 81)
    tau = np.asarray(intervals, dtype=float)
    if tau.ndim != 1 or not len(tau) or not np.all(np.isfinite(tau)) or np.any(tau <= 0):
        raise ValueError("intervals must be a non-empty list of positive finite seconds")
    c = _positive("checkpoint_s", checkpoint_s, zero_ok=True)
    m = _positive("mtbf_s", mtbf_s)
    r = _positive("restart_s", restart_s, zero_ok=True)
    ckpt = c / tau
    lost = (tau / 2 + r) / m
    return pd.DataFrame({"interval_s": tau, "checkpoint_overhead": ckpt, "lost_work": lost, "total": ckpt + lost})


def mesh_layout(dp: int, tp: int, pp: int, gpus_per_node: int = 8) -> pd.DataFrame:
    """Every rank's coordinates in a (pp, dp, tp) device mesh, torch's row-major order: pp outermost, tp
    innermost so a TP group is consecutive ranks (one node, NVLink). Columns rank, dp, tp, pp, node, local."""
    dp, tp, pp = (_positive_int(n, v) for n, v in (("dp", dp), ("tp", tp), ("pp", pp)))
    gpus_per_node = _positive_int("gpus_per_node", gpus_per_node)
    rank = np.arange(dp * tp * pp)
    return pd.DataFrame(
        {
            "rank": rank,
            "dp": rank // tp % dp,
            "tp": rank % tp,
            "pp": rank // (tp * dp),
            "node": rank // gpus_per_node,
            "local": rank % gpus_per_node,
        }
    )


def validate_mesh(
    world_size: int,
    dp: int,
    tp: int,
    pp: int,
    *,
    n_heads: int | None = None,
    n_kv_heads: int | None = None,
    n_layers: int | None = None,
    gpus_per_node: int | None = None,
) -> None:
    """Raise :class:`MeshError` (a ValueError) naming every reason the layout cannot run: sizes that do not
    multiply to the world size, TP not dividing the (KV) heads, more stages than layers, or TP groups that
    would straddle nodes (TP's per-layer all-reduces need NVLink)."""
    problems = []
    sizes = {
        "world_size": world_size,
        "dp": dp,
        "tp": tp,
        "pp": pp,
        "n_heads": n_heads,
        "n_kv_heads": n_kv_heads,
        "n_layers": n_layers,
        "gpus_per_node": gpus_per_node,
    }
    for name, value in sizes.items():
        optional = name in ("n_heads", "n_kv_heads", "n_layers", "gpus_per_node")
        if optional and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            problems.append(f"{name} must be a positive integer, got {value!r}")
    if problems:
        raise MeshError(problems)
    if dp * tp * pp != world_size:
        problems.append(f"dp x tp x pp = {dp} x {tp} x {pp} = {dp * tp * pp} does not match world_size {world_size}")
    if n_heads is not None and n_heads % tp:
        problems.append(f"tp {tp} does not divide n_heads {n_heads}")
    if n_kv_heads is not None and n_kv_heads % tp:
        problems.append(f"tp {tp} does not divide n_kv_heads {n_kv_heads}")
    if n_layers is not None and pp > n_layers:
        problems.append(f"pp {pp} is more pipeline stages than n_layers {n_layers}")
    if gpus_per_node is not None and (tp > gpus_per_node or gpus_per_node % tp):
        problems.append(f"tp {tp} must divide gpus_per_node {gpus_per_node} so each TP group stays within a node")
    if problems:
        raise MeshError(problems)
