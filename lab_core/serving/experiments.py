"""What Lab 07's dashboard, notebook and benchmarks run, as data: a sized fleet simulated against
the SLA, its latency distributions, goodput and fleet size against load, and the real engine
serving requests live on its own thread; and what the dashboard's fleet tab draws (captions,
badges, log axes, time series, the plan's pools), prepared here so the dashboard only draws.

The live runner (:class:`LiveRun`) is an :class:`AsyncEngine` (the gateway's replica) that keeps
finished requests; its engine thread refreshes a :class:`LiveSnapshot` which any thread reads.
A page polls it from its own event loop, so no update is ever applied from the engine thread.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from lab_core.llm.model import Transformer
from lab_core.serving.async_engine import AsyncEngine
from lab_core.serving.blocks import BlockAllocator, BlockManager
from lab_core.serving.engine import EngineConfig, LLMEngine
from lab_core.serving.fleet import MODELS, SLA, FleetConfig, FleetResult, Workload, fleet_vs_load, simulate
from lab_core.serving.fleet.planner import min_tp
from lab_core.serving.protocol import FREE, PAID, SamplingParams, TokenEvent
from lab_core.serving.scheduler import Scheduler, SchedulerBase
from lab_core.serving.timeline import COLUMNS, request_table
from lab_core.sim.progress import Progress, steps

GPU_NAMES: dict[str, str] = {"H100": "H100-SXM", "A100": "A100-SXM"}
GOODPUT_TARGET = 0.95
"""Share of requests within the SLA a fleet must reach (the sweep's target line, the planner's goal)."""
SWEEP = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
"""Multiples of the current load the goodput sweep simulates."""
PLAN = (0.5, 1.0, 2.0, 4.0)
"""Multiples of the current load the capacity planner sizes a fleet for."""
PLAN_MAX_GPUS = 64
PLAN_DURATION = 10.0  # simulated seconds per planner run (each plan runs a dozen or more)
ECDF_POINTS = 400
SWEEP_COLUMNS = ["rate", "goodput_pct", "ttft_p99_ms", "tpot_p99_ms", "throughput", "tokens_per_s_per_gpu"]
PLAN_COLUMNS = [
    "rate",
    "prefill_gpus",
    "decode_gpus",
    "total_gpus",
    "goodput_pct",
    "tokens_per_s_per_gpu",
    "ttft_p99_ms",
    "tpot_p99_ms",
]
WORKED_EXAMPLE = Path(__file__).with_name("worked_example.json")
WORDS = (
    "the scheduler admits a request when its blocks fit the cache and the token budget allows a chunk of "
    "its prompt while running sequences decode one token each step"
).split()
"""What the live engine's prompts are made of (a byte-level model: one token per character)."""
PUBLISH_EVERY = 0.2  # seconds between live snapshots while tokens stream


# ---- the fleet --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FleetRun:
    """One simulated fleet: the result, the fleet and traffic it ran, how long it took, a note."""

    result: FleetResult
    config: FleetConfig
    workload: Workload
    seconds: float = 0.0
    note: str = ""

    @property
    def summary(self) -> dict[str, float]:
        """The simulator's summary numbers (seconds, fractions)."""
        return dict(self.result.summary)

    @property
    def offered_rate(self) -> float:
        """Requests per second the fleet received (the rate, or what the closed loop sent)."""
        wl = self.workload
        return self.result.summary["requests"] / wl.duration if wl.concurrency else wl.rate

    @property
    def kv_peak_pct(self) -> float:
        """Peak KV-cache use of the busiest instance holding KV, % of its blocks (every step counted)."""
        return 100 * self.result.summary["peak_kv_utilization"]


def sized_fleet(model: str, gpu: str, prefill_gpus: int, decode_gpus: int, **engine: object) -> tuple[FleetConfig, str]:
    """A fleet of ``model`` on ``gpu`` (a short name of :data:`GPU_NAMES`) with pools rounded up to whole
    tensor-parallel instances, and a note saying so when they were; ``engine`` sets FleetConfig fields."""
    tp = min_tp(model, GPU_NAMES[gpu], Workload())
    pre, dec = -(-int(prefill_gpus) // tp) * tp, -(-int(decode_gpus) // tp) * tp
    note = ""
    if (pre, dec) != (prefill_gpus, decode_gpus):
        note = (
            f"{MODELS[model].name} needs {tp} {gpu}s per instance (tensor parallel), so the pools are rounded "
            f"up to {pre} prefill and {dec} decode GPUs."
        )
    return FleetConfig(model=model, gpu=GPU_NAMES[gpu], prefill_gpus=pre, decode_gpus=dec, tp=tp, **engine), note


def fleet_run(
    model: str,
    gpu: str,
    prefill_gpus: int,
    decode_gpus: int,
    *,
    rate: float,
    duration: float,
    burstiness: float,
    concurrency: int,
    seed: int,
    sla: SLA | None = None,
    **engine: object,
) -> FleetRun:
    """The dashboard's fleet (:func:`sized_fleet`; ``engine`` sets FleetConfig fields) simulated under its
    traffic: open loop at ``rate`` with gaps of CV ``burstiness``, or ``concurrency`` closed-loop users."""
    config, note = sized_fleet(model, gpu, prefill_gpus, decode_gpus, **engine)
    workload = Workload(
        rate=float(rate),
        duration=float(duration),
        cv=float(burstiness),
        concurrency=int(concurrency) or None,
        seed=int(seed),
    )
    return run_fleet(config, workload, sla, note)


def run_fleet(config: FleetConfig, workload: Workload, sla: SLA | None = None, note: str = "") -> FleetRun:
    """Simulate ``config`` under ``workload`` and time it."""
    started = time.perf_counter()
    result = simulate(config, workload, sla=sla or SLA())
    return FleetRun(result, config, workload, time.perf_counter() - started, note)


def ecdf(values: np.ndarray, total: int, *, scale: float = 1e3) -> pd.DataFrame:
    """Share of ``total`` requests with a value <= x at each finite value (times ``scale``); values that are
    not finite never count, so the curve stops below 1 when requests were left unserved."""
    v = np.sort(values[np.isfinite(values)]) * scale
    if not len(v) or not total:
        return pd.DataFrame({"x": [], "share": []})
    share = np.arange(1, len(v) + 1) / total
    if len(v) > ECDF_POINTS:
        keep = np.unique(np.linspace(0, len(v) - 1, ECDF_POINTS).round().astype(int))
        v, share = v[keep], share[keep]
    return pd.DataFrame({"x": v, "share": share})


def latency_ecdf(result: FleetResult, metric: str) -> pd.DataFrame:
    """ECDF of ``metric`` ("ttft" or "tpot") in ms for all requests and per tier: x, share, tier.

    TTFT counts every request, TPOT those asked for more than one token; unfinished requests count
    as beyond every value."""
    req = result.requests
    unfinished = ~np.isfinite(req["finish"].to_numpy())
    parts = []
    for tier, rows in (("all", req), *((t, req[req["tier"] == t]) for t in ("paid", "free"))):
        values = rows[metric].to_numpy(dtype=float).copy()
        counted = np.ones(len(rows), bool) if metric == "ttft" else rows["output_len"].to_numpy() > 1
        values[unfinished[rows.index.to_numpy()]] = np.nan
        parts.append(ecdf(values[counted], int(counted.sum())).assign(tier=tier))
    return pd.concat(parts, ignore_index=True)


def load_rates(load: float, multiples: Sequence[float]) -> list[float]:
    """Arrival rates at ``multiples`` of ``load`` (req/s)."""
    return [round(load * m, 3) for m in multiples]


def goodput_sweep(
    config: FleetConfig,
    workload: Workload,
    rates: Sequence[float],
    sla: SLA | None = None,
    *,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """The fleet at each open-loop arrival rate: rate (req/s), goodput_pct, ttft_p99_ms, tpot_p99_ms,
    throughput (output tok/s), tokens_per_s_per_gpu."""
    rows = []
    for rate in steps(list(rates), progress, lambda r: f"{r:g} req/s"):
        s = simulate(config, replace(workload, rate=rate, concurrency=None), sla=sla or SLA()).summary
        rows.append(
            (
                rate,
                100 * s["goodput_fraction"],
                1e3 * s["ttft_p99"],
                1e3 * s["tpot_p99"],
                s["throughput"],
                s["tokens_per_s_per_gpu"],
            )
        )
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


def fleet_plan(
    config: FleetConfig,
    workload: Workload,
    rates: Sequence[float],
    sla: SLA | None = None,
    *,
    max_gpus: int = PLAN_MAX_GPUS,
    duration: float = PLAN_DURATION,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """The smallest fleet (colocated or split) meeting the SLA for :data:`GOODPUT_TARGET` of requests at
    each rate: rate, prefill/decode/total GPUs (NaN beyond ``max_gpus``), goodput_pct,
    tokens_per_s_per_gpu, ttft_p99_ms, tpot_p99_ms."""
    base = replace(workload, duration=min(workload.duration, duration), concurrency=None)
    parts = [
        fleet_vs_load(
            config.model,
            config.gpu,
            [rate],
            sla or SLA(),
            workload=base,
            base=config,
            max_gpus=max_gpus,
            target_goodput_fraction=GOODPUT_TARGET,
        )
        for rate in steps(list(rates), progress, lambda r: f"{r:g} req/s")
    ]
    table = pd.concat(parts, ignore_index=True)
    table = table.assign(
        goodput_pct=100 * table["goodput_fraction"],
        ttft_p99_ms=1e3 * table["ttft_p99"],
        tpot_p99_ms=1e3 * table["tpot_p99"],
    )
    return table[PLAN_COLUMNS]


def sweep_around(run: FleetRun, kind: str, sla: SLA | None = None, *, progress: Progress | None = None) -> pd.DataFrame:
    """``kind`` "sweep" (:func:`goodput_sweep` at :data:`SWEEP` multiples of ``run``'s load) or "plan"
    (:func:`fleet_plan` at :data:`PLAN` multiples), for ``run``'s fleet and traffic."""
    compute, multiples = {"sweep": (goodput_sweep, SWEEP), "plan": (fleet_plan, PLAN)}[kind]
    return compute(run.config, run.workload, load_rates(run.offered_rate, multiples), sla, progress=progress)


def worked_example() -> dict[str, object]:
    """The sweeps at the dashboard's default settings (``setting``, ``sweep``, ``plan``), shown before
    the first press; :func:`save_worked_example` writes them."""
    data = json.loads(WORKED_EXAMPLE.read_text())
    return {
        "setting": data["setting"],
        "sweep": pd.DataFrame(data["sweep"], columns=SWEEP_COLUMNS),
        "plan": pd.DataFrame(data["plan"], columns=PLAN_COLUMNS),
    }


def worked_sweeps() -> dict[str, Sweep]:
    """The worked example as the dashboard's ``sweep`` and ``plan``, marked as the example."""
    example = worked_example()
    return {kind: Sweep(example[kind], example["setting"], example=True) for kind in ("sweep", "plan")}


def save_worked_example(run: FleetRun, setting: str) -> None:
    """Compute both sweeps around ``run`` (the defaults' fleet) and store them as the worked example."""
    sweep, plan = sweep_around(run, "sweep"), sweep_around(run, "plan")
    data = {
        "setting": setting,
        "sweep": sweep.to_dict("records"),
        "plan": plan.astype(object).where(plan.notna(), None).to_dict("records"),
    }
    WORKED_EXAMPLE.write_text(json.dumps(data, indent=1) + "\n")


# ---- what the fleet tab draws -----------------------------------------------------------------


def check_plugins(block_manager: object, scheduler: object) -> None:
    """Raise TypeError unless each of ``block_manager`` and ``scheduler`` is None or a subclass of its
    seam's base class (:class:`BlockAllocator`, :class:`SchedulerBase`)."""
    for name, cls, base in (("block_manager", block_manager, BlockAllocator), ("scheduler", scheduler, SchedulerBase)):
        if cls is not None and not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"{name} must be a subclass of {base.__name__} (the class, not an instance), got {cls!r}")


FLEET_ORDERS: dict[str, str] = {"fcfs (arrival order)": "fcfs", "paid-first, aged (free +2 s)": "priority"}
"""The fleet simulator's queue orders by their names on the page; every part orders by the same
priority in its own way, so each has its own name (:data:`lab_core.serving.protocol.QUEUE_ORDERS`)."""
SWEEP_LABELS = {
    "rate": "arrival rate (req/s)",
    "goodput_pct": "goodput (% within SLA)",
    "ttft_p99_ms": "TTFT p99 (ms)",
    "tpot_p99_ms": "TPOT p99 (ms)",
    "tokens_per_s_per_gpu": "tokens/s per GPU",
}
"""What the goodput plot shows of a sweep, by column."""
QUEUE_SERIES = {"queue_depth": "waiting (queue depth)", "running": "running (in a batch)"}
POOLS = {"total_gpus": "total GPUs", "prefill_gpus": "prefill GPUs", "decode_gpus": "decode GPUs"}


@dataclass(frozen=True, eq=False)
class Sweep:
    """A table computed behind a button (or the worked example), and the settings it was computed for."""

    table: pd.DataFrame
    setting: str = ""
    seconds: float = 0.0
    example: bool = False


def timed_sweep(
    run: FleetRun, kind: str, setting: str, sla: SLA | None = None, *, progress: Progress | None = None
) -> Sweep:
    """:func:`sweep_around` ``run`` as a :class:`Sweep` for ``setting`` (``run``'s in words), timed."""
    started = time.perf_counter()
    table = sweep_around(run, kind, sla, progress=progress)
    return Sweep(table, setting, time.perf_counter() - started)


def sweep_note(sweep: Sweep, setting: str) -> str:
    """What ``sweep`` was computed for, whether ``setting`` (the current one) differs, and the rates no
    fleet of at most :data:`PLAN_MAX_GPUS` GPUs serves."""
    if sweep.example:
        caption = " (worked example at the default settings; press the button for yours)"
    else:
        caption = " (settings changed since: press again)" if sweep.setting != setting else ""
    missing = int(sweep.table["total_gpus"].isna().sum()) if "total_gpus" in sweep.table else 0
    more = f" {missing} rate(s) need more than {PLAN_MAX_GPUS} GPUs (not drawn)." if missing else ""
    return f"For {sweep.setting}; {len(sweep.table)} rates in {sweep.seconds:.1f} s{caption}.{more}"


def plan_pools(plan: pd.DataFrame) -> pd.DataFrame:
    """A fleet plan as tidy rows: rate, pool (total, prefill or decode GPUs), gpus."""
    wide = plan.rename(columns=POOLS)
    return wide.melt(id_vars="rate", value_vars=list(POOLS.values()), var_name="pool", value_name="gpus")


def _pools(cfg: FleetConfig, gpus: str = "") -> str:
    if cfg.disaggregated:
        return f"{cfg.prefill_gpus} prefill + {cfg.decode_gpus} decode{gpus}"
    return f"{cfg.decode_gpus} colocated{gpus}"


def fleet_setting(run: FleetRun, model: str, gpu: str) -> str:
    """``run``'s settings in words (``model`` and ``gpu`` as the controls name them), for the sweeps' captions."""
    cfg, order = run.config, {v: k.split(" (")[0] for k, v in FLEET_ORDERS.items()}
    return (
        f"{model} on {_pools(cfg)} {gpu}s (tp {cfg.tp}), budget {cfg.token_budget}, block "
        f"{cfg.block_size}, chunked prefill {'on' if cfg.chunked_prefill else 'off'}, {order[cfg.policy]}, "
        f"cv {run.workload.cv:g}, {run.offered_rate:g} req/s"
    )


def fleet_headline(run: FleetRun, gpu: str) -> str:
    """The fleet, the traffic and its numbers in one Markdown sentence, the recompute time and the note."""
    s, cfg, wl = run.summary, run.config, run.workload
    traffic = (
        f"{wl.concurrency} closed-loop users ({run.offered_rate:.1f} req/s)"
        if wl.concurrency
        else f"{wl.rate:g} req/s (burstiness {wl.cv:g})"
    )
    text = (
        f"**{cfg.model.name}** on {_pools(cfg, ' GPUs')} ({gpu}, tp {cfg.tp}), {traffic} for {wl.duration:g} s: "
        f"{s['requests']:.0f} requests, {s['finished']:.0f} finished, {s['preemptions']:.0f} preemptions, "
        f"peak KV use {run.kv_peak_pct:.1f}% (busiest GPU instance). Recomputed in **{run.seconds * 1e3:.0f} ms**."
    )
    return text + (f"  \n{run.note}" if run.note else "")


@dataclass(frozen=True)
class Badge:
    """One number against its target (``higher_is_better`` for goodput)."""

    label: str
    value: float
    target: float
    unit: str
    higher_is_better: bool = False


def sla_note(sla: SLA) -> str:
    """The SLA, what goodput counts and what the queue orders mean, in Markdown (the sidebar's note)."""
    return (
        f"SLA: TTFT ≤ {sla.ttft * 1e3:.0f} ms, TPOT ≤ {sla.tpot * 1e3:.1f} ms ({1 / sla.tpot:.0f} tokens/s); "
        "goodput counts requests meeting both. Block size and chunking also apply to the live "
        "engine. Priority is the tier (paid before free); *paid-first, aged* lets a free request "
        f"rank like a paid one arriving {FleetConfig.aging:g} s later, so it is never starved."
    )


def sla_badges(summary: dict[str, float], sla: SLA) -> list[Badge]:
    """TTFT and TPOT p50 and p99 (ms) against the SLA, and goodput (%) against :data:`GOODPUT_TARGET`."""
    badges = [
        Badge(f"{key[:4].upper()} {key[5:]}", 1e3 * summary[key], 1e3 * getattr(sla, key[:4]), "ms")
        for key in ("ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99")
    ]
    goodput = 100 * summary["goodput_fraction"]
    return [*badges, Badge("goodput", goodput, 100 * GOODPUT_TARGET, "%", higher_is_better=True)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """At most six round values (1, 2, 3, 5 times a power of ten) in [lo, hi] for a log axis."""
    ticks = [m * 10.0**k for k in range(-3, 7) for m in (1, 2, 3, 5) if lo <= m * 10.0**k <= hi]
    while len(ticks) > 6:
        ticks = ticks[::2]
    return ticks


@dataclass(frozen=True, eq=False)
class LatencyView:
    """A latency's ECDF (:func:`latency_ecdf`, ms) and its log axis: limits, round ticks, the SLA target
    in ms and its label, aligned to the side of the line with room for it (``halign``)."""

    frame: pd.DataFrame
    target_ms: float
    lo: float
    hi: float
    ticks: list[float]
    label: str
    halign: str


def latency_view(result: FleetResult | None, metric: str, target: float) -> LatencyView:
    """The ECDF of ``metric`` ("ttft" or "tpot") against ``target`` seconds; one point at the target
    with share 0 when there is nothing to draw."""
    t = target * 1e3
    frame = latency_ecdf(result, metric) if result is not None else pd.DataFrame()
    if frame.empty:
        frame = pd.DataFrame({"x": [t], "share": [0.0], "tier": ["all"]})
    lo, hi = min(float(frame["x"].min()), t) * 0.8, max(float(frame["x"].max()), t) * 1.25
    if math.log(t / lo) / math.log(hi / lo) > 0.6:
        return LatencyView(frame, t, lo, hi, log_ticks(lo, hi), f"SLA {t:.0f} ms ", "right")
    return LatencyView(frame, t, lo, hi, log_ticks(lo, hi), f" SLA {t:.0f} ms", "left")


@dataclass(frozen=True, eq=False)
class FleetSeries:
    """A run over time: ``frame`` (t, queue_depth, running, kv_utilization, kv_pct), ``queue`` (tidy: t,
    what, requests), the drain after the last arrival (``drain``; ``shaded`` when it lasted), the pool
    holding KV, the KV peak (%) and the y-axis tops of both plots."""

    frame: pd.DataFrame
    queue: pd.DataFrame
    drain: tuple[float, float]
    shaded: bool
    pool: str
    kv_peak: float
    kv_top: float
    queue_top: float


def fleet_series(run: FleetRun | None) -> FleetSeries:
    """What the KV-use and queue plots draw for ``run`` (zeros when there is no run)."""
    if run is None or run.result.timeseries.empty:
        ts, drain = pd.DataFrame({"t": [0.0], "queue_depth": [0], "running": [0], "kv_utilization": [0.0]}), (0.0, 0.0)
    else:
        ts = run.result.timeseries
        drain = (run.workload.duration, float(ts["t"].max()))
    ts = ts.assign(kv_pct=100 * ts["kv_utilization"])
    queue = ts.melt(id_vars="t", value_vars=list(QUEUE_SERIES), var_name="what", value_name="requests")
    queue = queue.assign(what=queue["what"].map(QUEUE_SERIES))
    peak = run.kv_peak_pct if run is not None else 0.0
    return FleetSeries(
        ts,
        queue,
        drain,
        drain[1] > drain[0],
        "decode" if run is not None and run.config.disaggregated else "all",
        peak,
        min(max(5.0, peak * 1.15), 105),
        max(1.0, float(queue["requests"].max())) * 1.45,
    )


# ---- the live engine --------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveRequest:
    """One request sent to the live engine (``priority``: PAID or FREE)."""

    prompt: str
    max_tokens: int
    priority: int


def live_requests(n: int, seed: int, *, max_prompt: int = 300) -> list[LiveRequest]:
    """``n`` requests with mixed prompt lengths (20 to ``max_prompt`` characters, i.e. tokens), output
    lengths (8 to 48 tokens) and tiers (about half paid)."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        length = int(round(math.exp(rnd.uniform(math.log(20), math.log(max_prompt)))))
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < length:
            words.append(rnd.choice(WORDS))
        out.append(LiveRequest(" ".join(words)[:length], rnd.randint(8, 48), rnd.choice((PAID, FREE))))
    return out


@dataclass(frozen=True, eq=False)
class LiveSnapshot:
    """The live engine at one moment: :func:`request_table` rows, KV blocks per step, streamed texts."""

    timeline: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COLUMNS))
    kv: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["t", "blocks", "running", "waiting"]))
    texts: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, list[int]] = field(default_factory=dict)
    now: float = 0.0
    total_blocks: int = 0
    steps: int = 0
    running: bool = False
    label: str = ""


class LiveRun:
    """A real ``LLMEngine`` serving requests on its own thread, with the latest :class:`LiveSnapshot`.

    The engine thread refreshes the snapshot every ``every`` seconds while requests run and once
    when the last one ends; :meth:`snapshot` reads it from any thread (``version`` counts them).
    ``pause`` seconds pass between steps so a person can watch.
    """

    def __init__(
        self,
        config: EngineConfig,
        *,
        model: Transformer | None = None,
        block_manager: type[BlockAllocator] | None = None,
        scheduler: type[SchedulerBase] | None = None,
        pause: float = 0.0,
        label: str = "",
        every: float = PUBLISH_EVERY,
    ) -> None:
        engine = LLMEngine(
            config, model=model, block_manager=block_manager or BlockManager, scheduler=scheduler or Scheduler
        )
        self.config, self.label, self.pause, self.every = config, label, pause, every
        self.version = 0
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._outstanding = 0
        self._t0: float | None = None
        self._kv: list[tuple[float, int, int, int]] = []
        self._ids = itertools.count()
        self._published = 0.0
        self._final = False
        self._snap = LiveSnapshot(total_blocks=engine.blocks.num_blocks, label=label)
        # The dashboard's engine shares the process with a page: leave torch's thread count alone.
        self.replica = AsyncEngine(engine=engine, model_name="live", torch_threads=None, keep_finished=True)
        self.replica.on_step = self._after_step

    @property
    def engine(self) -> LLMEngine:
        """The engine (read it only while :attr:`idle`: its thread owns it)."""
        return self.replica.engine

    @property
    def exception(self) -> Exception | None:
        """What stopped the engine thread (a student's block manager or scheduler may raise anything)."""
        return self.replica.exception

    @property
    def idle(self) -> bool:
        """True when every request sent is done, or the engine thread has stopped."""
        return self._idle.is_set() or not self.replica.healthy

    def send(self, requests: Sequence[LiveRequest]) -> None:
        """Queue ``requests``; the engine thread admits them at its next step."""
        with self._lock:
            if self._t0 is None:
                self._t0 = self.engine.clock()
            self._outstanding += len(requests)
            self._idle.clear()
        for r in requests:
            self.replica.submit(
                r.prompt,
                SamplingParams(max_tokens=r.max_tokens, ignore_eos=True),
                request_id=f"req-{next(self._ids)}",
                priority=r.priority,
                on_token=self._on_token,
            )

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :attr:`idle`; False when ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.idle:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._idle.wait(0.05)
        return True

    def snapshot(self) -> LiveSnapshot:
        """The latest snapshot; once the engine thread has died, one taken now (nobody else touches it)."""
        if not self.replica.healthy and self._t0 is not None and not self._final:
            self._final = True
            self._publish(running=False)
        with self._lock:
            return self._snap

    def close(self) -> None:
        """Stop the engine thread after its current step."""
        self.replica.close()

    def _on_token(self, item: TokenEvent | Exception) -> None:
        if isinstance(item, Exception) or item.finished:
            with self._lock:
                self._outstanding -= 1

    def _after_step(self, engine: LLMEngine) -> None:
        stats = engine.stats()
        self._kv.append((engine.clock() - self._t0, stats.kv_used_blocks, stats.running, stats.waiting))
        with self._lock:
            done = self._outstanding == 0
        if done or time.perf_counter() - self._published >= self.every:
            self._publish(running=not done)
        if done:
            self._idle.set()
        elif self.pause:
            time.sleep(self.pause)

    def _publish(self, *, running: bool) -> None:
        eng, t0 = self.engine, self._t0
        seqs = list(eng.sequences.items())
        snap = LiveSnapshot(
            request_table(eng, t0),
            pd.DataFrame(list(self._kv), columns=["t", "blocks", "running", "waiting"]),
            {rid: s.text for rid, s in seqs},
            {rid: s.output[-24:] for rid, s in seqs},
            eng.clock() - t0,
            eng.blocks.num_blocks,
            len(eng.step_log),
            running,
            self.label,
        )
        self._published = time.perf_counter()
        with self._lock:
            self._snap = snap
            self.version += 1
