"""A training job's settings: one dataclass that checks itself, and the mesh it implies for a world size.

``TrainConfig.mesh(world_size)`` runs before ``torchrun`` is started, so a tensor-parallel size that does
not divide the heads, or a world that does not fit the mesh, fails with a message naming the field instead
of a stack trace from inside a collective.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from lab_core.llm.config import ModelConfig, get_config

STRATEGIES = ("single", "ddp", "fsdp", "tp", "fsdp+tp", "pp")
PRECISIONS = ("fp32", "bf16")
PP_SCHEDULES = ("gpipe", "1f1b")
#: The axes besides data parallelism that each strategy splits the model over: jobs here and the memory
#: calculators (whose ZeRO stages shard over data parallelism only) read this one rule.
MODEL_AXES: dict[str, frozenset[str]] = {
    "single": frozenset(),
    "ddp": frozenset(),
    "zero1": frozenset(),
    "zero2": frozenset(),
    "zero3": frozenset(),
    "fsdp": frozenset(),
    "tp": frozenset({"tp"}),
    "pp": frozenset({"pp"}),
    "fsdp+tp": frozenset({"tp"}),
}


@dataclass(frozen=True)
class Mesh:
    """How ``world`` ranks split into data-parallel replicas, tensor-parallel groups and pipeline stages."""

    dp: int
    tp: int
    pp: int

    @property
    def world(self) -> int:
        """Ranks in all."""
        return self.dp * self.tp * self.pp


def strategy_mesh(strategy: str, world: int, *, tp: int = 1, pp: int = 1) -> Mesh:
    """The mesh ``strategy`` uses on ``world`` ranks given the requested ``tp`` and ``pp``: an axis it does not
    split the model over is 1, and the ranks left over are data parallel (ValueError when they do not divide)."""
    if strategy not in MODEL_AXES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(MODEL_AXES)}")
    used_tp = tp if "tp" in MODEL_AXES[strategy] else 1
    used_pp = pp if "pp" in MODEL_AXES[strategy] else 1
    if world % (used_tp * used_pp):
        raise ValueError(f"world size {world} does not fit the mesh: tp={used_tp} x pp={used_pp} must divide it")
    return Mesh(world // (used_tp * used_pp), used_tp, used_pp)


@dataclass(frozen=True)
class TrainConfig:
    """Model, parallelism, optimisation, checkpointing. Sizes are per rank unless named global."""

    model: str = "tiny"
    strategy: str = "ddp"
    tp: int = 1
    pp: int = 1
    pp_schedule: str = "1f1b"
    pp_microbatches: int = 4
    steps: int = 60
    micro_batch: int = 8
    grad_accum: int = 1
    seq_len: int = 64
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 10
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    precision: str = "fp32"
    seed: int = 0
    checkpoint_every: int = 0
    keep_last: int = 3
    async_checkpoint: bool = False
    log_every: int = 1

    def __post_init__(self) -> None:
        choices = {"strategy": STRATEGIES, "precision": PRECISIONS, "pp_schedule": PP_SCHEDULES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        positive = (
            "tp",
            "pp",
            "pp_microbatches",
            "steps",
            "micro_batch",
            "grad_accum",
            "seq_len",
            "keep_last",
            "log_every",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        for name in ("warmup_steps", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer; got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1]; got {self.min_lr_ratio!r}")
        if not self.grad_clip >= 0:
            raise ValueError(f"grad_clip must be >= 0 (0 turns clipping off); got {self.grad_clip!r}")
        if self.tp > 1 and self.strategy not in ("tp", "fsdp+tp"):
            raise ValueError(f"tp={self.tp} needs strategy 'tp' or 'fsdp+tp'; got {self.strategy!r}")
        if self.pp > 1 and self.strategy != "pp":
            raise ValueError(f"pp={self.pp} needs strategy 'pp'; got {self.strategy!r}")
        if self.strategy == "pp" and self.micro_batch % self.pp_microbatches:
            raise ValueError(
                f"micro_batch ({self.micro_batch}) must split into pp_microbatches "
                f"({self.pp_microbatches}) equal pieces"
            )
        cfg = self.model_config()
        if self.seq_len > cfg.max_seq_len:
            raise ValueError(f"seq_len {self.seq_len} exceeds the model's max_seq_len {cfg.max_seq_len}")

    def model_config(self, vocab_size: int | None = None) -> ModelConfig:
        """The model's shape, with the tokenizer's vocabulary when given."""
        cfg = get_config(self.model)
        return dataclasses.replace(cfg, vocab_size=vocab_size) if vocab_size else cfg

    def mesh(self, world_size: int) -> Mesh:
        """The DP x TP x PP split of ``world_size`` ranks; ValueError naming the misfit when there is none."""
        if world_size < 1:
            raise ValueError(f"world size must be at least 1; got {world_size}")
        cfg = self.model_config()
        # Pure TP or PP with no size given spreads over every rank.
        tp = world_size if self.strategy == "tp" and self.tp == 1 else self.tp
        pp = world_size if self.strategy == "pp" and self.pp == 1 else self.pp
        if self.strategy == "single" and world_size != 1:
            raise ValueError(f"strategy 'single' runs on one process; world size is {world_size}")
        dp, tp, pp = dataclasses.astuple(strategy_mesh(self.strategy, world_size, tp=tp, pp=pp))
        if self.strategy == "tp" and dp != 1:
            raise ValueError(
                f"strategy 'tp' uses every rank for tensor parallelism: tp={tp} but world size is "
                f"{world_size}; use 'fsdp+tp' to add data parallelism"
            )
        if self.strategy == "pp" and dp != 1:
            raise ValueError(
                f"strategy 'pp' uses every rank as a pipeline stage: pp={pp} but world size is {world_size}"
            )
        for heads, name in ((cfg.n_heads, "n_heads"), (cfg.n_kv_heads, "n_kv_heads")):
            if heads % tp:
                raise ValueError(
                    f"tensor-parallel size {tp} does not divide the model's {name} ({heads}) for model {self.model!r}"
                )
        if cfg.ffn_dim % tp:
            raise ValueError(f"tensor-parallel size {tp} does not divide the model's ffn_dim ({cfg.ffn_dim})")
        if pp > cfg.n_layers:
            raise ValueError(f"pipeline size {pp} exceeds the model's {cfg.n_layers} layers")
        return Mesh(dp, tp, pp)

    def tokens_per_step(self, world_size: int) -> int:
        """Tokens in one optimiser step across all data-parallel replicas."""
        return self.micro_batch * self.grad_accum * self.mesh(world_size).dp * self.seq_len

    def to_json(self) -> str:
        """JSON text of the fields."""
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """From a mapping; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**data)
