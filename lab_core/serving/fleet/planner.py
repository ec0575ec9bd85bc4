"""Capacity planning on the fleet simulator: the smallest fleet (and prefill:decode split) that
meets an SLA for a workload, fleet size against load, and a check of the design brief's claims.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from lab_core.llm.gpus import GPU, GPUS
from lab_core.serving.fleet.gpus import MODELS, ModelSpec, StepTimeModel, decode_tokens_per_s_bound, kv_capacity_tokens
from lab_core.serving.fleet.simulator import SLA, FleetConfig, Workload, simulate

MODES = ("colocated", "disaggregated")
SPLITS = (0.25, 1 / 3, 0.5)
"""Prefill shares of a disaggregated fleet the planner tries (prompt-heavy loads want more)."""
CANDIDATE_COLUMNS = ["prefill", "decode", "total", "goodput_fraction", "ttft_p99", "tpot_p99", "meets"]


@dataclass
class PlanResult:
    """The smallest fleet found (``config`` is None when even ``max_gpus`` misses the target),
    its run's summary, and every candidate the search simulated."""

    config: FleetConfig | None
    summary: dict[str, float]
    candidates: pd.DataFrame

    @property
    def total_gpus(self) -> int | None:
        """GPUs in the chosen fleet."""
        return None if self.config is None else self.config.total_gpus


def min_tp(model: ModelSpec | str, gpu: GPU | str, workload: Workload | None = None) -> int:
    """Smallest power-of-two tensor parallelism whose KV room holds the workload's largest request."""
    model = MODELS[model] if isinstance(model, str) else model
    gpu = GPUS[gpu] if isinstance(gpu, str) else gpu
    need = 1 if workload is None else workload.max_prompt + workload.max_output
    for tp in (1, 2, 4, 8, 16):
        try:
            if kv_capacity_tokens(gpu, model, tp) >= need:
                return tp
        except ValueError:
            continue
    raise ValueError(f"model {model.name} does not fit on 16 x {gpu.name}")


def _splits(instances: int, modes: Sequence[str]) -> list[tuple[int, int]]:
    out = [(0, instances)] if "colocated" in modes else []
    if "disaggregated" in modes and instances >= 2:
        for share in SPLITS:
            p = min(instances - 1, max(1, round(instances * share)))
            if (p, instances - p) not in out:
                out.append((p, instances - p))
    return out


def plan_capacity(
    model: ModelSpec | str,
    gpu: GPU | StepTimeModel | str,
    workload: Workload,
    sla: SLA | None = None,
    *,
    max_gpus: int = 64,
    target_goodput_fraction: float = 0.95,
    modes: Sequence[str] = MODES,
    tp: int | None = None,
    base: FleetConfig | None = None,
    progress: Callable[[float], None] | None = None,
) -> PlanResult:
    """Smallest total GPUs (and split) whose simulated goodput fraction reaches the target.

    Doubles the fleet until one split meets the target, then binary-searches the total, trying
    colocated and a few prefill:decode shares at each size. ``base`` supplies the other knobs
    (and ``kv_tokens`` when ``gpu`` is a fitted StepTimeModel); ``tp`` defaults to the smallest that fits.
    """
    sla = sla or SLA()
    if not (isinstance(target_goodput_fraction, (int, float)) and 0 < target_goodput_fraction <= 1):
        raise ValueError(f"target_goodput_fraction must be in (0, 1], got {target_goodput_fraction!r}")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"modes must be a non-empty subset of {MODES}, got {modes!r}")
    if tp is None:
        tp = base.tp if base is not None else 1 if isinstance(gpu, StepTimeModel) else min_tp(model, gpu, workload)
    if not (isinstance(max_gpus, int) and max_gpus >= tp):
        raise ValueError(f"max_gpus must be an integer >= tp={tp}, got {max_gpus!r}")
    template = base or FleetConfig(model=model, gpu=gpu, tp=tp)
    template = replace(template, model=model, gpu=gpu, tp=tp)
    rows: list[dict[str, Any]] = []
    best: dict[int, tuple[FleetConfig, dict[str, float]] | None] = {}
    max_inst = max_gpus // tp
    steps_guess = 2 * max(1, math.ceil(math.log2(max_inst + 1))) + 1

    def meets_at(instances: int) -> bool:
        if instances not in best:
            found = None
            for p, d in _splits(instances, modes):
                cfg = replace(template, prefill_gpus=p * tp, decode_gpus=d * tp)
                summary = simulate(cfg, workload, sla=sla).summary
                ok = summary["goodput_fraction"] >= target_goodput_fraction
                rows.append(
                    dict(
                        prefill=p * tp,
                        decode=d * tp,
                        total=(p + d) * tp,
                        goodput_fraction=summary["goodput_fraction"],
                        ttft_p99=summary["ttft_p99"],
                        tpot_p99=summary["tpot_p99"],
                        meets=ok,
                    )
                )
                if ok and (found is None or summary["goodput_fraction"] > found[1]["goodput_fraction"]):
                    found = (cfg, summary)
            best[instances] = found
            if progress is not None:
                progress(min(0.99, len(best) / steps_guess))
        return best[instances] is not None

    lo, hi = 0, 1  # lo: largest size known to miss; hi: candidate that may meet
    while not meets_at(hi):
        lo = hi
        if hi == max_inst:
            break
        hi = min(2 * hi, max_inst)
    if best[hi] is not None:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if meets_at(mid):
                hi = mid
            else:
                lo = mid
        if hi > 1:
            meets_at(hi - 1)  # recorded so the table shows one size smaller missing
    if progress is not None:
        progress(1.0)
    candidates = pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)
    if best[hi] is None:
        return PlanResult(None, {}, candidates)
    cfg, summary = best[hi]
    return PlanResult(cfg, summary, candidates)


def fleet_vs_load(
    model: ModelSpec | str,
    gpu: GPU | str,
    rates: Iterable[float],
    sla: SLA | None = None,
    *,
    workload: Workload | None = None,
    **plan_kwargs: Any,
) -> pd.DataFrame:
    """Smallest fleet per arrival rate (``workload`` gives the rest of the traffic shape)."""
    template = workload or Workload()
    rows = []
    for rate in rates:
        plan = plan_capacity(model, gpu, replace(template, rate=rate, concurrency=None), sla, **plan_kwargs)
        cfg, s = plan.config, plan.summary
        rows.append(
            dict(
                rate=float(rate),
                prefill_gpus=cfg.prefill_gpus if cfg else math.nan,
                decode_gpus=cfg.decode_gpus if cfg else math.nan,
                total_gpus=cfg.total_gpus if cfg else math.nan,
                goodput_fraction=s.get("goodput_fraction", math.nan),
                tokens_per_s_per_gpu=s.get("tokens_per_s_per_gpu", math.nan),
                ttft_p99=s.get("ttft_p99", math.nan),
                tpot_p99=s.get("tpot_p99", math.nan),
            )
        )
    return pd.DataFrame(rows)


def brief_check(
    model: ModelSpec | str = "8B",
    gpu: GPU | str = "H100-SXM",
    workload: Workload | None = None,
    sla: SLA | None = None,
    *,
    n_models: int = 3,
    context: int = 1024,
    max_gpus: int = 256,
) -> pd.DataFrame:
    """Test the brief's "~50K tokens/s per GPU decode" and "~200 H100s for multi-model serving".

    "~" is read as within a factor of two. The fleet claim assumes ``n_models`` models like
    ``model``, each receiving ``workload``; the answer scales about linearly with load.
    """
    spec = MODELS[model] if isinstance(model, str) else model
    card = GPUS[gpu] if isinstance(gpu, str) else gpu
    workload = workload or Workload(rate=100, duration=20)
    tp = min_tp(spec, card, workload)
    batch = max(1, kv_capacity_tokens(card, spec, tp) // max(1, context))
    bound = decode_tokens_per_s_bound(card, spec, batch, context, tp) / tp
    plan = plan_capacity(spec, card, workload, sla, max_gpus=max_gpus, tp=tp)
    cfg = plan.config
    per_decode_gpu = plan.summary["throughput"] / cfg.decode_gpus if cfg else math.nan
    # A decode instance kept full by a closed loop of max_batch users and a generous prefill pool.
    full = FleetConfig(model=spec, gpu=card, tp=tp, prefill_gpus=4 * tp, decode_gpus=tp)
    saturated = simulate(full, replace(workload, concurrency=full.max_batch, duration=min(workload.duration, 10.0)))
    per_gpu_full = saturated.summary["throughput"] / full.decode_gpus
    fleet = n_models * cfg.total_gpus if cfg else math.nan
    rate_at_200 = workload.rate * 200 / fleet if cfg else math.nan

    def near(value: float, claim: float) -> str:
        return "yes" if claim / 2 <= value <= claim * 2 else "no"

    rows = [
        dict(
            claim="~50K tokens/s per GPU decode",
            conditions=f"{spec.name} on {card.name}, tp={tp}, roofline bound, "
            f"batch {batch} filling the KV cache at {context}-token context",
            value=bound,
            holds=near(bound, 50e3),
            explanation="Decode is memory-bound: each step reads all weights plus every sequence's KV, so "
            "tokens/s tops out where the KV cache is full; long contexts lower it, short ones raise it.",
        ),
        dict(
            claim="~50K tokens/s per GPU decode",
            conditions=f"simulated, one decode instance with {full.max_batch} users in a closed loop, no SLA",
            value=per_gpu_full,
            holds=near(per_gpu_full, 50e3),
            explanation="The simulator charges real step costs (overhead, efficiency below peak, the batch "
            "limit), so a saturated decode GPU lands below the roofline bound.",
        ),
        dict(
            claim="~50K tokens/s per GPU decode",
            conditions=f"simulated at the planned fleet, {workload.rate:g} req/s",
            value=per_decode_gpu,
            holds=near(per_decode_gpu, 50e3),
            explanation="At the smallest fleet meeting the SLA the batch is bounded by the TPOT target and "
            "the offered load, so a decode GPU runs well below its roofline.",
        ),
        dict(
            claim="~200 H100s for multi-model serving",
            conditions=f"{n_models} models like {spec.name}, each at {workload.rate:g} req/s, SLA met by 95%",
            value=fleet,
            holds=near(fleet, 200),
            explanation=f"The fleet scales with load: 200 GPUs would serve about {rate_at_200:,.0f} req/s per "
            "model of this traffic mix.",
        ),
    ]
    return pd.DataFrame(rows, columns=["claim", "conditions", "value", "holds", "explanation"])
