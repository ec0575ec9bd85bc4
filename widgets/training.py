"""Lab 08's dashboard: a real run's loss and throughput live (a recorded worked example before any run exists),
memory per GPU by strategy, the checkpoint interval, the mesh, and the notebook's exercises, yours beside the
reference. ``dashboard(accumulation_step=..., zero_bytes_per_gpu=..., save_checkpoint=..., load_checkpoint=...)`` in
a notebook, ``app()`` for ``syslab serve``; parameters and plots over ``lab_core.training.experiments`` (the live
tab is :mod:`widgets.training_live`)."""

from __future__ import annotations

import functools
import html
import os
from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn
import param

from lab_core.llm.gpus import GPUS
from lab_core.training import experiments as ex
from lab_core.training import reference
from lab_core.training.live import ALLOW_RUNS_ENV
from lab_core.training.paths import default_workdir
from widgets import kit
from widgets.training_live import LiveRunTab

GPU_CHOICES: dict[str, str] = {f"{name} ({gpu.memory / 1e9:.0f} GB)": name for name, gpu in GPUS.items()}
PARTS: dict[str, str] = dict(zip(ex.PART_LABELS.values(), ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")))
WHO: dict[str, str] = {"reference": "#7f7f7f", "yours": "#000000"}
MAX_DRAWN_GPUS = 256  # a bigger mesh is drawn for its first nodes only: thousands of boxes say nothing
# The sidebar's groups, which are also what each tab recomputes on.
MESH = ["model", "dp", "tp", "pp", "gpus_per_node"]
MEMORY_STUDY = ["micro_batch", "seq_len", "precision", "activation_checkpointing", "flash_attention"]
MEMORY = [*MEMORY_STUDY, "gpu", "mfu_pct"]
FAILURES = ["checkpoint_s", "gpu_mtbf_hours", "n_gpus", "restart_minutes", "async_checkpoint", "async_blocking_pct"]


def _wide(*items: Any) -> pn.Column:
    """A column as wide as the page."""
    return pn.Column(*items, sizing_mode="stretch_width")


class TrainingDashboard(LiveRunTab, kit.LabDashboard):
    """A live training run from the tracker, the capacity arithmetic of distributed training, and your exercises."""

    lab = "training"
    plugins = {
        "accumulation_step": kit.Plugin(
            "gradient-accumulation step (exercise 1)", "AccumulationStep", reference.accumulation_step
        ),
        "zero_bytes_per_gpu": kit.Plugin("ZeRO memory formula (exercise 2)", "ZeroBytesPerGPU", reference.zero_memory),
        "save_checkpoint": kit.Plugin("checkpoint save (exercise 3)", "SaveCheckpoint", reference.save_checkpoint),
        "load_checkpoint": kit.Plugin("checkpoint load (exercise 3)", "LoadCheckpoint", reference.load_checkpoint),
    }

    model = param.Selector(default="8B", objects=list(ex.MODELS), label="Model")
    dp = param.Integer(8, bounds=(1, 128), label="Data-parallel size (dp)")
    tp = param.Integer(1, bounds=(1, 16), label="Tensor-parallel size (tp)")
    pp = param.Integer(1, bounds=(1, 16), label="Pipeline stages (pp)")
    gpus_per_node = param.Integer(8, bounds=(1, 16), label="GPUs per node")
    micro_batch = param.Integer(1, bounds=(1, 32), label="Micro-batch (sequences per GPU)")
    seq_len = param.Selector(
        default=4096, objects=[512, 1024, 2048, 4096, 8192, 16384, 32768], label="Sequence length (tokens)"
    )
    precision = param.Selector(default="bf16-mixed", objects=["bf16-mixed", "fp32"], label="Precision")
    activation_checkpointing = param.Boolean(False, label="Activation checkpointing (full recompute)")
    flash_attention = param.Boolean(True, label="FlashAttention (no s x s scores kept)")
    gpu = param.Selector(default="H100-SXM", objects=GPU_CHOICES, label="GPU")
    mfu_pct = param.Number(40.0, bounds=(5.0, 80.0), step=1.0, label="Assumed MFU (% of BF16 peak)")
    checkpoint_s = param.Number(60.0, bounds=(1.0, 1800.0), step=1.0, label="Checkpoint write time (s)")
    gpu_mtbf_hours = param.Number(50000.0, bounds=(1000.0, 500000.0), step=1000.0, label="MTBF of one GPU (hours)")
    n_gpus = param.Integer(4096, bounds=(1, 32768), step=64, label="GPUs in the job")
    restart_minutes = param.Number(10.0, bounds=(0.0, 120.0), step=1.0, label="Restart time after a failure (min)")
    async_checkpoint = param.Boolean(False, label="Asynchronous checkpoint (training waits only for the copy)")
    async_blocking_pct = param.Number(
        10.0, bounds=(1.0, 100.0), step=1.0, label="Async: share of the write that still blocks (%)"
    )
    accum_k = param.Selector(default=4, objects=[1, 2, 4, 8], label="Micro-batches per step (k)")

    def __init__(self, **params: Any) -> None:
        params["tracker_path"] = params.get("tracker_path") or str(default_workdir() / "tracker.db")
        super().__init__(**params)
        self._mesh_error = pn.pane.Alert("", alert_type="warning", visible=False, sizing_mode="stretch_width")
        for name in ("memory_text", "interval_text", "mesh_text", "exercise_text"):
            setattr(self, f"_{name}", pn.pane.Markdown("", sizing_mode="stretch_width", margin=(0, 10)))
        for name in ("memory_plot", "interval_plot", "mesh_plot", "accum_plot", "zero_plot", "resume_plot"):
            setattr(self, f"_{name}", pn.pane.HoloViews(sizing_mode="stretch_width", linked_axes=False))
        for recompute in (self.recompute_memory, self.recompute_interval, self.recompute_mesh):
            recompute()
        self.recompute_exercises()
        self.build_live()

    def _values(self, names: list[str]) -> dict[str, Any]:
        return {name: getattr(self, name) for name in names}

    @param.depends("model", "dp", "tp", "pp", *MEMORY, watch=True)
    def recompute_memory(self) -> None:
        """Memory per GPU of every strategy on dp*tp*pp GPUs, and the throughput those GPUs reach."""
        study = self._values(["dp", "tp", "pp", *MEMORY_STUDY])
        self.memory = ex.memory_by_strategy(self.model, **study, progress=kit.reporter(self._progress))
        self.speed = ex.throughput(
            self.model, self.gpu, self.memory.world, seq_len=self.seq_len, mfu=self.mfu_pct / 100
        )
        self._memory_plot.object = self.memory_plot()
        self._memory_text.object = self.memory.summary(self.gpu, self.speed, self.mfu_pct / 100)

    def memory_plot(self) -> hv.Overlay:
        """Stacked bars per strategy (weights, gradients, optimizer state, activations) under the GPU's memory."""
        limit = GPUS[self.gpu].memory / 1e9
        bars = hv.Bars(
            self.memory.frame,
            [hv.Dimension("setup", label="strategy and mesh"), hv.Dimension("part", values=list(PARTS))],
            [("GB", "memory per GPU (GB)")],
        ).opts(
            stacked=True,
            cmap=PARTS,
            color="part",
            tools=["hover"],
            show_legend=False,
            xrotation=20,
            responsive=True,
            height=kit.PLOT_HEIGHT,
            show_grid=True,
            framewise=True,
        )
        line = hv.HLine(limit).opts(color=kit.OVER, line_dash="dashed", line_width=2)
        top = max(limit, float(self.memory.totals().max())) * 1.12
        # The GPU's name is in the title and the key below: a label on the line sat on top of a bar.
        return (bars * line).opts(
            hv.opts.Overlay(
                title=f"{self.model} on {self.memory.world} GPUs: memory per GPU (busiest rank) vs one {self.gpu} "
                f"({limit:.0f} GB, dashed)",
                ylim=(0, top),
                xlabel="strategy and mesh",
                ylabel="memory per GPU (GB)",
                framewise=True,
            )
        )

    @param.depends("model", *FAILURES, watch=True)
    def recompute_interval(self) -> None:
        """The lost-time trade-off of the checkpoint interval, its optimum, and what async saves change."""
        self.interval = ex.checkpoint_interval(self.model, **self._values(FAILURES))
        self._interval_plot.object = self.interval_plot()
        self._interval_text.object = self.interval.summary()

    def interval_plot(self) -> hv.Overlay:
        """Percent of time lost vs checkpoint interval (minutes, log), split into its two causes, optimum marked."""
        s, xlabel, ylabel = self.interval, "checkpoint interval τ (minutes, log)", "time lost (% of wall clock)"
        curves = kit.timeseries_plot(
            s.causes(),
            "pct",
            x="interval_min",
            by="what",
            xlabel=xlabel,
            ylabel=ylabel,
            title="Checkpoint interval",
            colors=dict(zip(ex.INTERVAL_CAUSES.values(), ("#000000", "#1f77b4", "#ff7f0e"))),
        )
        best, pct = s.best_s / 60, s.best_pct
        marker = hv.Scatter([(best, pct)], ("interval_min", xlabel), ("pct", ylabel)).opts(
            color=kit.OVER, size=10, marker="diamond"
        )
        label = hv.Text(
            best, pct, f"  Young/Daly τ* = {best:.1f} min ({pct:.1f}%)", halign="left", valign="bottom"
        ).opts(text_color=kit.OVER, text_font_size="10pt")
        return (curves * hv.VLine(best).opts(color=kit.OVER, line_dash="dashed", line_width=1.5) * marker * label).opts(
            hv.opts.Overlay(
                title="Time lost vs checkpoint interval (first order)",
                logx=True,
                ylim=(0, min(100.0, max(3 * pct, 5.0))),
                xlabel=xlabel,
                ylabel=ylabel,
                legend_position="right",
                framewise=True,
            )
        )

    @param.depends(*MESH, watch=True)
    def recompute_mesh(self) -> None:
        """Redraw the mesh and say whether the chosen model can run on it."""
        m = self.mesh = ex.mesh_study(
            self.model, dp=self.dp, tp=self.tp, pp=self.pp, gpus_per_node=self.gpus_per_node, max_gpus=MAX_DRAWN_GPUS
        )
        self._mesh_error.param.update(
            object=f"This mesh cannot run {self.model}: {html.escape(m.problem)}", visible=bool(m.problem)
        )
        self._mesh_plot.object = self.mesh_plot()
        self._mesh_text.object = m.summary()

    def mesh_plot(self) -> hv.Overlay:
        """A box per GPU, rows of boxes per node, coloured by pipeline stage and labelled with its coordinates."""
        frame = self.mesh.boxes()
        kdims = [("x0", "GPU slot in the node"), ("y0", "node"), "x1", "y1"]
        boxes = hv.Rectangles(frame, kdims, ["rank", "dp", "tp", "pp", "node", "local", "stage"]).opts(
            color="stage",
            cmap=kit.colors_for(frame["stage"]),
            line_color="white",
            tools=["hover"],
            show_legend=True,
            legend_position="right",
        )
        outlines = hv.Rectangles(self.mesh.tp_groups(), kdims, ["pp", "dp"]).opts(
            fill_alpha=0, line_color="#000000", line_width=2, line_dash="dashed"
        )
        labels = hv.Labels(frame, ["xc", "yc"], "label").opts(
            text_font_size="8pt" if len(frame) <= 64 else "6pt", text_color="white"
        )
        return (boxes * outlines * labels).opts(
            hv.opts.Overlay(
                title=f"Mesh dp {self.dp} × tp {self.tp} × pp {self.pp} (colour: pipeline stage; dashed: a TP group)",
                xlabel="GPU slot within the node",
                ylabel="node",
                yticks=self.mesh.node_ticks(),
                responsive=True,
                show_grid=False,
                xticks=self.mesh.slot_ticks(),
                height=self.mesh.plot_height(),
                framewise=True,
                toolbar="right",
            )
        )

    def _who(self, name: str) -> list[tuple[str, Any]]:
        """(who, function) pairs for a plug-in: the reference, and the student's when given."""
        return [("reference", self.plugins[name].reference)] + [("yours", f) for f in [self.yours.get(name)] if f]

    @param.depends("model", "dp", "gpu", "accum_k", watch=True)
    def recompute_exercises(self) -> None:
        """Each exercise's drill with the reference and with yours; what yours raises goes to the error pane."""
        token, errors = self.begin(), {}
        saves, loads = self._who("save_checkpoint"), self._who("load_checkpoint")
        drills = ex.exercise_drills(
            ex.MODELS[self.model].num_params(),
            self.dp,
            self.accum_k,
            zero=self._who("zero_bytes_per_gpu"),
            accumulation=self._who("accumulation_step")[-1],
            checkpoints=[(who, save, load) for (who, save), (_, load) in zip(saves, loads)],
            attempt=functools.partial(self.attempt, errors),
            progress=kit.reporter(self._progress),
        )
        if not self.is_latest(token):
            return
        self.errors = errors
        self._zero_plot.object = (
            kit.bar_plot(
                drills.zero,
                "stage",
                "GB",
                by="who",
                colors=WHO,
                xlabel="ZeRO stage",
                ylabel="model states per GPU (GB)",
                title=f"Exercise 2: {self.model}'s model states per GPU over dp={self.dp} (dashed: one {self.gpu})",
            )
            * hv.HLine(GPUS[self.gpu].memory / 1e9).opts(color=kit.OVER, line_dash="dashed")
        ).opts(legend_position="right")
        self._accum_plot.object = self.runs_plot(
            drills.accumulation, "Exercise 1: accumulated micro-batches vs one whole batch"
        )
        self._resume_plot.object = self.runs_plot(drills.resume, "Exercise 3: stop after step 4, save, load, continue")
        plugged = f"Your functions plugged in: {', '.join(f'`{k}`' for k in self.yours) or 'none yet'} (pass them as "
        usage = "`dashboard(accumulation_step=..., zero_bytes_per_gpu=..., save_checkpoint=..., load_checkpoint=...)`;"
        self._exercise_text.object = "  \n".join(
            [plugged + usage + " without them each drill runs the reference)."] + drills.verdicts
        )

    @staticmethod
    def runs_plot(frames: list[pd.DataFrame], title: str) -> hv.Overlay:
        """Loss per step of each run: the first (the baseline) wide and pale, the others drawn over it with dots,
        so runs that agree lie visibly on top of each other."""
        ylabel = "training loss (nats/token)"
        runs = [(run, part) for frame in frames for run, part in frame.groupby("run", sort=False)]
        colors = kit.colors_for([run for run, _ in runs])
        curves = [
            hv.Curve(part, ("step", "optimizer step"), ("loss", ylabel), label=run).opts(
                color=colors[run], line_width=8 if i == 0 else 2, alpha=0.35 if i == 0 else 1.0
            )
            * hv.Scatter(part, "step", "loss", label=run).opts(color=colors[run], size=0 if i == 0 else 6)
            for i, (run, part) in enumerate(runs)
        ]
        return hv.Overlay(curves).opts(
            hv.opts.Overlay(
                title=title, legend_position="right", responsive=True, height=kit.PLOT_HEIGHT, show_grid=True
            )
        )

    def controls(self) -> pn.Column:
        """The sidebar: model and mesh, memory, and the failure model of the interval tab."""
        groups = {"Model and mesh": MESH, "Memory and speed": MEMORY, "Checkpoints and failures": FAILURES}
        return pn.Column(*(kit.controls(self, ps, title=t) for t, ps in groups.items()), sizing_mode="stretch_width")

    def main(self) -> pn.Column:
        """Live run, memory per GPU, checkpoint interval, mesh, your exercises."""
        key = kit.color_key({**PARTS, "one GPU's memory (dashed)": kit.OVER})
        exercises = (self._exercise_text, self._accum_plot, self._zero_plot, self._resume_plot)
        tabs = pn.Tabs(
            ("Live run", self.live_tab()),
            ("Memory per GPU", _wide(self._memory_text, self._memory_plot, key)),
            ("Checkpoint interval", _wide(self._interval_text, self._interval_plot)),
            ("Mesh", _wide(self._mesh_error, self._mesh_text, self._mesh_plot)),
            ("Your exercises", _wide(kit.controls(self, ["accum_k"]), *exercises)),
            sizing_mode="stretch_width",
            dynamic=False,
        )
        return _wide(self.error_view, self._progress, tabs)


Dashboard = TrainingDashboard


def dashboard(**params: Any) -> TrainingDashboard:
    """The dashboard for a notebook: ``params`` set any control and plug in your exercise functions
    (``dashboard(model="70B", tp=8, pp=4, zero_bytes_per_gpu=zero_bytes_per_gpu)``)."""
    return TrainingDashboard(**params)


def app() -> pn.template.FastListTemplate:
    """A fresh dashboard in the lab's page, one per browser session (``syslab serve``): it starts training
    jobs only when the server was started with ``--allow-training-runs``."""
    return TrainingDashboard.page(allow_runs=os.environ.get(ALLOW_RUNS_ENV) == "1")
