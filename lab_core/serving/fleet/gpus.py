"""Hardware and model specs, and the step-time model the fleet simulator charges per engine step.

A :class:`StepTimeModel` is six coefficients: either derived from a GPU's roofline
(:func:`roofline_step_model`) or fitted to steps measured on the real engine (:func:`fit_step_model`),
which is how "this CPU" enters the simulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike

from lab_core.llm.gpus import GPU

Num = float | np.ndarray

STEP_OVERHEAD_S = 2e-3
"""Assumed fixed cost of one engine step (kernel launches, scheduling, sampling) on a GPU."""


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer, as far as serving cost is concerned."""

    name: str
    params: float
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    bytes_per_param: int = 2  # bf16

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes of K and V one token keeps in the cache across all layers."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * self.bytes_per_param

    @property
    def weight_bytes(self) -> float:
        """Bytes of the weights (read once per decode step)."""
        return self.params * self.bytes_per_param

    @property
    def d_model(self) -> int:
        """Hidden size (query heads times head size)."""
        return self.n_heads * self.head_dim


MODELS: dict[str, ModelSpec] = {
    "8B": ModelSpec("Llama-3-8B", 8.03e9, n_layers=32, n_heads=32, n_kv_heads=8, head_dim=128),
    "70B": ModelSpec("Llama-3-70B", 70.6e9, n_layers=80, n_heads=64, n_kv_heads=8, head_dim=128),
}


@dataclass(frozen=True)
class StepTimeModel:
    """Seconds per engine step: ``prefill_time(t) = a + b*t + c*t**2`` for ``t`` prompt tokens and
    ``decode_time(S, B) = a + b*S + c*B`` for ``B`` sequences holding ``S`` context tokens in all.
    A step doing both costs the two plus ``mix_overhead`` (default ``-min(prefill_a, decode_a)``:
    one fixed overhead paid once, as on a GPU; a CPU engine is fitted instead, see ``fit_step_model``)."""

    prefill_a: float
    prefill_b: float
    prefill_c: float
    decode_a: float
    decode_b: float
    decode_c: float
    mix_overhead: float | None = None

    def __post_init__(self) -> None:
        for name in ("prefill_a", "prefill_b", "prefill_c", "decode_a", "decode_b", "decode_c"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        low = -min(self.prefill_a, self.decode_a)
        if self.mix_overhead is not None and not (
            isinstance(self.mix_overhead, (int, float))
            and math.isfinite(self.mix_overhead)
            and self.mix_overhead >= low
        ):
            raise ValueError(
                f"mix_overhead must be a finite number >= -min(prefill_a, decode_a) = {low:g}, "
                f"got {self.mix_overhead!r}"
            )

    def prefill_time(self, tokens: Num) -> Num:
        """Seconds to prefill ``tokens`` prompt tokens in one step."""
        return self.prefill_a + self.prefill_b * tokens + self.prefill_c * tokens * tokens

    def decode_time(self, sum_context: Num, batch: Num) -> Num:
        """Seconds for one decode step of ``batch`` sequences with ``sum_context`` cached tokens."""
        return self.decode_a + self.decode_b * sum_context + self.decode_c * batch

    def mixed_step_time(self, prefill_tokens: Num, decode_batch: Num, sum_context: Num) -> Num:
        """Seconds for a step that prefills ``prefill_tokens`` and decodes ``decode_batch`` sequences.

        Both parts run in the same forward pass: the step costs the two parts plus ``mix_overhead``
        (by default minus one fixed overhead, paid once, not twice); a step with only one part
        costs exactly that part.
        """
        # Plain comparisons and inlined terms keep Python scalars fast: this is the simulator's hot loop.
        has_p = prefill_tokens > 0
        has_d = decode_batch > 0
        pa, da = self.prefill_a, self.decode_a
        mix = -min(pa, da) if self.mix_overhead is None else self.mix_overhead
        return (
            has_p * (pa + self.prefill_b * prefill_tokens + self.prefill_c * prefill_tokens * prefill_tokens)
            + has_d * (da + self.decode_b * sum_context + self.decode_c * decode_batch)
            + (has_p & has_d) * mix
        )


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def roofline_step_model(gpu: GPU, model: ModelSpec, tp: int = 1, *, overhead: float = STEP_OVERHEAD_S) -> StepTimeModel:
    """A step-time model from first principles: prefill compute-bound, decode memory-bound.

    Prefill: ``2*params`` FLOPs per token plus attention ``4*n_layers*d_model*t**2`` (QK^T and AV,
    2 FLOPs per multiply-add, causal savings ignored) at ``peak*mfu*tp``. Decode: every step reads all
    weights (``a``) and each sequence's KV (``b`` per context token) at ``bandwidth*efficiency*tp``,
    plus ``2*params`` FLOPs per sequence (``c``). Both add ``overhead`` seconds per step.
    """
    tp = _positive_int("tp", tp)
    flops = gpu.peak_flops * gpu.mfu * tp
    bandwidth = gpu.mem_bandwidth * gpu.bw_efficiency * tp
    return StepTimeModel(
        prefill_a=overhead,
        prefill_b=2 * model.params / flops,
        prefill_c=4 * model.n_layers * model.d_model / flops,
        decode_a=overhead + model.weight_bytes / bandwidth,
        decode_b=model.kv_bytes_per_token / bandwidth,
        decode_c=2 * model.params / flops,
    )


def _nonneg_lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Clipping a plain least-squares answer can leave the others biased; refitting without the
    # clipped columns (a tiny active-set loop) keeps them the best fit given the zeros.
    active = np.ones(x.shape[1], dtype=bool)
    coef = np.zeros(x.shape[1])
    while active.any():
        sol = np.linalg.lstsq(x[:, active], y, rcond=None)[0]
        if (sol >= 0).all():
            coef[active] = sol
            break
        idx = np.flatnonzero(active)
        active[idx[np.argmin(sol)]] = False
    return coef


def fit_step_model(
    prefill_samples: ArrayLike, decode_samples: ArrayLike, mixed_samples: ArrayLike | None = None
) -> StepTimeModel:
    """Least-squares coefficients (all >= 0) from measured steps.

    ``prefill_samples`` rows are ``(tokens, seconds)``; ``decode_samples`` rows are
    ``(sum_context, batch, seconds)``. Each needs at least three rows. ``mixed_samples`` rows,
    ``(prefill_tokens, decode_batch, sum_context, seconds)``, fit ``mix_overhead``: the median of
    what a mixed step cost beyond its two parts.
    """
    p = np.asarray(prefill_samples, dtype=float)
    d = np.asarray(decode_samples, dtype=float)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 3 or not np.isfinite(p).all():
        raise ValueError(f"prefill_samples must be >= 3 finite rows (tokens, seconds), got shape {p.shape}")
    if d.ndim != 2 or d.shape[1] != 3 or d.shape[0] < 3 or not np.isfinite(d).all():
        raise ValueError(f"decode_samples must be >= 3 finite rows (sum_context, batch, seconds), got shape {d.shape}")
    t = p[:, 0]
    pa, pb, pc = _nonneg_lstsq(np.column_stack([np.ones_like(t), t, t * t]), p[:, 1])
    da, db, dc = _nonneg_lstsq(np.column_stack([np.ones(len(d)), d[:, 0], d[:, 1]]), d[:, 2])
    model = StepTimeModel(float(pa), float(pb), float(pc), float(da), float(db), float(dc))
    if mixed_samples is None:
        return model
    m = np.asarray(mixed_samples, dtype=float)
    if m.ndim != 2 or m.shape[1] != 4 or m.shape[0] < 1 or not np.isfinite(m).all():
        raise ValueError(
            f"mixed_samples must be finite rows (prefill_tokens, decode_batch, sum_context, seconds), "
            f"got shape {m.shape}"
        )
    parts = model.prefill_time(m[:, 0]) + model.decode_time(m[:, 2], m[:, 1])
    mix = max(float(np.median(m[:, 3] - parts)), -min(model.prefill_a, model.decode_a))
    return replace(model, mix_overhead=mix)


def decode_tokens_per_s_bound(gpu: GPU, model: ModelSpec, batch: int, context: int, tp: int = 1) -> float:
    """Roofline ceiling on decode tokens/s (peak numbers, no efficiency factors).

    ``batch / max(memory_time, compute_time)`` with memory time
    ``(weight_bytes + batch*context*kv_bytes_per_token) / bandwidth`` and compute time
    ``batch*2*params / peak_flops``, both over ``tp`` GPUs.
    """
    batch = _positive_int("batch", batch)
    tp = _positive_int("tp", tp)
    if isinstance(context, bool) or not isinstance(context, (int, np.integer)) or context < 0:
        raise ValueError(f"context must be an integer >= 0, got {context!r}")
    memory = (model.weight_bytes + batch * context * model.kv_bytes_per_token) / (gpu.mem_bandwidth * tp)
    compute = batch * 2 * model.params / (gpu.peak_flops * tp)
    return batch / max(memory, compute)


def kv_capacity_tokens(gpu: GPU, model: ModelSpec, tp: int = 1, reserve: float = 0.1) -> int:
    """Tokens of KV cache that fit in ``tp`` GPUs after the weights and a ``reserve`` fraction."""
    tp = _positive_int("tp", tp)
    if not (isinstance(reserve, (int, float)) and 0 <= reserve < 1):
        raise ValueError(f"reserve must be in [0, 1), got {reserve!r}")
    free = gpu.memory * tp * (1 - reserve) - model.weight_bytes
    if free < model.kv_bytes_per_token:
        raise ValueError(
            f"tp={tp}: {model.name} weights ({model.weight_bytes / 1e9:.1f} GB) leave no KV room "
            f"on {tp} x {gpu.name}; raise tp"
        )
    return int(free // model.kv_bytes_per_token)
