"""What Lab 08's dashboard, notebook and benchmarks run, as data: memory per GPU for every strategy on the same
GPUs, throughput at an assumed MFU, the checkpoint-interval trade-off, the device mesh, and the exercise drills
(a student's accumulation step, ZeRO formula and checkpoint functions beside the reference). The live run from
the tracker is :mod:`lab_core.training.live`, re-exported here.
"""

from __future__ import annotations

import html
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch._dynamo  # noqa: F401 - a process's first optimizer imports it (seconds): here, not in a session

from lab_core.llm.config import ARCHITECTURES, ModelConfig, get_config
from lab_core.llm.gpus import GPU, GPUS
from lab_core.llm.model import build_model
from lab_core.sim import Progress
from lab_core.sim import steps as reporting
from lab_core.training.calculators import (
    GB,
    STRATEGIES,
    checkpoint_bytes,
    interval_tradeoff,
    job_mtbf,
    memory_per_gpu,
    mesh_layout,
    validate_mesh,
    young_daly_interval,
)
from lab_core.training.config import strategy_mesh
from lab_core.training.drills import STEPS, first_half, micro_batches, one_thread, resumed, straight_run, toy_store
from lab_core.training.live import LiveRuns, RunSnapshot, example_run
from lab_core.training.parallel import flops_per_token
from lab_core.training.protocol import AccumulationStep, LoadCheckpoint, SaveCheckpoint, ZeroBytesPerGPU
from lab_core.training.reference import accumulation_step as reference_accumulation_step

__all__ = [
    "MODELS",
    "PART_LABELS",
    "INTERVAL_CAUSES",
    "LiveRuns",
    "RunSnapshot",
    "example_run",
    "MemoryStudy",
    "memory_by_strategy",
    "Throughput",
    "throughput",
    "IntervalStudy",
    "checkpoint_interval",
    "MeshStudy",
    "mesh_study",
    "zero_states",
    "AccumulationRun",
    "accumulation_run",
    "ResumeRun",
    "resume_run",
    "ExerciseDrills",
    "exercise_drills",
]

#: Llama 3's shapes next to the course's own presets.
MODELS: dict[str, ModelConfig] = {"100m": get_config("100m"), "1b": get_config("1b"), **ARCHITECTURES}
INTERVAL_CAUSES: dict[str, str] = {
    "total": "total lost",
    "checkpoint_overhead": "writing checkpoints (C/τ)",
    "lost_work": "redone work + restarts ((τ/2+R)/M)",
}
PART_LABELS: dict[str, str] = {
    "params": "weights",
    "grads": "gradients",
    "optimizer": "optimizer state",
    "activations": "activations",
}


def _model(model: str | ModelConfig) -> ModelConfig:
    return MODELS[model] if isinstance(model, str) and model in MODELS else get_config(model)


@dataclass(frozen=True)
class MemoryStudy:
    """Memory per GPU (busiest rank) of each strategy on the same GPUs, one row per (setup, part), in GB."""

    frame: pd.DataFrame
    refused: list[str]
    world: int
    num_params: int
    model: str = ""

    def totals(self) -> pd.Series:
        """GB per GPU of each setup, in the frame's order."""
        if self.frame.empty:
            return pd.Series(dtype=float)
        return self.frame.groupby("setup", sort=False)["GB"].sum()

    def summary(self, gpu: str, speed: Throughput, mfu: float) -> str:
        """Markdown: which setups fit one ``gpu``, what was left out, and the speed at ``mfu``."""
        limit = GPUS[gpu].memory / GB
        fits = [f"{'✓' if gb <= limit else '✗'} **{html.escape(s)}** {gb:,.1f} GB" for s, gb in self.totals().items()]
        text = (
            f"{self.model}: {self.num_params / 1e9:.2f} B parameters; every strategy uses the same {self.world} "
            f"GPUs (axes a strategy lacks become data parallelism; ZeRO-3 is FSDP). Fits a {gpu} "
            f"({limit:.0f} GB): " + " · ".join(fits) + "."
        )
        if self.refused:
            text += f"  \nNot drawn: {html.escape('; '.join(self.refused))}."
        return text + (
            f"  \nAt {100 * mfu:.0f}% MFU each GPU trains {speed.tokens_per_s_per_gpu:,.0f} tokens/s, "
            f"{speed.tokens_per_s / 1e6:,.2f} M tokens/s together: 1 T tokens in {speed.days_per_trillion_tokens:,.1f} "
            "days. Not counted: logits, temporary buffers, FSDP's gathered layer, the allocator's slack (budget "
            "~10-20% more)."
        )


def memory_by_strategy(
    model: str | ModelConfig,
    *,
    dp: int,
    tp: int,
    pp: int,
    micro_batch: int = 1,
    seq_len: int = 4096,
    precision: str = "bf16-mixed",
    activation_checkpointing: bool = False,
    flash_attention: bool = True,
    progress: Progress | None = None,
) -> MemoryStudy:
    """Every strategy on dp*tp*pp GPUs: the axes a strategy does not split over become data parallelism (ZeRO-3 is
    left out: it is FSDP). Strategies the mesh cannot run are listed in ``refused`` with the reason."""
    cfg = _model(model)
    world = dp * tp * pp
    rows, refused = [], []
    for strategy in reporting([s for s in STRATEGIES if s != "zero3"], progress):
        mesh = strategy_mesh(strategy, world, tp=tp, pp=pp)
        if (strategy in ("tp", "fsdp+tp") and mesh.tp == 1) or (strategy == "pp" and mesh.pp == 1):
            refused.append(f"{strategy} needs {'tp' if 'tp' in strategy else 'pp'} > 1")
            continue
        try:
            m = memory_per_gpu(
                cfg,
                strategy,
                dp=mesh.dp,
                tp=mesh.tp,
                pp=mesh.pp,
                micro_batch=micro_batch,
                seq_len=seq_len,
                precision=precision,  # type: ignore[arg-type]
                activation_checkpointing=activation_checkpointing,
                flash_attention=flash_attention,
            )
        except ValueError as exc:
            refused.append(f"{strategy}: {exc}")
            continue
        label = strategy + "".join(f" {a}{v}" for a, v in (("dp", mesh.dp), ("tp", mesh.tp), ("pp", mesh.pp)) if v > 1)
        rows += [(label, strategy, PART_LABELS[part], gb) for part, gb in m.as_dict(GB).items() if part != "total"]
    return MemoryStudy(
        pd.DataFrame(rows, columns=["setup", "strategy", "part", "GB"]),
        refused,
        world,
        cfg.num_params(),
        model if isinstance(model, str) else "the model",
    )


@dataclass(frozen=True)
class Throughput:
    """Training speed at an assumed model-FLOPs utilisation (communication hidden, as MFU assumes)."""

    tokens_per_s_per_gpu: float
    tokens_per_s: float
    days_per_trillion_tokens: float


def throughput(model: str | ModelConfig, gpu: str | GPU, n_gpus: int, *, seq_len: int, mfu: float = 0.4) -> Throughput:
    """Tokens per second on ``n_gpus`` of ``gpu`` at ``mfu`` of its BF16 peak, from the training FLOPs per token."""
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu!r}")
    card = GPUS[gpu] if isinstance(gpu, str) else gpu
    per_gpu = mfu * card.peak_flops / flops_per_token(_model(model), seq_len)
    total = per_gpu * n_gpus
    return Throughput(per_gpu, total, 1e12 / total / 86400)


@dataclass(frozen=True)
class IntervalStudy:
    """The lost-time trade-off of the checkpoint interval (percent of wall clock per interval in minutes) and its
    Young/Daly optimum; ``sync_*`` is the same job with blocking writes, when the checkpoint is asynchronous."""

    table: pd.DataFrame
    blocking_s: float
    job_mtbf_s: float
    best_s: float
    best_pct: float
    checkpoint_gb: float
    sync_best_s: float | None = None
    sync_pct: float | None = None
    n_gpus: int = 1
    gpu_mtbf_hours: float = 0.0
    checkpoint_s: float = 0.0

    def causes(self) -> pd.DataFrame:
        """The table long: interval_min, what (total, or one of the two causes, as a legend reads), pct."""
        return self.table.melt(id_vars="interval_min", var_name="what", value_name="pct").assign(
            what=lambda f: f["what"].map(INTERVAL_CAUSES)
        )

    def summary(self) -> str:
        """Markdown: the job's MTBF, the optimum, what async checkpointing saves, the checkpoint's size."""
        text = (
            f"{self.n_gpus:,} GPUs at {self.gpu_mtbf_hours:,.0f} h each fail every **{self.job_mtbf_s / 3600:.2f} "
            f"h** on average. Blocking {self.blocking_s:.1f} s per checkpoint: checkpoint every "
            f"**{self.best_s / 60:.1f} min**, losing **{self.best_pct:.1f}%** of the time."
        )
        if self.sync_pct is not None and self.sync_best_s is not None:
            text += f" Synchronous writes would lose {self.sync_pct:.1f}% (every {self.sync_best_s / 60:.1f} min)."
        return text + (
            f"  \nThe model's training checkpoint (fp32 weights + AdamW m and v) is "
            f"{self.checkpoint_gb:,.0f} GB: writing it in {self.checkpoint_s:g} s takes "
            f"{self.checkpoint_gb / self.checkpoint_s:,.1f} GB/s."
        )


def _optimum(blocking_s: float, mtbf_s: float, restart_s: float) -> tuple[float, float]:
    best = young_daly_interval(blocking_s, mtbf_s)
    return best, 100 * float(interval_tradeoff(blocking_s, mtbf_s, restart_s, intervals=[best])["total"].iloc[0])


def checkpoint_interval(
    model: str | ModelConfig,
    *,
    checkpoint_s: float,
    gpu_mtbf_hours: float,
    n_gpus: int,
    restart_minutes: float = 0.0,
    async_checkpoint: bool = False,
    async_blocking_pct: float = 10.0,
) -> IntervalStudy:
    """The trade-off when each checkpoint blocks training for the whole write, or (async) for its copy's share."""
    blocking = checkpoint_s * (async_blocking_pct / 100 if async_checkpoint else 1.0)
    mtbf, restart = job_mtbf(gpu_mtbf_hours * 3600, n_gpus), restart_minutes * 60
    raw = interval_tradeoff(blocking, mtbf, restart)
    table = pd.DataFrame({"interval_min": raw["interval_s"] / 60})
    for col in ("checkpoint_overhead", "lost_work", "total"):
        table[col] = 100 * raw[col]
    best, pct = _optimum(blocking, mtbf, restart)
    sync = _optimum(checkpoint_s, mtbf, restart) if async_checkpoint else (None, None)
    return IntervalStudy(
        table,
        blocking,
        mtbf,
        best,
        pct,
        checkpoint_bytes(_model(model)) / GB,
        *sync,
        n_gpus,
        gpu_mtbf_hours,
        checkpoint_s,
    )


@dataclass(frozen=True)
class MeshStudy:
    """Where each rank of a DP x TP x PP mesh sits (at most ``max_gpus`` of them), and why the model cannot run
    on it (``problem``, empty when it can)."""

    layout: pd.DataFrame
    world: int
    nodes: int
    problem: str
    truncated: bool
    sizes: tuple[int, int, int] = (1, 1, 1)
    gpus_per_node: int = 8

    def summary(self) -> str:
        """Markdown: how ranks map to nodes, and which traffic crosses them."""
        dp, tp, _ = self.sizes
        crossing = (
            "Data-parallel all-reduces and pipeline sends cross nodes (InfiniBand)."
            if self.nodes > 1
            else "Everything stays in one node."
        )
        return (
            f"{self.world} GPUs on {self.nodes} node(s) of {self.gpus_per_node}: rank = (pp·dp + dp_index)·tp + "
            f"tp_index, so a TP group is {tp} neighbouring GPU(s) (NVLink) and each pipeline stage is {dp * tp} "
            f"consecutive ranks. {crossing}" + (f" Drawn: the first {len(self.layout)} GPUs." if self.truncated else "")
        )

    def node_ticks(self) -> list[tuple[float, str]]:
        """(y, "node n") at the top row of each node's boxes, for the y axis."""
        return [(float(y) - 0.45, f"node {n}") for n, y in self.boxes().groupby("node")["y1"].max().items()]

    def slot_ticks(self) -> list[tuple[float, str]]:
        """(x, "GPU i") at the centre of each slot of a node's row, for the x axis."""
        return [(i + 0.5, f"GPU {i}") for i in range(min(self.gpus_per_node, 8))]

    def plot_height(self, per_row: int = 40, most: int = 900) -> int:
        """Pixels that give each row of boxes ``per_row`` (at least 220, at most ``most``)."""
        frame = self.boxes()
        return min(max(220, int(per_row * (frame["y1"].max() - frame["y0"].min())) + 100), most)

    def tp_groups(self) -> pd.DataFrame:
        """One outline per TP group (same pp and dp): the corners around its boxes."""
        return (
            self.boxes()
            .groupby(["pp", "dp"])
            .agg(x0=("x0", "min"), y0=("y0", "min"), x1=("x1", "max"), y1=("y1", "max"))
            .reset_index()
        )

    def boxes(self, per_row: int = 8) -> pd.DataFrame:
        """The layout with a box per GPU to draw (corners x0..y1, centre xc, yc): a row of ``per_row`` slots per
        node (more GPUs wrap onto more rows), nodes downwards; plus ``stage`` and a ``label`` per box."""
        mesh, gpn = self.layout, self.gpus_per_node
        cols = min(gpn, per_row)
        y = -(mesh["node"] * (-(-gpn // cols) + 0.5) + mesh["local"] // cols)
        x = (mesh["local"] % cols).astype(float)
        return mesh.assign(
            x0=x + 0.05,
            x1=x + 0.95,
            y0=y - 0.9,
            y1=y - 0.05,
            xc=x + 0.5,
            yc=y - 0.475,
            stage=mesh["pp"].map(lambda s: f"stage {s}"),
            label=[f"r{r}\ndp{d} tp{t}" for r, d, t in zip(mesh["rank"], mesh["dp"], mesh["tp"])],
        )


def mesh_study(
    model: str | ModelConfig, *, dp: int, tp: int, pp: int, gpus_per_node: int = 8, max_gpus: int = 256
) -> MeshStudy:
    """mesh_layout for the first ``max_gpus`` ranks and validate_mesh's verdict for the model."""
    cfg = _model(model)
    world = dp * tp * pp
    try:
        validate_mesh(
            world,
            dp,
            tp,
            pp,
            n_heads=cfg.n_heads,
            n_kv_heads=cfg.n_kv_heads,
            n_layers=cfg.n_layers,
            gpus_per_node=gpus_per_node,
        )
        problem = ""
    except ValueError as exc:
        problem = str(exc)
    layout = mesh_layout(dp, tp, pp, gpus_per_node=gpus_per_node).head(max_gpus)
    return MeshStudy(layout, world, -(-world // gpus_per_node), problem, world > max_gpus, (dp, tp, pp), gpus_per_node)


def zero_states(fn: ZeroBytesPerGPU, num_params: int, dp: int, *, k: float = 12) -> pd.DataFrame:
    """``fn``'s model states per GPU at ZeRO stages 0..3 over ``dp`` ranks: columns stage, GB."""
    return pd.DataFrame(
        {"stage": [f"ZeRO-{s}" for s in range(4)], "GB": [float(fn(num_params, s, dp, k=k)) / GB for s in range(4)]}
    )


@dataclass(frozen=True)
class AccumulationRun:
    """Losses per optimiser step of a tiny model trained with an accumulation step, and its final weights."""

    losses: list[float]
    weights: list[torch.Tensor] = field(repr=False)

    def gap(self, other: AccumulationRun) -> float:
        """The largest relative difference between the two runs' final weights (0: the same steps)."""
        return max(float((a - b).norm() / (b.norm() + 1e-12)) for a, b in zip(self.weights, other.weights))

    def verdict(self, whole: AccumulationRun, label: str) -> str:
        """Markdown: whether this run (``label``) took the same steps as ``whole``, the one-batch run."""
        gap = self.gap(whole)
        return (
            f"{'✓' if gap < 1e-4 else '✗'} Accumulation ({label}): final weights within {gap:.1e} (relative) of "
            "whole-batch steps."
        )

    def frame(self, run: str) -> pd.DataFrame:
        """Columns step, loss, run."""
        return pd.DataFrame({"step": range(1, len(self.losses) + 1), "loss": self.losses, "run": run})


def accumulation_run(
    step_fn: AccumulationStep, *, k: int, n_steps: int = 10, batch: int = 8, progress: Progress | None = None
) -> AccumulationRun:
    """``n_steps`` AdamW steps of the tiny model over 4 fixed batches of ``batch`` random sequences, each split into
    ``k`` micro-batches for ``step_fn``: with a correct step every ``k`` traces the same curve."""
    if k < 1 or batch % k:
        raise ValueError(f"k={k} micro-batches must divide the batch of {batch} sequences")
    with one_thread():
        torch.manual_seed(0)
        model = build_model("tiny", seed=0).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        losses = [
            float(step_fn(model, micro_batches(k, batch // k, seed=i % 4), opt, max_norm=1.0))
            for i in reporting(range(n_steps), progress, lambda i: f"accumulation step {i + 1}")
        ]
    return AccumulationRun(losses, [p.detach().clone() for p in model.parameters()])


@dataclass(frozen=True)
class ResumeRun:
    """A run stopped half way, saved, loaded into fresh objects and continued, beside the same run unstopped."""

    straight: list[float]
    resumed: list[float]
    loaded_step: object
    same_weights: bool

    @property
    def exact(self) -> bool:
        """Whether the resumed steps and final weights match the uninterrupted run bit for bit."""
        return self.resumed == self.straight[STEPS // 2 :] and self.same_weights and self.loaded_step == STEPS // 2

    def frame(self, who: str = "") -> pd.DataFrame:
        """Columns step, loss, run ("uninterrupted" or "resumed", then `` (who)``)."""
        first = pd.DataFrame({"step": range(1, STEPS + 1), "loss": self.straight, "run": "uninterrupted"})
        after = pd.DataFrame({"step": range(STEPS // 2 + 1, STEPS + 1), "loss": self.resumed, "run": "resumed"})
        frame = pd.concat([first, after], ignore_index=True)
        return frame.assign(run=frame["run"] + f" ({who})") if who else frame

    def verdict(self, whose: str) -> str:
        """Markdown: whether ``whose`` checkpoint functions resumed the run exactly."""
        return f"{'✓' if self.exact else '✗'} Resume with {whose} checkpoint functions: " + (
            "bit-identical to the uninterrupted run."
            if self.exact
            else "differs from the uninterrupted run (its losses after the stop, or its final weights)."
        )


def resume_run(save: SaveCheckpoint, load: LoadCheckpoint) -> ResumeRun:
    """The graders' resume drill with ``save`` and ``load``: dropout, AdamW, warmup + cosine, a sharded loader."""
    store = toy_store()
    with one_thread(), tempfile.TemporaryDirectory(prefix="syslab-resume-") as folder:
        want, want_weights = straight_run(store)
        path = Path(folder) / "ckpt.pt"
        first_half(store, save, path)
        step, losses, weights = resumed(store, load, path)
    same = all(torch.equal(a, b) for a, b in zip(weights, want_weights))
    return ResumeRun(want, losses, step, same)


def _run(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


@dataclass(frozen=True)
class ExerciseDrills:
    """The notebook's exercises run beside the reference, to draw: the ZeRO states per GPU (stage, GB, who), the
    accumulation runs (the whole-batch baseline first) and the resume runs as loss frames (step, loss, run),
    and a Markdown verdict per drill that ran."""

    zero: pd.DataFrame
    accumulation: list[pd.DataFrame]
    resume: list[pd.DataFrame]
    verdicts: list[str]


def exercise_drills(
    num_params: int,
    dp: int,
    k: int,
    *,
    zero: Sequence[tuple[str, ZeroBytesPerGPU]],
    accumulation: tuple[str, AccumulationStep],
    checkpoints: Sequence[tuple[str, SaveCheckpoint, LoadCheckpoint]],
    attempt: Callable[..., Any] = _run,
    progress: Progress | None = None,
) -> ExerciseDrills:
    """Each drill with each (who, function): ``attempt(name, fn, *args, **kwargs)`` runs a drill of a student's
    code and gives None when it raised, so one failing exercise leaves the others drawn."""
    zeros = {who: attempt("zero_bytes_per_gpu", zero_states, fn, num_params, dp) for who, fn in zero}
    who, step_fn = accumulation
    whole = accumulation_run(reference_accumulation_step, k=1)
    split = attempt("accumulation_step", accumulation_run, step_fn, k=k, progress=progress)
    resume = {
        who: attempt("save_checkpoint / load_checkpoint", resume_run, save, load) for who, save, load in checkpoints
    }
    label = f"{k} micro-batches ({who})"
    verdicts = [split.verdict(whole, label)] if split else []
    verdicts += [r.verdict("your" if w == "yours" else "the reference") for w, r in resume.items() if r]
    return ExerciseDrills(
        pd.concat([f.assign(who=w) for w, f in zeros.items() if f is not None]),
        [whole.frame("one batch of 8 (reference)")] + ([split.frame(label)] if split else []),
        [r.frame(w) for w, r in resume.items() if r],
        verdicts,
    )
