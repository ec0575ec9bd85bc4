"""Distributed training: a real run's loss and throughput live, memory per GPU by strategy, the checkpoint interval, the mesh.

Lab 08's dashboard: ``dashboard()`` in a notebook, ``app()`` for ``syslab serve``. Each session owns a
:class:`TrainingDashboard`. The "Live run" tab reads the experiment tracker (SQLite, written by rank 0 of a
``torchrun`` job) once a second while the chosen run is running, and can launch a short real job on this
machine. The other tabs are arithmetic from ``lab_core.training.calculators`` (milliseconds per change):
memory per GPU for each parallelism strategy on the same GPUs, the lost-time trade-off of the checkpoint
interval with the Young/Daly optimum, and where each rank of a DP x TP x PP mesh sits.
"""
from __future__ import annotations

import html
import threading
from pathlib import Path
from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn
import param

from lab_core.llm.config import ARCHITECTURES, ModelConfig, get_config
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
from widgets import kit

#: Llama 3's shapes next to the course's own presets.
MODELS: dict[str, ModelConfig] = {"100m": get_config("100m"), "1b": get_config("1b"), **ARCHITECTURES}
GPU_MEMORY_GB: dict[str, float] = {"H100 (80 GB)": 80.0, "H200 (141 GB)": 141.0, "A100 (40 GB)": 40.0}
PARTS: dict[str, str] = {"params": "#1f77b4", "grads": "#ff7f0e", "optimizer": "#2ca02c", "activations": "#9467bd"}
PART_LABELS: dict[str, str] = {"params": "weights", "grads": "gradients", "optimizer": "optimizer state",
                               "activations": "activations"}
LOSS_COLORS: dict[str, str] = {"train": "#1f77b4", "eval": "#ff7f0e"}
LIVE_STRATEGIES: tuple[str, ...] = ("ddp", "fsdp", "tp", "pp")
#: A mesh bigger than this many GPUs is drawn for its first nodes only (thousands of boxes say nothing).
MAX_DRAWN_GPUS = 256
POLL_MS = 1000


def strategy_mesh(strategy: str, dp: int, tp: int, pp: int) -> tuple[int, int, int]:
    """The (dp, tp, pp) a strategy runs on the same dp*tp*pp GPUs: axes it does not use become data parallelism."""
    used_tp = tp if strategy in ("tp", "fsdp+tp") else 1
    used_pp = pp if strategy == "pp" else 1
    return dp * tp * pp // (used_tp * used_pp), used_tp, used_pp


class TrainingDashboard(pn.viewable.Viewer):
    """A live training run from the tracker, and the capacity arithmetic of distributed training."""

    # memory per GPU and mesh
    model = param.Selector(default="8B", objects=list(MODELS), label="Model")
    dp = param.Integer(8, bounds=(1, 128), label="Data-parallel size (dp)")
    tp = param.Integer(1, bounds=(1, 16), label="Tensor-parallel size (tp)")
    pp = param.Integer(1, bounds=(1, 16), label="Pipeline stages (pp)")
    micro_batch = param.Integer(1, bounds=(1, 32), label="Micro-batch (sequences per GPU)")
    seq_len = param.Selector(default=4096, objects=[512, 1024, 2048, 4096, 8192, 16384, 32768],
                             label="Sequence length (tokens)")
    precision = param.Selector(default="bf16-mixed", objects=["bf16-mixed", "fp32"], label="Precision")
    activation_checkpointing = param.Boolean(False, label="Activation checkpointing (full recompute)")
    flash_attention = param.Boolean(True, label="FlashAttention (no s x s scores kept)")
    gpu = param.Selector(default="H100 (80 GB)", objects=list(GPU_MEMORY_GB), label="GPU")
    gpus_per_node = param.Integer(8, bounds=(1, 16), label="GPUs per node")
    # checkpoint interval
    checkpoint_s = param.Number(60.0, bounds=(1.0, 1800.0), step=1.0, label="Checkpoint write time (s)")
    gpu_mtbf_hours = param.Number(50000.0, bounds=(1000.0, 500000.0), step=1000.0,
                                  label="MTBF of one GPU (hours)")
    n_gpus = param.Integer(4096, bounds=(1, 32768), step=64, label="GPUs in the job")
    restart_minutes = param.Number(10.0, bounds=(0.0, 120.0), step=1.0, label="Restart time after a failure (min)")
    async_checkpoint = param.Boolean(False, label="Asynchronous checkpoint (training waits only for the copy)")
    async_blocking_pct = param.Number(10.0, bounds=(1.0, 100.0), step=1.0,
                                      label="Async: share of the write that still blocks (%)")
    # live run
    tracker_path = param.String(default="", label="Tracker database (SQLite)")
    live_strategy = param.Selector(default="ddp", objects=list(LIVE_STRATEGIES), label="Strategy")
    live_nproc = param.Selector(default=2, objects=[1, 2], label="Processes (ranks)")
    live_steps = param.Integer(60, bounds=(10, 400), step=10, label="Optimizer steps")
    # results
    memory = param.DataFrame(pd.DataFrame(columns=["setup", "strategy", "part", "GB"]), precedence=-1,
                             doc="memory per GPU by strategy (GB), the latest recompute")
    live = param.DataFrame(pd.DataFrame(columns=["step"]), precedence=-1,
                           doc="the chosen run's metrics, one row per step")

    def __init__(self, **params: Any) -> None:
        if not params.get("tracker_path"):
            from lab_core.training.paths import default_workdir

            params["tracker_path"] = str(default_workdir() / "tracker.db")
        super().__init__(**params)
        self.memory_note = ""
        self.live_error = ""  # the latest launch's failure, shown until the next start
        self._read_error = ""
        self.launched: Any = None  # the LaunchedRun this session started
        self._launching = False
        self._launch_error = ""
        self._tracker: Any = None
        self._tracker_at = ""
        self._callback: Any = None
        self._drawn: tuple = ()
        self._xlim: tuple[float, float] = (0, 1)
        self._run_select = pn.widgets.Select(label="Run", options={}, sizing_mode="stretch_width")
        self._run_select.param.watch(lambda _e: self.poll(), "value")
        self._refresh = pn.widgets.Button(label="Refresh the list of runs", sizing_mode="stretch_width")
        self._refresh.on_click(lambda _e: self.refresh_runs())
        self._start = pn.widgets.Button(label="Start a run (tiny model, this machine)", button_type="primary",
                                        sizing_mode="stretch_width")
        self._start.on_click(lambda _e: self.start_run())
        self._stop = pn.widgets.Button(label="Stop the run I started", sizing_mode="stretch_width")
        self._stop.on_click(lambda _e: self.stop_run())
        self._progress = pn.indicators.Progress(value=0, max=1, sizing_mode="stretch_width", bar_color="info")
        self._status = pn.pane.Markdown("", sizing_mode="stretch_width", margin=(0, 10))
        self._error = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")
        # Panes whose object is replaced on each poll (a DynamicMap kept the first frame's axes). Unlinked: Panel
        # shares the "step" axis of linked panes, and the shared range kept the first run's length.
        self._loss, self._lr, self._speed = (pn.pane.HoloViews(view(), sizing_mode="stretch_width", linked_axes=False)
                                             for view in (self.loss_plot, self.lr_plot, self.speed_plot))
        self._memory_plot = pn.pane.HoloViews(sizing_mode="stretch_width", linked_axes=False)
        self._memory_text = pn.pane.Markdown("", sizing_mode="stretch_width", margin=(0, 10))
        self._interval_plot = pn.pane.HoloViews(sizing_mode="stretch_width", linked_axes=False)
        self._interval_text = pn.pane.Markdown("", sizing_mode="stretch_width", margin=(0, 10))
        self._mesh_plot = pn.pane.HoloViews(sizing_mode="stretch_width", linked_axes=False)
        self._mesh_text = pn.pane.Markdown("", sizing_mode="stretch_width", margin=(0, 10))
        self._mesh_error = pn.pane.Alert("", alert_type="warning", visible=False, sizing_mode="stretch_width")
        self.recompute_memory()
        self.recompute_interval()
        self.recompute_mesh()
        self.refresh_runs()

    # ---- memory per GPU ------------------------------------------------------------------------

    @param.depends("model", "dp", "tp", "pp", "micro_batch", "seq_len", "precision", "activation_checkpointing",
                   "flash_attention", "gpu", watch=True)
    def recompute_memory(self) -> None:
        """Memory per GPU of every strategy on dp*tp*pp GPUs; strategies the mesh does not fit are listed."""
        cfg = MODELS[self.model]
        rows, refused = [], []
        for strategy in STRATEGIES:
            if strategy == "zero3":
                continue  # the same numbers as fsdp
            sdp, stp, spp = strategy_mesh(strategy, int(self.dp), int(self.tp), int(self.pp))
            if strategy in ("tp", "fsdp+tp") and stp == 1 or strategy == "pp" and spp == 1:
                refused.append(f"{strategy} needs {'tp' if 'tp' in strategy else 'pp'} > 1")
                continue
            try:
                m = memory_per_gpu(cfg, strategy, dp=sdp, tp=stp, pp=spp, micro_batch=int(self.micro_batch),
                                   seq_len=int(self.seq_len), precision=self.precision,
                                   activation_checkpointing=bool(self.activation_checkpointing),
                                   flash_attention=bool(self.flash_attention))
            except ValueError as exc:
                refused.append(f"{strategy}: {exc}")
                continue
            label = strategy + "".join(f" {a}{v}" for a, v in (("dp", sdp), ("tp", stp), ("pp", spp)) if v > 1)
            rows += [(label, strategy, PART_LABELS[part], value) for part, value in m.as_dict(GB).items()
                     if part != "total"]
        self.memory_note = "; ".join(refused)
        self.memory = pd.DataFrame(rows, columns=["setup", "strategy", "part", "GB"])
        self._memory_plot.object = self.memory_plot()
        self._memory_text.object = self.memory_summary()

    def memory_totals(self) -> pd.Series:
        """GB per GPU of each setup, in the plotted order."""
        frame = self.memory
        return frame.groupby("setup", sort=False)["GB"].sum() if not frame.empty else pd.Series(dtype=float)

    def memory_plot(self) -> hv.Overlay:
        """Stacked bars per strategy (weights, gradients, optimizer state, activations) and the GPU's memory."""
        frame = self.memory if not self.memory.empty else pd.DataFrame(
            {"setup": ["none"], "strategy": ["none"], "part": ["weights"], "GB": [0.0]})
        limit = GPU_MEMORY_GB[self.gpu]
        colors = {PART_LABELS[p]: c for p, c in PARTS.items()}
        order = list(colors)
        bars = hv.Bars(frame, [hv.Dimension("setup", label="strategy and mesh"),
                               hv.Dimension("part", values=order)], [("GB", "memory per GPU (GB)")]).opts(
            stacked=True, cmap=colors, color="part", tools=["hover"], show_legend=False,
            xrotation=20, responsive=True, height=kit.PLOT_HEIGHT, show_grid=True, framewise=True)
        line = kit.target_line(limit, f"{self.gpu}", at=frame["setup"].iloc[-1])
        top = max(limit, float(self.memory_totals().max()) if not self.memory.empty else 0.0) * 1.12
        world = int(self.dp) * int(self.tp) * int(self.pp)
        return (bars * line).opts(hv.opts.Overlay(
            title=f"{self.model} on {world} GPUs: memory per GPU (busiest rank)", ylim=(0, top),
            xlabel="strategy and mesh", ylabel="memory per GPU (GB)", framewise=True))

    def memory_summary(self) -> str:
        """Which setups fit the GPU, and what was left out."""
        limit = GPU_MEMORY_GB[self.gpu]
        cfg = MODELS[self.model]
        fits = [f"{'✓' if gb <= limit else '✗'} **{html.escape(s)}** {gb:,.1f} GB"
                for s, gb in self.memory_totals().items()]
        text = (f"{self.model}: {cfg.num_params() / 1e9:.2f} B parameters; every strategy uses the same "
                f"{int(self.dp) * int(self.tp) * int(self.pp)} GPUs (axes a strategy lacks become data "
                f"parallelism; ZeRO-3 is FSDP). Fits a {self.gpu}: " + " · ".join(fits) + ".")
        if self.memory_note:
            text += f"  \nNot drawn: {html.escape(self.memory_note)}."
        return text + ("  \nNot counted: logits, temporary buffers, FSDP's gathered layer, the allocator's slack "
                       "(budget ~10-20% more).")

    # ---- checkpoint interval ----------------------------------------------------------------

    def blocking_s(self) -> float:
        """Seconds each checkpoint stops training: the whole write, or the async copy's share of it."""
        share = float(self.async_blocking_pct) / 100 if self.async_checkpoint else 1.0
        return float(self.checkpoint_s) * share

    def job_mtbf_s(self) -> float:
        """Mean time between failures of the whole job, seconds."""
        return job_mtbf(float(self.gpu_mtbf_hours) * 3600, int(self.n_gpus))

    @param.depends("checkpoint_s", "gpu_mtbf_hours", "n_gpus", "restart_minutes", "async_checkpoint",
                   "async_blocking_pct", "model", watch=True)
    def recompute_interval(self) -> None:
        """Redraw the lost-time trade-off and its summary."""
        self._interval_plot.object = self.interval_plot()
        self._interval_text.object = self.interval_summary()

    def interval_table(self) -> pd.DataFrame:
        """interval_tradeoff under the current settings, in minutes and percent."""
        c, m, r = self.blocking_s(), self.job_mtbf_s(), float(self.restart_minutes) * 60
        table = interval_tradeoff(c, m, r)
        out = pd.DataFrame({"interval_min": table["interval_s"] / 60})
        for col in ("checkpoint_overhead", "lost_work", "total"):
            out[col] = 100 * table[col]
        return out

    def interval_plot(self) -> hv.Overlay:
        """Percent of time lost vs checkpoint interval (minutes, log), split into its two causes, optimum marked."""
        best, best_total = self.optimum(self.blocking_s())
        long = self.interval_table().melt(id_vars="interval_min", var_name="what", value_name="pct")
        names = {"total": "total lost", "checkpoint_overhead": "writing checkpoints (C/τ)",
                 "lost_work": "redone work + restarts ((τ/2+R)/M)"}
        long["what"] = long["what"].map(names)
        xlabel = "checkpoint interval τ (minutes, log)"
        curves = kit.timeseries_plot(long, "pct", x="interval_min", by="what", xlabel=xlabel,
                                     ylabel="time lost (% of wall clock)", title="Checkpoint interval",
                                     colors={names["total"]: "#000000", names["checkpoint_overhead"]: "#1f77b4",
                                             names["lost_work"]: "#ff7f0e"})
        marker = hv.Scatter([(best / 60, best_total)], ("interval_min", xlabel), ("pct", "time lost (%)")).opts(
            color=kit.OVER, size=10, marker="diamond")
        vline = hv.VLine(best / 60).opts(color=kit.OVER, line_dash="dashed", line_width=1.5)
        label = hv.Text(best / 60, best_total, f"  Young/Daly τ* = {best / 60:.1f} min ({best_total:.1f}%)",
                        halign="left", valign="bottom").opts(text_color=kit.OVER, text_font_size="10pt")
        top = min(100.0, max(3 * best_total, 5.0))
        return (curves * vline * marker * label).opts(hv.opts.Overlay(
            title="Time lost vs checkpoint interval (first order)", logx=True, ylim=(0, top),
            xlabel=xlabel, ylabel="time lost (% of wall clock)", legend_position="right", framewise=True))

    def optimum(self, checkpoint_s: float) -> tuple[float, float]:
        """The Young/Daly interval (s) for a ``checkpoint_s`` blocking write, and the % of time lost there."""
        m, r = self.job_mtbf_s(), float(self.restart_minutes) * 60
        best = young_daly_interval(checkpoint_s, m)
        return best, 100 * float(interval_tradeoff(checkpoint_s, m, r, intervals=[best])["total"].iloc[0])

    def interval_summary(self) -> str:
        """The job's MTBF, the optimum, and what async checkpointing saves."""
        c = self.blocking_s()
        best, lost = self.optimum(c)
        size = checkpoint_bytes(MODELS[self.model]) / GB
        text = (f"{int(self.n_gpus):,} GPUs at {float(self.gpu_mtbf_hours):,.0f} h each fail every "
                f"**{self.job_mtbf_s() / 3600:.2f} h** on average. Blocking {c:.1f} s per checkpoint: checkpoint "
                f"every **{best / 60:.1f} min**, losing **{lost:.1f}%** of the time.")
        if self.async_checkpoint:
            sync_best, sync = self.optimum(float(self.checkpoint_s))
            text += f" Synchronous writes would lose {sync:.1f}% (every {sync_best / 60:.1f} min)."
        text += (f"  \nThe {self.model} model's training checkpoint (fp32 weights + AdamW m and v) is "
                 f"{size:,.0f} GB: writing it in {float(self.checkpoint_s):g} s takes "
                 f"{size / float(self.checkpoint_s):,.1f} GB/s.")
        return text

    # ---- mesh --------------------------------------------------------------------------------

    @param.depends("model", "dp", "tp", "pp", "gpus_per_node", watch=True)
    def recompute_mesh(self) -> None:
        """Redraw the mesh and say whether the chosen model can run on it."""
        cfg = MODELS[self.model]
        world = int(self.dp) * int(self.tp) * int(self.pp)
        try:
            validate_mesh(world, int(self.dp), int(self.tp), int(self.pp), n_heads=cfg.n_heads,
                          n_kv_heads=cfg.n_kv_heads, n_layers=cfg.n_layers, gpus_per_node=int(self.gpus_per_node))
            self._mesh_error.param.update(object="", visible=False)
        except ValueError as exc:
            self._mesh_error.param.update(object=f"This mesh cannot run {self.model}: {html.escape(str(exc))}",
                                          visible=True)
        self._mesh_plot.object = self.mesh_plot()
        nodes = -(-world // int(self.gpus_per_node))
        drawn = "" if world <= MAX_DRAWN_GPUS else f" Drawn: the first {MAX_DRAWN_GPUS} GPUs."
        crossing = ("Data-parallel all-reduces and pipeline sends cross nodes (InfiniBand)." if nodes > 1
                    else "Everything stays in one node.")
        self._mesh_text.object = (
            f"{world} GPUs on {nodes} node(s) of {int(self.gpus_per_node)}: rank = (pp·dp + dp_index)·tp + "
            f"tp_index, so a TP group is {int(self.tp)} neighbouring GPU(s) (NVLink) and each pipeline stage is "
            f"{int(self.dp) * int(self.tp)} consecutive ranks. {crossing}{drawn}")

    def mesh_frame(self) -> pd.DataFrame:
        """mesh_layout for the current sizes (at most MAX_DRAWN_GPUS ranks), with box corners and a label."""
        gpn = int(self.gpus_per_node)
        mesh = mesh_layout(int(self.dp), int(self.tp), int(self.pp), gpus_per_node=gpn).head(MAX_DRAWN_GPUS)
        cols = min(gpn, 8)
        slot_row = mesh["local"] // cols  # a node with more than 8 GPUs wraps onto a second row
        rows_per_node = -(-gpn // cols)
        y = -(mesh["node"] * (rows_per_node + 0.5) + slot_row)
        x = (mesh["local"] % cols).astype(float)
        return mesh.assign(x0=x + 0.05, x1=x + 0.95, y0=y - 0.9, y1=y - 0.05, xc=x + 0.5, yc=y - 0.475,
                           stage=mesh["pp"].map(lambda s: f"stage {s}"),
                           label=[f"r{r}\ndp{d} tp{t}" for r, d, t in zip(mesh["rank"], mesh["dp"], mesh["tp"])])

    def mesh_plot(self) -> hv.Overlay:
        """A box per GPU, rows of boxes per node, coloured by pipeline stage and labelled with its coordinates."""
        frame = self.mesh_frame()
        stages = list(dict.fromkeys(frame["stage"]))
        colors = kit.colors_for(stages)
        vdims = ["rank", "dp", "tp", "pp", "node", "local", "stage"]
        boxes = hv.Rectangles(frame, [("x0", "GPU slot in the node"), ("y0", "node"), "x1", "y1"], vdims).opts(
            color="stage", cmap=colors, line_color="white", tools=["hover"], show_legend=True,
            legend_position="right")
        groups = frame.groupby(["pp", "dp"]).agg(x0=("x0", "min"), y0=("y0", "min"), x1=("x1", "max"),
                                                  y1=("y1", "max")).reset_index()
        outlines = hv.Rectangles(groups, [("x0", "GPU slot in the node"), ("y0", "node"), "x1", "y1"],
                                 ["pp", "dp"]).opts(fill_alpha=0, line_color="#000000", line_width=2,
                                                    line_dash="dashed")
        labels = hv.Labels(frame, ["xc", "yc"], "label").opts(text_font_size="8pt" if len(frame) <= 64 else "6pt",
                                                                text_color="white")
        node_rows = frame.groupby("node")["y1"].max()
        ticks = [(float(y) - 0.45, f"node {n}") for n, y in node_rows.items()]
        height = max(220, int(40 * (frame["y1"].max() - frame["y0"].min())) + 100)
        slots = [(i + 0.5, f"GPU {i}") for i in range(min(int(self.gpus_per_node), 8))]
        return (boxes * outlines * labels).opts(hv.opts.Overlay(
            title=f"Mesh dp {int(self.dp)} × tp {int(self.tp)} × pp {int(self.pp)} (colour: pipeline stage; "
                  "dashed: a TP group)",
            xlabel="GPU slot within the node", ylabel="node", yticks=ticks, xticks=slots, responsive=True,
            height=min(height, 900), show_grid=False, framewise=True, toolbar="right"))

    # ---- live run ----------------------------------------------------------------------------

    def tracker(self) -> Any:
        """The Tracker at ``tracker_path`` (None while the file does not exist), opened once per path."""
        path = Path(self.tracker_path).expanduser()
        if not path.exists():
            return None
        if self._tracker is None or self._tracker_at != str(path):
            from lab_core.training.tracker import Tracker

            if self._tracker is not None:
                self._tracker.close()
            self._tracker, self._tracker_at = Tracker(path), str(path)
        return self._tracker

    @param.depends("tracker_path", watch=True)
    def refresh_runs(self) -> None:
        """Reload the runs in the tracker into the run picker (newest first) and redraw."""
        self._load_runs()
        self.poll()

    def _load_runs(self) -> None:
        self._read_error = ""
        try:
            tracker = self.tracker()
            runs = tracker.runs() if tracker is not None else pd.DataFrame(columns=["run_id", "name", "status"])
        except Exception as exc:  # a corrupt or foreign file: say so instead of breaking the page
            self._read_error = f"Could not read {self.tracker_path}: {kit.describe(exc)}"
            runs = pd.DataFrame(columns=["run_id", "name", "status"])
        options = {f"{r.name} · {r.status} · {r.run_id}": r.run_id for r in runs.itertuples()}
        current = self._run_select.value
        self._run_select.options = options
        if current not in options.values():
            self._run_select.value = next(iter(options.values()), None)

    def select_run(self, run_id: str) -> None:
        """Show ``run_id`` (refreshing the list first when it is new)."""
        if run_id not in self._run_select.options.values():
            self.refresh_runs()
        self._run_select.value = run_id

    def run_info(self) -> dict | None:
        """The chosen run from the tracker (None when there is none)."""
        tracker, run_id = self.tracker(), self._run_select.value
        if tracker is None or run_id is None:
            return None
        return tracker.run(run_id)

    def poll(self) -> None:
        """Read the chosen run's metrics and redraw; stop polling once nothing runs or launches."""
        if self._launch_error:
            self.live_error, self._launch_error = self._launch_error, ""
        if self.launched is not None and self.launched.run_id not in self._run_select.options.values():
            self.select_run(self.launched.run_id)
            return
        info = None
        try:
            info = self.run_info()
            self.live = self.tracker().wide(info["run_id"]) if info is not None else pd.DataFrame(columns=["step"])
            self._read_error = ""
        except Exception as exc:  # the file went away or is not a tracker: say so, keep polling
            self._read_error = f"Could not read the run: {kit.describe(exc)}"
            self.live = pd.DataFrame(columns=["step"])
        self._check_launched(info)
        # Redrawing three figures every second costs more than reading the tracker: only when something changed.
        key = (None if info is None else (info["run_id"], info["updated"], info["status"], info["last_step"]),
               self.live_error, self._read_error, self._launching)
        if key != self._drawn:
            labels = {v: k for k, v in self._run_select.options.items()}
            if info is not None and f" · {info['status']} · " not in labels.get(info["run_id"], ""):
                self._load_runs()  # the picker's label shows the run's status: it changed
            self._drawn = key
            self._redraw(info)
        if self._launching or (info is not None and info["status"] == "running"):
            self.start_polling()
        else:
            self.stop_polling()

    def _check_launched(self, info: dict | None) -> None:
        """A job this session started that exited with an error: mark its run failed and show its output."""
        job = self.launched
        if job is None or job.proc.poll() is None:
            return
        rc = job.proc.returncode
        self.launched = None
        if rc != 0:
            tail = job.log_tail(1500)
            self.live_error = f"The run {job.run_id} exited with code {rc}:\n\n```\n{tail}\n```"
            if info is not None and info["run_id"] == job.run_id and info["status"] == "running":
                self.tracker().finish(job.run_id, "failed")
                info["status"] = "failed"

    def _redraw(self, info: dict | None) -> None:
        planned = int(info["config"].get("steps", 0)) if info is not None else 0
        last = int(self.live["step"].max()) if not self.live.empty else 0
        # The x axis spans the planned steps, so the curves grow across it (and no earlier run's range lingers).
        self._xlim = (0, max(planned, last, 1))
        self._loss.object = self.loss_plot()
        self._lr.object = self.lr_plot()
        self._speed.object = self.speed_plot()
        error = "  \n".join(e for e in (self.live_error, self._read_error) if e)
        self._error.param.update(object=error, visible=bool(error))
        if info is None:
            self._status.object = (f"No runs in `{html.escape(self.tracker_path)}` yet: start one."
                                   if not self._launching else "Preparing the dataset and launching torchrun…")
            self._progress.value = 0
            return
        cfg = info["config"]
        total = int(cfg.get("steps", 0)) or 1
        last = int(info["last_step"] or 0)
        # One at a time: Progress checks value against the max it has at that moment.
        self._progress.value = 0
        self._progress.max = total
        self._progress.value = min(last, total)
        latest = self.live.iloc[-1] if not self.live.empty else None

        def metric(key: str, fmt: str) -> str:
            if latest is None or key not in latest or pd.isna(latest[key]):
                return "–"
            return format(float(latest[key]), fmt)

        self._status.object = (
            f"**{html.escape(info['name'])}** ({html.escape(info['run_id'])}): {info['status']}, step {last} of "
            f"{total}; strategy {cfg.get('strategy', '?')}, model {cfg.get('model', '?')}, micro-batch "
            f"{cfg.get('micro_batch', '?')} × {cfg.get('seq_len', '?')} tokens. Loss {metric('loss', '.3f')}, "
            f"{metric('tokens_per_s', ',.0f')} tokens/s, {metric('step_time_s', '.3f')} s/step.")

    def _series(self, key: str) -> pd.DataFrame:
        frame = self.live
        if key not in frame or frame.empty:
            return pd.DataFrame({"step": pd.Series(dtype="int64"), key: pd.Series(dtype=float)})
        return frame[["step", key]].dropna()

    def loss_plot(self) -> hv.Overlay:
        """Training loss per step, and validation loss where the run evaluated."""
        train = self._series("loss").rename(columns={"loss": "value"}).assign(series="train")
        evals = self._series("eval_loss").rename(columns={"eval_loss": "value"}).assign(series="eval")
        frame = pd.concat([train, evals], ignore_index=True) if not evals.empty else train
        ylabel = "cross-entropy loss (nats/token)"
        curves = kit.timeseries_plot(frame, "value", x="step", by="series", colors=LOSS_COLORS, title="Loss",
                                     xlabel="optimizer step", ylabel=ylabel)
        points = hv.Scatter(evals, ("step", "optimizer step"), ("value", ylabel)).opts(
            color=LOSS_COLORS["eval"], size=7)
        return (curves * points).opts(hv.opts.Overlay(title="Loss (train per step, eval dots)", xlim=self._xlim,
                                                      framewise=True))

    def lr_plot(self) -> hv.NdOverlay:
        """The learning-rate schedule as the run applied it."""
        return kit.timeseries_plot(self._series("lr"), "lr", x="step", title="Learning rate (warm-up, cosine decay)",
                                   xlabel="optimizer step", ylabel="learning rate", legend=False).opts(xlim=self._xlim)

    def speed_plot(self) -> hv.NdOverlay:
        """Training throughput per step."""
        return kit.timeseries_plot(self._series("tokens_per_s"), "tokens_per_s", x="step",
                                   title="Throughput (all ranks)", xlabel="optimizer step",
                                   ylabel="tokens per second", legend=False).opts(xlim=self._xlim)

    def start_polling(self) -> None:
        """Poll the tracker every second (in a served or notebook session)."""
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(self.poll, period=POLL_MS)

    def stop_polling(self) -> None:
        """Stop the periodic poll."""
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def live_config(self) -> Any:
        """The TrainConfig the start button launches."""
        from lab_core.training.config import TrainConfig

        return TrainConfig(model="tiny", strategy=self.live_strategy, steps=int(self.live_steps))

    def start_run(self, *, wait: bool = False) -> None:
        """Launch a short real job (``torchrun``, ``live_nproc`` ranks) in the background and follow it.
        The dataset is prepared first (seconds, once per workdir), on a thread so the page stays live."""
        if self._launching or (self.launched is not None and self.launched.proc.poll() is None):
            self.live_error = "A run started here is still going: stop it first."
            self._redraw(self.run_info())
            return
        self.live_error = ""
        self._launching = True
        workdir = Path(self.tracker_path).expanduser().parent
        name = f"{self.live_strategy}-x{self.live_nproc}"

        def launch() -> None:
            try:
                from lab_core.training.launch import start

                self.launched = start(self.live_config(), workdir=workdir, nproc=int(self.live_nproc), run_name=name)
            except Exception as exc:  # a config the mesh refuses, a dataset that failed: show it
                self._launch_error = f"Could not start the run: {kit.describe(exc)}"
            finally:
                self._launching = False

        thread = threading.Thread(target=launch, name="training-launch", daemon=True)
        thread.start()
        self._redraw(self.run_info())
        self.start_polling()
        if wait:
            thread.join()
            self.poll()

    def stop_run(self) -> None:
        """Stop the job this session started and mark its run killed."""
        job = self.launched
        if job is None:
            return
        job.stop()
        self.launched = None
        tracker = self.tracker()
        if tracker is not None and tracker.run(job.run_id)["status"] == "running":
            tracker.finish(job.run_id, "killed")
        self.poll()

    # ---- layout ------------------------------------------------------------------------------

    def controls(self) -> pn.Column:
        """The sidebar: the model and mesh (memory and mesh tabs) and the failure model (interval tab)."""
        return pn.Column(
            kit.controls(self, ["model", "dp", "tp", "pp", "gpus_per_node"], title="Model and mesh"),
            kit.controls(self, ["micro_batch", "seq_len", "precision", "activation_checkpointing",
                                "flash_attention", "gpu"], title="Memory"),
            kit.controls(self, ["checkpoint_s", "gpu_mtbf_hours", "n_gpus", "restart_minutes", "async_checkpoint",
                                "async_blocking_pct"], title="Checkpoints and failures"),
            sizing_mode="stretch_width",
        )

    def main(self) -> pn.Tabs:
        """Live run, memory per GPU, checkpoint interval, mesh."""
        live_controls = pn.Column(
            kit.controls(self, ["tracker_path"], widgets={"tracker_path": pn.widgets.TextInput}),
            self._run_select, self._refresh,
            pn.pane.Markdown("#### Start a run", margin=(0, 10)),
            kit.controls(self, ["live_strategy", "live_nproc", "live_steps"]),
            self._start, self._stop, width=300)
        live = pn.Row(live_controls,
                      pn.Column(self._error, self._status, self._progress, self._loss, self._lr, self._speed,
                                sizing_mode="stretch_width"),
                      sizing_mode="stretch_width")
        memory = pn.Column(self._memory_text, self._memory_plot, kit.color_key(
            {PART_LABELS[p]: c for p, c in PARTS.items()}), sizing_mode="stretch_width")
        interval = pn.Column(self._interval_text, self._interval_plot, sizing_mode="stretch_width")
        mesh = pn.Column(self._mesh_error, self._mesh_text, self._mesh_plot, sizing_mode="stretch_width")
        return pn.Tabs(("Live run", live), ("Memory per GPU", memory), ("Checkpoint interval", interval),
                       ("Mesh", mesh), sizing_mode="stretch_width", dynamic=False)

    def close(self) -> None:
        """Stop polling and close the tracker (the session ended); a job started here keeps running."""
        self.stop_polling()
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(pn.Column(self.controls(), width=320), self.main(), sizing_mode="stretch_width")


def dashboard(**params: Any) -> TrainingDashboard:
    """The dashboard for a notebook; ``params`` set any control (``dashboard(model="70B", tp=8, pp=4)``)."""
    return TrainingDashboard(**params)


def app() -> pn.template.FastListTemplate:
    """A fresh dashboard in a page template, one per browser session (``syslab serve``)."""
    dash = TrainingDashboard()
    pn.state.on_session_destroyed(lambda _ctx: dash.close())
    return pn.template.FastListTemplate(
        title="Lab 08 · Distributed training",
        sidebar=[dash.controls()],
        main=[dash.main()],
        sidebar_width=340,
        accent="#1f77b4",
    )
