"""LLM serving: TTFT and TPOT against the SLA, KV-cache use, queues, goodput and fleet size vs load, and a real engine live.

Lab 07's dashboard: ``dashboard(block_manager=MyBlocks, scheduler=MyScheduler)`` in a notebook, ``app()`` for
``syslab serve``. Each session owns a :class:`ServingDashboard`. Every control change re-runs the fleet
simulator (``lab_core.serving.fleet.simulate``) at the chosen size, a few tens of milliseconds; the goodput
sweep and the capacity planner run many simulations and sit behind buttons with progress bars. The "live
engine" tab runs the real continuous-batching engine (``LLMEngine``, a tiny random-weight model on CPU) on a
background thread and redraws each request's queued / prefill / decode timeline while tokens stream; a
student's ``BlockAllocator`` or ``SchedulerBase`` subclass plugs in there as "yours".
"""
from __future__ import annotations

import html
import itertools
import math
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from panel.io.state import set_curdoc

from lab_core.llm.model import Transformer, build_model
from lab_core.serving.blocks import BlockAllocator, BlockManager
from lab_core.serving.engine import EngineConfig, LLMEngine
from lab_core.serving.fleet import MODELS, SLA, FleetConfig, FleetResult, Workload, fleet_vs_load, simulate
from lab_core.serving.fleet.planner import min_tp
from lab_core.serving.protocol import FREE, PAID, SamplingParams
from lab_core.serving.scheduler import Scheduler, SchedulerBase
from widgets import kit

YOURS = "yours"
REFERENCE = "reference"
GPU_NAMES: dict[str, str] = {"H100": "H100-SXM", "A100": "A100-SXM"}
TARGET = SLA()  # TTFT 200 ms, TPOT 1/30 s
GOODPUT_TARGET = 95.0  # % of requests within the SLA
#: Multiples of the current load the goodput sweep simulates.
SWEEP = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
#: Multiples of the current load the capacity planner sizes a fleet for.
PLAN = (0.5, 1.0, 2.0, 4.0)
PLAN_MAX_GPUS = 64
PLAN_DURATION = 10.0  # simulated seconds per planner run (each plan runs a dozen or more)
ECDF_POINTS = 400  # points per ECDF curve drawn
TIER_COLORS: dict[str, str] = {"all": "#1f77b4", "paid": "#2ca02c", "free": "#ff7f0e"}
PHASE_COLORS: dict[str, str] = {"queued": "#bbbbbb", "prefill": "#ff7f0e", "decode": "#1f77b4"}
POOL_COLORS: dict[str, str] = {"total GPUs": "#1f77b4", "prefill GPUs": "#ff7f0e", "decode GPUs": "#9467bd"}
TIMELINE_COLUMNS = ["request", "tier", "prompt_tokens", "max_tokens", "generated", "arrival", "scheduled",
                    "first_token", "finish", "state", "preemptions"]
SWEEP_COLUMNS = ["rate", "goodput_pct", "ttft_p99_ms", "tpot_p99_ms", "throughput", "tokens_per_s_per_gpu"]
PLAN_COLUMNS = ["rate", "prefill_gpus", "decode_gpus", "total_gpus", "goodput_fraction", "tokens_per_s_per_gpu",
                "ttft_p99", "tpot_p99"]
#: Words the live engine's prompts are made of (a byte-level model: one token per character).
WORDS = ("the scheduler admits a request when its blocks fit the cache and the token budget allows a chunk of "
         "its prompt while running sequences decode one token each step").split()
#: Live requests publish to the page at most this often (seconds) while tokens stream.
PUBLISH_EVERY = 0.2


# ---- the fleet run ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Run:
    """One recompute: the simulated result (None on error), the fleet it ran, how long it took, notes."""

    result: FleetResult | None = None
    config: FleetConfig | None = None
    workload: Workload | None = None
    seconds: float = 0.0
    note: str = ""
    error: str = ""


@dataclass(frozen=True, eq=False)
class Sweep:
    """A table computed behind a button, and the settings it was computed for."""

    table: pd.DataFrame
    setting: str = ""
    seconds: float = 0.0
    error: str = ""


def ecdf(values: np.ndarray, total: int, *, scale: float = 1e3) -> pd.DataFrame:
    """Share of ``total`` requests with a value <= x, at each finite value (scaled); unfinished ones never count,
    so the curve stops below 1 when requests were left unserved. At most ``ECDF_POINTS`` points."""
    v = np.sort(values[np.isfinite(values)]) * scale
    if not len(v) or not total:
        return pd.DataFrame({"x": [], "share": []})
    share = np.arange(1, len(v) + 1) / total
    if len(v) > ECDF_POINTS:
        keep = np.unique(np.linspace(0, len(v) - 1, ECDF_POINTS).round().astype(int))
        v, share = v[keep], share[keep]
    return pd.DataFrame({"x": v, "share": share})


# ---- the live engine -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LiveSnapshot:
    """The live engine as of one moment: a row per request, KV blocks per step, streamed texts, state."""

    timeline: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=TIMELINE_COLUMNS))
    kv: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["t", "blocks", "running", "waiting"]))
    texts: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, list[int]] = field(default_factory=dict)
    now: float = 0.0
    total_blocks: int = 0
    steps: int = 0
    running: bool = False
    label: str = ""
    error: str = ""


@dataclass(frozen=True)
class LiveRequest:
    """One request the button sends."""

    prompt: str
    max_tokens: int
    priority: int


def live_requests(n: int, seed: int, *, max_prompt: int = 300) -> list[LiveRequest]:
    """``n`` requests with mixed prompt lengths (20 to ``max_prompt`` characters, i.e. tokens), mixed output
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


class LiveEngine:
    """A real ``LLMEngine`` stepping on its own thread; ``publish`` gets a :class:`LiveSnapshot` while it runs.

    Only the worker thread touches the engine: ``send`` queues requests for it. The thread ends when every
    request is done; the next ``send`` starts it again on the same engine (same cache, same clock).
    """

    def __init__(self, config: EngineConfig, model: Transformer, publish: Callable[[LiveSnapshot], None], *,
                 block_manager: type[BlockAllocator] | None = None, scheduler: type[SchedulerBase] | None = None,
                 pause: float = 0.0, label: str = "") -> None:
        self.engine = LLMEngine(config, model=model, block_manager=block_manager or BlockManager,
                                scheduler=scheduler or Scheduler)
        self.publish, self.pause, self.label = publish, pause, label
        self.t0: float | None = None
        self._inbox: queue.SimpleQueue[LiveRequest] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._active = False
        self._kv: list[tuple[float, int, int, int]] = []
        self._ids = itertools.count()
        self.error = ""
        self.stopped = False

    @property
    def busy(self) -> bool:
        """True while the worker has requests to serve (or is about to start)."""
        return self._active

    def send(self, requests: Sequence[LiveRequest]) -> None:
        """Queue ``requests``; start the worker unless it is running."""
        with self._lock:
            for r in requests:
                self._inbox.put(r)
            if not self._active and not self.error:
                self._active = True
                self._thread = threading.Thread(target=self._loop, name="serving-live-engine", daemon=True)
                self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker to finish; True when it did."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self._active

    def stop(self) -> None:
        """Ask the worker to stop after its current step (the session closed)."""
        self.stopped = True

    def _drain(self) -> None:
        eng = self.engine
        while True:
            try:
                r = self._inbox.get_nowait()
            except queue.Empty:
                return
            now = eng.clock()
            if self.t0 is None:
                self.t0 = now
            eng.add_request(r.prompt, SamplingParams(max_tokens=r.max_tokens, ignore_eos=True),
                            request_id=f"req-{next(self._ids)}", priority=r.priority, arrival=now)

    def _loop(self) -> None:
        eng = self.engine
        last = 0.0
        try:
            while True:
                self._drain()
                with self._lock:
                    if self.stopped or (not eng.has_work() and self._inbox.empty()):
                        self._finish()
                        return
                if not eng.has_work():
                    continue
                eng.step()
                stats = eng.stats()
                self._kv.append((eng.clock() - self.t0, stats.kv_used_blocks, stats.running, stats.waiting))
                if time.perf_counter() - last >= PUBLISH_EVERY:
                    self.publish(self.snapshot(running=True))
                    last = time.perf_counter()
                if self.pause:
                    time.sleep(self.pause)
        except Exception as exc:  # the student's block manager or scheduler may raise anything; show it
            with self._lock:
                self.error = kit.describe(exc)
                self._finish()

    def _finish(self) -> None:
        # Under the lock: the last snapshot goes out before a later send can start a new worker.
        try:
            self.publish(self.snapshot(running=False))
        finally:
            self._active = False

    def snapshot(self, *, running: bool) -> LiveSnapshot:
        """Every request's phases so far, in seconds since the first request arrived."""
        eng = self.engine
        t0 = self.t0 if self.t0 is not None else eng.clock()
        now = eng.clock() - t0
        rows, texts, tokens = [], {}, {}
        for rid, s in list(eng.sequences.items()):
            def rel(t: float | None) -> float:
                return math.nan if t is None else t - t0

            state = ("done" if s.finish_time is not None else "decode" if s.first_token_time is not None
                     else "prefill" if s.first_scheduled is not None else "queued")
            rows.append((rid, "paid" if s.priority == PAID else "free", len(s.prompt), s.params.max_tokens,
                         len(s.output), rel(s.arrival), rel(s.first_scheduled), rel(s.first_token_time),
                         rel(s.finish_time), state, s.preemptions))
            texts[rid] = s.text
            tokens[rid] = s.output[-24:]
        kv = pd.DataFrame(list(self._kv), columns=["t", "blocks", "running", "waiting"])
        return LiveSnapshot(pd.DataFrame(rows, columns=TIMELINE_COLUMNS), kv, texts, tokens, now, eng.blocks.num_blocks,
                            len(eng.step_log), running, self.label, self.error)


def printable(text: str) -> str:
    """The streamed text with control and replacement characters shown as a middle dot."""
    return "".join(c if c.isprintable() and c != "\ufffd" else "·" for c in text)


# ---- the dashboard ---------------------------------------------------------------------------


class ServingDashboard(pn.viewable.Viewer):
    """A fleet of LLM engines simulated against the SLA, and the real engine serving requests live."""

    # traffic
    rate = param.Number(40.0, bounds=(1.0, 200.0), step=1.0, label="Arrival rate (req/s)")
    concurrency = param.Integer(0, bounds=(0, 256), step=8, label="Closed-loop users (0 = open loop at the rate)")
    burstiness = param.Number(1.0, bounds=(0.2, 5.0), step=0.1, label="Burstiness (gap CV; 1 = Poisson)")
    duration = param.Number(20.0, bounds=(5.0, 30.0), step=5.0, label="Simulated traffic (s)")
    seed = param.Integer(1, bounds=(0, 2**31 - 1), label="Seed")
    # model and fleet
    model = param.Selector(default="8B", objects=list(MODELS), label="Model")
    gpu = param.Selector(default="H100", objects=list(GPU_NAMES), label="GPU type")
    prefill_gpus = param.Integer(0, bounds=(0, 16), label="Prefill GPUs (0 = colocated)")
    decode_gpus = param.Integer(2, bounds=(1, 16), label="Decode GPUs")
    # engine (both the simulated fleet and the live engine)
    token_budget = param.Integer(8192, bounds=(256, 16384), step=256, label="Token budget per step (simulated)")
    block_size = param.Selector(default=16, objects=[8, 16, 32, 64], label="KV block size (tokens)")
    chunked_prefill = param.Boolean(True, label="Chunked prefill")
    policy = param.Selector(default="fcfs", objects=["fcfs", "priority"], label="Queue policy")
    # live engine
    live_requests = param.Integer(8, bounds=(1, 32), label="Requests per click")
    live_blocks = param.Integer(48, bounds=(16, 256), step=8, label="KV blocks (live engine)")
    live_budget = param.Integer(128, bounds=(16, 512), step=16, label="Token budget per step (live engine)")
    live_pause = param.Integer(20, bounds=(0, 200), step=5, label="Pause between steps (ms; 0 = full speed)")
    live_block_manager = param.Selector(default=REFERENCE, objects=[REFERENCE], label="Block manager")
    live_scheduler = param.Selector(default=REFERENCE, objects=[REFERENCE], label="Scheduler")
    live_request = param.Selector(default="latest", objects=["latest"], label="Show the text of")
    # results
    run = param.ClassSelector(class_=Run, default=Run(), precedence=-1, doc="the latest fleet simulation")
    sweep = param.ClassSelector(class_=Sweep, default=Sweep(pd.DataFrame(columns=SWEEP_COLUMNS)), precedence=-1,
                                doc="the latest goodput-vs-load sweep")
    plan = param.ClassSelector(class_=Sweep, default=Sweep(pd.DataFrame(columns=PLAN_COLUMNS)), precedence=-1,
                               doc="the latest fleet-size-vs-load plan")
    live = param.ClassSelector(class_=LiveSnapshot, default=LiveSnapshot(), precedence=-1,
                               doc="the live engine as last published")

    def __init__(self, block_manager: type[BlockAllocator] | None = None, scheduler: type[SchedulerBase] | None = None,
                 **params: Any) -> None:
        for name, cls, base in (("block_manager", block_manager, BlockAllocator), ("scheduler", scheduler, SchedulerBase)):
            if cls is not None and not (isinstance(cls, type) and issubclass(cls, base)):
                raise TypeError(f"{name} must be a subclass of {base.__name__} (the class, not an instance), "
                                f"got {cls!r}")
        self._block_manager, self._scheduler = block_manager, scheduler
        chosen = {"live_block_manager": params.pop("live_block_manager", YOURS if block_manager else REFERENCE),
                  "live_scheduler": params.pop("live_scheduler", YOURS if scheduler else REFERENCE)}
        super().__init__(**params)
        # "yours" is a valid choice only once this instance's objects include it.
        if block_manager is not None:
            self.param.live_block_manager.objects = [REFERENCE, YOURS]
        if scheduler is not None:
            self.param.live_scheduler.objects = [REFERENCE, YOURS]
        with param.discard_events(self):
            self.param.update(chosen)
        self._runs = itertools.count()
        self._latest = -1
        self._model: Transformer | None = None
        self._live: LiveEngine | None = None
        self._doc: Any = None
        self._sweep_progress = kit.progress_bar()
        self._plan_progress = kit.progress_bar()
        self._sweep_button = pn.widgets.Button(label="Sweep goodput vs load (8 simulations)", button_type="primary",
                                               sizing_mode="stretch_width")
        self._sweep_button.on_click(lambda _e: self.run_sweep())
        self._plan_button = pn.widgets.Button(label="Plan fleet size vs load (capacity planner)",
                                              button_type="primary", sizing_mode="stretch_width")
        self._plan_button.on_click(lambda _e: self.run_plan())
        self._send = pn.widgets.Button(label="Send requests to the live engine", button_type="primary",
                                       sizing_mode="stretch_width")
        self._send.on_click(lambda _e: self.send_live())
        self._reset = pn.widgets.Button(label="New engine (empty cache)", sizing_mode="stretch_width")
        self._reset.on_click(lambda _e: self.reset_live())
        self._sends = itertools.count(1)

        def pane(view: Callable[[], Any], **kw: Any) -> pn.pane.HoloViews:
            # DynamicMaps update the drawn figures' data in place, several times faster than redrawing them.
            return pn.pane.HoloViews(hv.DynamicMap(view), sizing_mode="stretch_width", min_width=420,
                                     styles={"flex": "1 1 45%"}, **kw)

        self._plots = pn.FlexBox(*(pane(v) for v in (self.ttft_plot, self.tpot_plot, self.kv_plot,
                                                     self.queue_plot)),
                                 flex_wrap="wrap", sizing_mode="stretch_width")
        self._sweep_plot = pane(self.goodput_plot)
        self._plan_plot = pane(self.fleet_plot)
        # Redrawn whole on each publish: a DynamicMap kept the first frame's axes (one request row, the
        # first tenth of a second) while requests were added and time went on.
        self._timeline = pn.panel(self.timeline_plot, sizing_mode="stretch_width")
        self._live_kv = pn.panel(self.live_kv_plot, sizing_mode="stretch_width")
        self.recompute()

    # ---- the fleet simulation --------------------------------------------------------------

    def tp(self) -> int:
        """GPUs per engine instance: the smallest tensor parallelism whose memory holds the model and a request."""
        return min_tp(self.model, GPU_NAMES[self.gpu], Workload())

    def fleet(self) -> tuple[FleetConfig, str]:
        """The simulated fleet, GPU counts rounded up to whole instances, and a note when they were."""
        tp = self.tp()
        pre = -(-int(self.prefill_gpus) // tp) * tp
        dec = -(-int(self.decode_gpus) // tp) * tp
        note = ""
        if (pre, dec) != (self.prefill_gpus, self.decode_gpus):
            note = (f"{MODELS[self.model].name} needs {tp} {self.gpu}s per instance (tensor parallel), so the pools "
                    f"are rounded up to {pre} prefill and {dec} decode GPUs.")
        cfg = FleetConfig(model=self.model, gpu=GPU_NAMES[self.gpu], prefill_gpus=pre, decode_gpus=dec, tp=tp,
                          token_budget=int(self.token_budget), block_size=int(self.block_size),
                          chunked_prefill=bool(self.chunked_prefill), policy=self.policy)
        return cfg, note

    def workload(self) -> Workload:
        """The traffic: open loop at ``rate`` with burstiness, or ``concurrency`` closed-loop users."""
        return Workload(rate=float(self.rate), duration=float(self.duration), cv=float(self.burstiness),
                        concurrency=int(self.concurrency) or None, seed=int(self.seed))

    @param.depends("rate", "concurrency", "burstiness", "duration", "seed", "model", "gpu", "prefill_gpus",
                   "decode_gpus", "token_budget", "block_size", "chunked_prefill", "policy", watch=True)
    def recompute(self) -> None:
        """Simulate the fleet under the current settings; publish ``run``."""
        generation = self._latest = next(self._runs)
        started = time.perf_counter()
        result = cfg = wl = None
        note = error = ""
        try:
            cfg, note = self.fleet()
            wl = self.workload()
            result = simulate(cfg, wl, sla=TARGET)
        except Exception as exc:  # a setting the simulator refuses: say which and why
            error = kit.describe(exc)
        if generation != self._latest:
            return
        self.run = Run(result, cfg, wl, time.perf_counter() - started, note, error)

    def summary(self) -> dict[str, float]:
        """The current run's numbers (empty on error)."""
        return dict(self.run.result.summary) if self.run.result is not None else {}

    def offered_rate(self) -> float:
        """Requests per second the current run received (the rate, or what the closed loop sent)."""
        s, wl = self.summary(), self.run.workload
        if not s or wl is None:
            return float(self.rate)
        return s["requests"] / wl.duration if wl.concurrency else wl.rate

    def distribution(self, metric: str) -> pd.DataFrame:
        """ECDF of ``metric`` ("ttft" or "tpot") in ms, for all requests and per tier: x, share, tier.

        TTFT counts every request; TPOT those asked for more than one token. Unfinished requests count as
        beyond every value, so the curve ends below 1 when the fleet left requests unserved."""
        r = self.run.result
        parts = []
        if r is not None:
            req = r.requests
            unfinished = ~np.isfinite(req["finish"].to_numpy())
            for tier, rows in (("all", req), *((t, req[req["tier"] == t]) for t in ("paid", "free"))):
                values = rows[metric].to_numpy(dtype=float).copy()
                counted = np.ones(len(rows), bool) if metric == "ttft" else rows["output_len"].to_numpy() > 1
                values[unfinished[rows.index.to_numpy()]] = np.nan
                parts.append(ecdf(values[counted], int(counted.sum())).assign(tier=tier))
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["x", "share", "tier"])
        return frame

    # ---- sweeps behind buttons ---------------------------------------------------------------

    def setting(self) -> str:
        """The current settings in words, for the sweeps' captions."""
        cfg = self.run.config
        if cfg is None:
            return "invalid settings"
        pools = f"{cfg.prefill_gpus} prefill + {cfg.decode_gpus} decode" if cfg.prefill_gpus else \
            f"{cfg.decode_gpus} colocated"
        return (f"{self.model} on {pools} {self.gpu}s (tp {cfg.tp}), budget {cfg.token_budget}, block "
                f"{cfg.block_size}, chunked prefill {'on' if cfg.chunked_prefill else 'off'}, {cfg.policy}, "
                f"cv {self.burstiness:g}")

    def sweep_rates(self) -> list[float]:
        """Arrival rates of the goodput sweep: multiples of the current load."""
        load = self.offered_rate()
        return [round(load * m, 3) for m in SWEEP]

    def run_sweep(self) -> None:
        """Simulate the current fleet at each sweep rate (open loop); publish ``sweep``."""
        started = time.perf_counter()
        rates = self.sweep_rates()
        rows, error = [], ""
        bar = self._sweep_progress
        bar.param.update(value=0, max=100 * len(rates), visible=True)
        self._sweep_button.disabled = True
        try:
            cfg, _ = self.fleet()
            base = self.workload()
            for i, rate in enumerate(rates):
                def tick(f: float, i: int = i) -> None:
                    bar.value = min(int(100 * (i + f)), bar.max)

                s = simulate(cfg, replace(base, rate=rate, concurrency=None), sla=TARGET, progress=tick).summary
                rows.append((rate, 100 * s["goodput_fraction"], 1e3 * s["ttft_p99"], 1e3 * s["tpot_p99"],
                             s["throughput"], s["tokens_per_s_per_gpu"]))
        except Exception as exc:
            error = kit.describe(exc)
        finally:
            bar.visible = False
            self._sweep_button.disabled = False
        self.sweep = Sweep(pd.DataFrame(rows, columns=SWEEP_COLUMNS), self.setting(),
                           time.perf_counter() - started, error)

    def plan_rates(self) -> list[float]:
        """Arrival rates the capacity planner sizes a fleet for: multiples of the current load."""
        load = self.offered_rate()
        return [round(load * m, 3) for m in PLAN]

    def run_plan(self) -> None:
        """The smallest fleet (colocated or split) meeting the SLA for 95% of requests at each plan rate."""
        started = time.perf_counter()
        rates = self.plan_rates()
        parts, error = [], ""
        bar = self._plan_progress
        bar.param.update(value=0, max=100 * len(rates), visible=True)
        self._plan_button.disabled = True
        try:
            cfg, _ = self.fleet()
            base = replace(self.workload(), duration=min(float(self.duration), PLAN_DURATION), concurrency=None)
            for i, rate in enumerate(rates):
                def tick(f: float, i: int = i) -> None:
                    bar.value = min(int(100 * (i + f)), bar.max)

                parts.append(fleet_vs_load(cfg.model, cfg.gpu, [rate], TARGET, workload=base, base=cfg,
                                           max_gpus=PLAN_MAX_GPUS, target_goodput_fraction=GOODPUT_TARGET / 100,
                                           progress=tick))
        except Exception as exc:
            error = kit.describe(exc)
        finally:
            bar.visible = False
            self._plan_button.disabled = False
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PLAN_COLUMNS)
        self.plan = Sweep(table, self.setting(), time.perf_counter() - started, error)

    # ---- the live engine -------------------------------------------------------------------

    def live_label(self) -> str:
        """Which block manager and scheduler the live engine runs, "yours" marked."""
        def name(choice: str, what: str) -> str:
            return f"**yours** ({what})" if choice == YOURS else f"reference {what}"

        return f"{name(self.live_block_manager, 'block manager')} + {name(self.live_scheduler, 'scheduler')}"

    def _engine_config(self) -> EngineConfig:
        return EngineConfig(model="tiny", block_size=int(self.block_size), num_blocks=int(self.live_blocks),
                            token_budget=int(self.live_budget), chunked_prefill=bool(self.chunked_prefill),
                            policy=self.policy)

    def _new_live(self) -> LiveEngine:
        if self._model is None:
            self._model = build_model("tiny")
        return LiveEngine(self._engine_config(), self._model, self._publish,
                          block_manager=self._block_manager if self.live_block_manager == YOURS else None,
                          scheduler=self._scheduler if self.live_scheduler == YOURS else None,
                          pause=int(self.live_pause) / 1e3, label=self.live_label())

    def _publish(self, snap: LiveSnapshot) -> None:
        """Hand ``snap`` to the page: on the server, on the session's event loop (the worker is another thread)."""
        def apply() -> None:
            ids = list(snap.timeline["request"])
            self.param.live_request.objects = ["latest", *ids]
            self.live = snap

        doc = self._doc
        if doc is not None and doc.session_context is not None:
            try:
                with set_curdoc(doc):
                    pn.state.execute(apply, schedule=True)
            except Exception:  # the session has closed: nobody to show it to
                if self._live is not None:
                    self._live.stop()
        else:
            apply()

    def send_live(self, n: int | None = None) -> None:
        """Send ``n`` (default: the control's) requests to the live engine, starting one if none runs or the
        engine settings changed since the last send."""
        self._doc = pn.state.curdoc
        config, label = self._engine_config(), self.live_label()
        live = self._live
        if live is None or (not live.busy and (live.engine.config != config or live.label != label or live.error)):
            try:
                live = self._live = self._new_live()
            except Exception as exc:  # the student's constructor may raise: show it in the live tab
                self._live = None
                self.live = LiveSnapshot(label=label, error=kit.describe(exc))
                return
        live.pause = int(self.live_pause) / 1e3
        live.send(live_requests(int(n or self.live_requests), seed=next(self._sends) + int(self.seed)))

    def reset_live(self) -> None:
        """Drop the live engine (after its requests finish) and clear the timeline."""
        if self._live is not None:
            self._live.stop()
            self._live.join(5)
        self._live = None
        self.param.live_request.objects = ["latest"]
        self.live_request = "latest"
        self.live = LiveSnapshot(label=self.live_label())

    def wait_live(self, timeout: float = 60.0) -> LiveSnapshot:
        """Block until the live engine's requests are done (notebooks, tests); returns the final snapshot."""
        if self._live is not None and not self._live.join(timeout):
            raise TimeoutError(f"the live engine did not finish its requests in {timeout:g} s")
        return self.live

    @property
    def live_engine(self) -> LLMEngine | None:
        """The real engine behind the live tab (None before the first send)."""
        return self._live.engine if self._live is not None else None

    def phases(self) -> pd.DataFrame:
        """The timeline as bars: request, row, phase, start, end (s since the first request); running phases end now."""
        snap = self.live
        rows = []
        for i, r in enumerate(snap.timeline.itertuples()):
            marks = [r.arrival, r.scheduled, r.first_token, r.finish]
            for phase, start, end in zip(PHASE_COLORS, marks, marks[1:]):
                if math.isnan(start):
                    break
                rows.append((r.request, i, phase, start, snap.now if math.isnan(end) else end, r.tier,
                             r.prompt_tokens, r.generated, r.max_tokens))
        return pd.DataFrame(rows, columns=["request", "row", "phase", "start", "end", "tier", "prompt_tokens",
                                           "generated", "max_tokens"])

    # ---- views: fleet --------------------------------------------------------------------------

    def _latency_plot(self, metric: str, target: float, title: str, xlabel: str) -> hv.Overlay:
        frame = self.distribution(metric)
        if frame.empty:
            frame = pd.DataFrame({"x": [target * 1e3], "share": [0.0], "tier": ["all"]})
        curves = kit.timeseries_plot(frame, "share", x="x", by="tier", step=True, colors=TIER_COLORS,
                                     title=title, xlabel=xlabel, ylabel="share of requests within x")
        limit = hv.VLine(target * 1e3).opts(color=kit.OVER, line_dash="dashed", line_width=2)
        label = hv.Text(target * 1e3, 0.62, f" SLA {target * 1e3:.0f} ms", halign="left").opts(
            text_color=kit.OVER, text_font_size="10pt", text_font_style="bold")
        lo = min(float(frame["x"].min()), target * 1e3) * 0.8
        hi = max(float(frame["x"].max()), target * 1e3) * 1.25
        return (curves * limit * label).opts(
            hv.opts.Overlay(title=title, logx=True, xlim=(lo, hi), ylim=(0, 1.02), legend_position="bottom_right",
                            framewise=True))

    @param.depends("run")
    def ttft_plot(self) -> hv.Overlay:
        """ECDF of time to first token (ms, log), all requests and per tier, with the SLA line."""
        return self._latency_plot("ttft", TARGET.ttft, "Time to first token (TTFT)",
                                  "TTFT, arrival → first token (ms, log)")

    @param.depends("run")
    def tpot_plot(self) -> hv.Overlay:
        """ECDF of time per output token (ms, log), all requests and per tier, with the SLA line."""
        return self._latency_plot("tpot", TARGET.tpot, "Time per output token (TPOT)",
                                  "TPOT, mean gap between later tokens (ms, log)")

    def _drain_span(self) -> hv.VSpan:
        wl = self.run.workload
        ts = self.run.result.timeseries if self.run.result is not None else None
        if wl is None or ts is None or ts.empty or ts["t"].max() <= wl.duration:
            return hv.VSpan(0, 0).opts(alpha=0.0)
        return hv.VSpan(wl.duration, float(ts["t"].max())).opts(color="#555555", alpha=0.1)

    def _timeseries(self) -> pd.DataFrame:
        r = self.run.result
        if r is None or r.timeseries.empty:
            return pd.DataFrame({"t": [0.0], "queue_depth": [0], "running": [0], "kv_utilization": [0.0]})
        return r.timeseries

    @param.depends("run")
    def kv_plot(self) -> hv.Overlay:
        """KV-cache use of the instances holding KV (colocated or decode), % of their blocks."""
        ts = self._timeseries().assign(kv_pct=lambda f: 100 * f["kv_utilization"])
        pool = "decode" if self.run.config is not None and self.run.config.disaggregated else "all"
        plot = kit.timeseries_plot(ts, "kv_pct", title="KV-cache use", ylabel=f"KV blocks in use ({pool} GPUs, %)",
                                   xlabel="simulated time (s; shaded: no new arrivals)", legend=False)
        top = max(5.0, float(ts["kv_pct"].max()) * 1.15)
        return (plot * self._drain_span()).opts(
            hv.opts.Overlay(title=f"KV-cache use over time (peak {ts['kv_pct'].max():.1f}%)", ylim=(0, min(top, 105)),
                            show_legend=False, framewise=True))

    @param.depends("run")
    def queue_plot(self) -> hv.Overlay:
        """Requests waiting for admission and requests running, over time."""
        ts = self._timeseries()
        long = ts.melt(id_vars="t", value_vars=["queue_depth", "running"], var_name="what", value_name="requests")
        long["what"] = long["what"].map({"queue_depth": "waiting (queue depth)", "running": "running (in a batch)"})
        plot = kit.timeseries_plot(long, "requests", by="what", step=True,
                                   colors={"waiting (queue depth)": kit.OVER, "running (in a batch)": "#1f77b4"},
                                   title="Queue depth", ylabel="requests",
                                   xlabel="simulated time (s; shaded: no new arrivals)")
        return (plot * self._drain_span()).opts(hv.opts.Overlay(title="Queue depth and running batch over time",
                                                                legend_position="right", framewise=True))

    @param.depends("sweep", "run")
    def goodput_plot(self) -> hv.Overlay:
        """Goodput (% of requests within the SLA) against the arrival rate, the current load marked."""
        table = self.sweep.table
        frame = table if not table.empty else pd.DataFrame({"rate": [self.offered_rate()], "goodput_pct": [np.nan]})
        dims = [("goodput_pct", "goodput (% of requests within SLA)"), ("ttft_p99_ms", "TTFT p99 (ms)"),
                ("tpot_p99_ms", "TPOT p99 (ms)"), ("tokens_per_s_per_gpu", "tokens/s per GPU")]
        vdims = [d for d in dims if d[0] in frame]
        curve = hv.Curve(frame, ("rate", "arrival rate (req/s)"), vdims).opts(color="#1f77b4", line_width=2)
        points = hv.Scatter(frame, ("rate", "arrival rate (req/s)"), vdims).opts(color="#1f77b4", size=8,
                                                                                   tools=["hover"])
        now = hv.VLine(self.offered_rate()).opts(color="#000000", line_width=1.5, line_dash="dotted")
        xlim = (0, 3.2 * self.offered_rate()) if table.empty else (None, None)
        target = hv.HLine(GOODPUT_TARGET).opts(color=kit.OVER, line_dash="dashed", line_width=2)
        title = "Goodput vs load" + ("" if not table.empty else " (press the button)")
        return (curve * points * now * target).opts(
            hv.opts.Overlay(title=title, xlabel="arrival rate (req/s; dotted: current load)",
                            ylabel="goodput (% of requests within SLA)", ylim=(0, 105), xlim=xlim, responsive=True,
                            height=kit.PLOT_HEIGHT, show_grid=True, framewise=True))

    @param.depends("plan", "run")
    def fleet_plot(self) -> hv.Overlay:
        """The planner's smallest fleet per arrival rate: total, prefill and decode GPUs."""
        table = self.plan.table
        if table.empty:
            long = pd.DataFrame({"rate": [self.offered_rate()], "gpus": [np.nan], "pool": ["total GPUs"]})
        else:
            long = table.rename(columns={"total_gpus": "total GPUs", "prefill_gpus": "prefill GPUs",
                                         "decode_gpus": "decode GPUs"}).melt(
                id_vars="rate", value_vars=list(POOL_COLORS), var_name="pool", value_name="gpus")
        lines = kit.timeseries_plot(long, "gpus", x="rate", by="pool", colors=POOL_COLORS,
                                    title="Fleet size vs load", xlabel="arrival rate (req/s)", ylabel="GPUs")
        points = hv.Overlay([hv.Scatter(part, ("rate", "arrival rate (req/s)"), ("gpus", "GPUs")).opts(
            color=POOL_COLORS[pool], size=7, tools=["hover"]) for pool, part in long.groupby("pool", sort=False)])
        now = hv.VLine(self.offered_rate()).opts(color="#000000", line_width=1.5, line_dash="dotted")
        title = ("Smallest fleet meeting the SLA for 95% of requests" if not table.empty
                 else "Fleet size vs load (press the button)")
        return (lines * points * now).opts(
            hv.opts.Overlay(title=title, xlabel="arrival rate (req/s; dotted: current load)", ylabel="GPUs",
                            xlim=(0, 4.5 * self.offered_rate()) if table.empty else (None, None),
                            legend_position="top_left", framewise=True))

    @param.depends("run")
    def error_view(self) -> pn.pane.Alert:
        """What the simulator refused (a clear message instead of a broken page)."""
        return pn.pane.Alert(f"Could not simulate: `{self.run.error}`", alert_type="danger",
                             visible=bool(self.run.error), sizing_mode="stretch_width")

    @param.depends("run")
    def headline(self) -> pn.pane.Markdown:
        """The fleet, the traffic and the throughput in one sentence, and the recompute time."""
        s, cfg, wl = self.summary(), self.run.config, self.run.workload
        if not s or cfg is None or wl is None:
            return pn.pane.Markdown(f"No results; see the error above. Recomputed in {self.run.seconds * 1e3:.0f} ms.",
                                    sizing_mode="stretch_width", margin=(0, 10))
        traffic = (f"{wl.concurrency} closed-loop users ({self.offered_rate():.1f} req/s)" if wl.concurrency
                   else f"{wl.rate:g} req/s (burstiness {wl.cv:g})")
        pools = (f"{cfg.prefill_gpus} prefill + {cfg.decode_gpus} decode GPUs" if cfg.disaggregated
                 else f"{cfg.decode_gpus} colocated GPUs")
        text = (f"**{cfg.model.name}** on {pools} ({self.gpu}, tp {cfg.tp}), {traffic} for {wl.duration:g} s: "
                f"{s['requests']:.0f} requests, {s['finished']:.0f} finished, {s['preemptions']:.0f} preemptions, "
                f"peak KV use {100 * s['peak_kv_utilization']:.1f}%. "
                f"Recomputed in **{self.run.seconds * 1e3:.0f} ms**.")
        if self.run.note:
            text += f"  \n{self.run.note}"
        return pn.pane.Markdown(text, sizing_mode="stretch_width", margin=(0, 10))

    @param.depends("run")
    def badges(self) -> pn.FlexBox:
        """TTFT and TPOT p50/p99 and goodput against their targets; throughput and tokens/s per GPU."""
        s = self.summary()
        if not s:
            return pn.FlexBox()
        ttft, tpot = TARGET.ttft * 1e3, TARGET.tpot * 1e3
        items = [
            kit.sla_badge("TTFT p50", 1e3 * s["ttft_p50"], ttft, unit="ms"),
            kit.sla_badge("TTFT p99", 1e3 * s["ttft_p99"], ttft, unit="ms"),
            kit.sla_badge("TPOT p50", 1e3 * s["tpot_p50"], tpot, unit="ms"),
            kit.sla_badge("TPOT p99", 1e3 * s["tpot_p99"], tpot, unit="ms"),
            kit.sla_badge("goodput", 100 * s["goodput_fraction"], GOODPUT_TARGET, unit="%", higher_is_better=True),
            pn.pane.HTML(
                f'<span class="serving-stat" style="padding:0.2em 0.6em;white-space:nowrap">throughput '
                f"<b>{s['throughput']:,.0f} tok/s</b> · <b>{s['tokens_per_s_per_gpu']:,.0f} tok/s per GPU</b>"
                "</span>", margin=(4, 6)),
        ]
        return pn.FlexBox(*items, flex_wrap="wrap", sizing_mode="stretch_width")

    def _sweep_note(self, sweep: Sweep, what: str) -> pn.viewable.Viewable:
        if sweep.error:
            return pn.pane.Alert(f"Could not {what}: `{sweep.error}`", alert_type="danger", sizing_mode="stretch_width")
        if sweep.table.empty:
            return pn.pane.Markdown("", margin=0)
        stale = " (settings changed since: press again)" if sweep.setting != self.setting() else ""
        return pn.pane.Markdown(f"For {sweep.setting}; {len(sweep.table)} rates in {sweep.seconds:.1f} s{stale}.",
                                sizing_mode="stretch_width", margin=(0, 10))

    @param.depends("sweep", "run")
    def sweep_note(self) -> pn.viewable.Viewable:
        """What the goodput sweep was computed for."""
        return self._sweep_note(self.sweep, "sweep")

    @param.depends("plan", "run")
    def plan_note(self) -> pn.viewable.Viewable:
        """What the plan was computed for."""
        missing = self.plan.table["total_gpus"].isna().sum() if not self.plan.table.empty else 0
        note = self._sweep_note(self.plan, "plan")
        if missing:
            return pn.Column(note, pn.pane.Markdown(f"{missing} rate(s) need more than {PLAN_MAX_GPUS} GPUs "
                                                    "(not drawn).", margin=(0, 10)), sizing_mode="stretch_width")
        return note

    # ---- views: live engine ------------------------------------------------------------------

    @param.depends("live")
    def timeline_plot(self) -> hv.Overlay:
        """One bar per request: queued (arrival → first scheduled), prefill (→ first token), decode (→ finish)."""
        bars = self.phases()
        snap = self.live
        n = len(snap.timeline)
        vdims = ["request", "phase", "tier", "prompt_tokens", "generated", "max_tokens"]
        layers = []
        for phase, color in PHASE_COLORS.items():
            part = bars[bars["phase"] == phase].assign(y0=lambda f: f["row"] - 0.38, y1=lambda f: f["row"] + 0.38)
            layers.append(hv.Rectangles(part, [("start", "time since the first request (s)"), "y0", "end", "y1"],
                                        vdims, label=phase).opts(color=color, line_color="white", line_width=0.5,
                                                                 tools=["hover"]))
        now = hv.VLine(snap.now).opts(color="#000000", line_width=1, line_dash="dotted", alpha=0.6 if n else 0)
        labels = [(i, f"{r.request} · {r.tier} · {r.prompt_tokens} tok") for i, r in enumerate(snap.timeline.itertuples())]
        state = "running" if snap.running else "done" if n else "idle"
        title = (f"Request timelines ({state}; {n} requests, {snap.steps} engine steps)" if n
                 else "Request timelines (press “Send requests”)")
        return hv.Overlay([*layers, now]).opts(
            hv.opts.Overlay(title=title, xlabel="time since the first request arrived (s)", ylabel="request",
                            yticks=labels or [(0, "")], ylim=(max(n, 1) - 0.5, -0.5),
                            xlim=(0, max(snap.now, 0.1) * 1.02), responsive=True,
                            height=max(260, 24 * n + 110), legend_position="top_right", show_grid=False,
                            framewise=True, toolbar="right"))

    @param.depends("live")
    def live_kv_plot(self) -> hv.Overlay:
        """KV blocks in use after each step of the live engine, with the cache size."""
        snap = self.live
        kv = snap.kv if not snap.kv.empty else pd.DataFrame({"t": [0.0], "blocks": [0], "running": [0], "waiting": [0]})
        plot = kit.timeseries_plot(kv, "blocks", step=True, title="KV blocks in use", ylabel="KV blocks in use",
                                   xlabel="time since the first request arrived (s)", legend=False)
        total = snap.total_blocks or int(self.live_blocks)
        cap = hv.HLine(total).opts(color=kit.OVER, line_dash="dashed", line_width=2)
        return (plot * cap).opts(hv.opts.Overlay(title=f"KV blocks in use (of {total}; dashed: all of them)",
                                                 ylim=(0, total * 1.1), show_legend=False, framewise=True))

    @param.depends("live", "live_request")
    def live_text(self) -> pn.pane.HTML:
        """The streamed text of the chosen (or latest) request, with its state."""
        snap = self.live
        if snap.timeline.empty:
            return pn.pane.HTML("", sizing_mode="stretch_width")
        rid = snap.timeline["request"].iloc[-1] if self.live_request == "latest" else self.live_request
        row = snap.timeline.set_index("request").loc[rid] if rid in set(snap.timeline["request"]) else None
        if row is None:
            return pn.pane.HTML("", sizing_mode="stretch_width")
        text = html.escape(printable(snap.texts.get(rid, "")))
        ids = " ".join(str(t) for t in snap.tokens.get(rid, []))
        more = "… " if row["generated"] > len(snap.tokens.get(rid, [])) else ""
        box = ("white-space:pre-wrap;word-break:break-all;background:#f6f6f6;padding:0.4em;margin:0.3em 0;"
               "max-height:6em;overflow:auto")
        return pn.pane.HTML(
            f"<b>{html.escape(rid)}</b> ({row['tier']}, {row['prompt_tokens']} prompt tokens): {row['state']}, "
            f"{row['generated']} of {row['max_tokens']} tokens streamed"
            f'<div style="margin-top:0.4em">text (· = a byte that is not printable UTF-8):</div>'
            f'<pre class="serving-text" style="{box}">{text or "&nbsp;"}</pre>'
            f'<div>latest token ids:</div><pre class="serving-ids" style="{box}">{more}{ids or "&nbsp;"}</pre>'
            '<span style="color:#777;font-size:0.85em">The tiny model has random weights, so its text is noise: '
            "what this shows is when each token arrives.</span>", sizing_mode="stretch_width")

    @param.depends("live")
    def live_status(self) -> pn.viewable.Viewable:
        """What the live engine runs, how far it is, and any error from the student's code."""
        snap = self.live
        if snap.error:
            return pn.pane.Alert(f"The live engine stopped ({snap.label}): `{snap.error}`", alert_type="danger",
                                 sizing_mode="stretch_width")
        t = snap.timeline
        if t.empty:
            return pn.pane.Markdown(f"Live engine: {self.live_label()}. Press the button to send requests.",
                                    sizing_mode="stretch_width", margin=(0, 10))
        done = t.dropna(subset=["finish"])
        ttft = (done["first_token"] - done["arrival"]).median() * 1e3 if len(done) else math.nan
        text = (f"Live engine: {snap.label}, {'running' if snap.running else 'idle'}. {len(done)} of {len(t)} "
                f"requests done after {snap.steps} steps in {snap.now:.2f} s; median TTFT {ttft:.0f} ms; "
                f"{int(t['preemptions'].sum())} preemptions.")
        return pn.pane.Markdown(text, sizing_mode="stretch_width", margin=(0, 10))

    # ---- layout ----------------------------------------------------------------------------

    def controls(self) -> pn.Column:
        """The sidebar: traffic, model and fleet, engine settings."""
        return pn.Column(
            kit.controls(self, ["rate", "concurrency", "burstiness", "duration", "seed"], title="Traffic",
                         widgets={"seed": pn.widgets.IntInput}),
            kit.controls(self, ["model", "gpu", "prefill_gpus", "decode_gpus"], title="Model and fleet"),
            kit.controls(self, ["token_budget", "block_size", "chunked_prefill", "policy"], title="Engine"),
            pn.pane.Markdown(f"SLA: TTFT ≤ {TARGET.ttft * 1e3:.0f} ms, TPOT ≤ {TARGET.tpot * 1e3:.1f} ms "
                             f"(30 tokens/s); goodput counts requests meeting both. Block size, chunking and policy "
                             "also apply to the live engine.", margin=(0, 10)),
            sizing_mode="stretch_width",
        )

    def live_controls(self) -> pn.Column:
        """The live tab's own controls, the send and reset buttons."""
        return pn.Column(
            kit.controls(self, ["live_requests", "live_blocks", "live_budget", "live_pause", "live_block_manager",
                                "live_scheduler"]),
            self._send, self._reset, sizing_mode="stretch_width")

    def main(self) -> pn.Tabs:
        """The fleet tab (numbers, distributions, time series, sweeps) and the live-engine tab."""
        sweeps = pn.FlexBox(
            pn.Column(self._sweep_button, self._sweep_progress, self.sweep_note, self._sweep_plot.clone(styles={}),
                      sizing_mode="stretch_width", min_width=420, styles={"flex": "1 1 45%"}),
            pn.Column(self._plan_button, self._plan_progress, self.plan_note, self._plan_plot.clone(styles={}),
                      sizing_mode="stretch_width", min_width=420, styles={"flex": "1 1 45%"}),
            flex_wrap="wrap", sizing_mode="stretch_width")
        fleet = pn.Column(self.error_view, self.headline, self.badges, self._plots,
                          pn.pane.Markdown("#### Load sweeps (several simulations each)", margin=(0, 10)), sweeps,
                          sizing_mode="stretch_width")
        # A FlexBox in a Row beside a fixed-width column stopped every later update from reaching the
        # browser (Panel 1.x, seen in the served app): the live tab stacks its views in one column.
        live = pn.Row(
            pn.Column(self.live_controls(), width=300),
            pn.Column(self.live_status, self._timeline, kit.color_key(PHASE_COLORS), self._live_kv,
                      pn.Param(self, parameters=["live_request"], show_name=False,
                               widgets={"live_request": pn.widgets.Select}),
                      self.live_text, sizing_mode="stretch_width"),
            sizing_mode="stretch_width")
        return pn.Tabs(("Fleet simulation", fleet), ("Live engine (real, CPU)", live), sizing_mode="stretch_width",
                       dynamic=False)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(pn.Column(self.controls(), width=320), self.main(), sizing_mode="stretch_width")


def dashboard(block_manager: type[BlockAllocator] | None = None, scheduler: type[SchedulerBase] | None = None,
              **params: Any) -> ServingDashboard:
    """The dashboard for a notebook. A ``block_manager`` (a ``BlockAllocator`` subclass) or ``scheduler`` (a
    ``SchedulerBase`` subclass) runs the live engine, labelled "yours"; ``params`` set any control
    (``dashboard(rate=60, decode_gpus=4)``)."""
    return ServingDashboard(block_manager=block_manager, scheduler=scheduler, **params)


def app() -> pn.template.FastListTemplate:
    """A fresh dashboard in a page template, one per browser session (``syslab serve``)."""
    dash = ServingDashboard()
    pn.state.on_session_destroyed(lambda _ctx: dash._live.stop() if dash._live is not None else None)
    return pn.template.FastListTemplate(
        title="Lab 07 · LLM serving",
        sidebar=[dash.controls()],
        main=[dash.main()],
        sidebar_width=340,
        accent="#1f77b4",
    )
