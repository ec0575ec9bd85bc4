"""Lab 08's dashboard: a real run's loss and throughput live (a recorded worked example before any run exists),
memory per GPU by strategy, the checkpoint interval, the mesh, and the notebook's exercises, yours beside the
reference. ``dashboard(accumulation_step=..., zero_bytes_per_gpu=..., save_checkpoint=..., load_checkpoint=...)`` in
a notebook, ``app()`` for ``syslab serve``; parameters and plots over ``lab_core.training.experiments``."""

from __future__ import annotations

import html
import os
import threading
from functools import lru_cache
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

GPU_CHOICES: dict[str, str] = {f"{name} ({gpu.memory / 1e9:.0f} GB)": name for name, gpu in GPUS.items()}
PARTS: dict[str, str] = dict(zip(ex.PART_LABELS.values(), ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")))
LOSS_COLORS: dict[str, str] = {"train": "#1f77b4", "eval": "#ff7f0e"}
WHO: dict[str, str] = {"reference": "#7f7f7f", "yours": "#000000"}
MAX_DRAWN_GPUS = 256  # a bigger mesh is drawn for its first nodes only: thousands of boxes say nothing
POLL_MS = 1000
example_run = lru_cache(maxsize=1)(ex.example_run)


class TrainingDashboard(kit.LabDashboard):
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
    # Set by the notebook (or SYSLAB_TRAINING_DIR), never typed on a served page: a visitor's path would read any
    # SQLite file on the server and start jobs writing beside it.
    tracker_path = param.String(default="", precedence=-1, doc="the tracker database (SQLite) the live tab reads")
    # On in a notebook (the student's own machine); off on a served page unless the server allows it.
    allow_runs = param.Boolean(default=True, precedence=-1, doc="whether the Start button may launch torchrun")
    live_strategy = param.Selector(default="ddp", objects=["ddp", "fsdp", "tp", "pp"], label="Strategy")
    live_nproc = param.Selector(default=2, objects=[1, 2], label="Processes (ranks)")
    live_steps = param.Integer(60, bounds=(10, 400), step=10, label="Optimizer steps")
    accum_k = param.Selector(default=4, objects=[1, 2, 4, 8], label="Micro-batches per step (k)")

    def __init__(self, **params: Any) -> None:
        params["tracker_path"] = params.get("tracker_path") or str(default_workdir() / "tracker.db")
        super().__init__(**params)
        self.live = ex.LiveRuns(self.tracker_path, allow_start=self.allow_runs)
        self.live_error = self._read_error = self._launch_error = ""
        self._launching, self._prep, self._callback, self._drawn = False, None, None, ()
        self.snapshot = ex.RunSnapshot(None)
        self._run_select = pn.widgets.Select(label="Run", options={}, sizing_mode="stretch_width")
        self._run_select.param.watch(lambda _e: self.poll(), "value")
        self._buttons = [
            pn.widgets.Button(label=text, button_type=kind, sizing_mode="stretch_width")
            for text, kind in (
                ("Refresh the list of runs", "default"),
                ("Start a run (tiny model, this machine)", "primary"),
                ("Stop the run I started", "default"),
            )
        ]
        for button, action in zip(self._buttons, (self.refresh_runs, self.start_run, self.stop_run)):
            button.on_click(lambda _e, act=action: act())
        if not self.allow_runs:
            self._buttons[1].param.update(disabled=True, label="Starting runs is off on this server")
        self._run_progress = pn.indicators.Progress(value=0, max=1, sizing_mode="stretch_width", bar_color="info")
        self._error = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")
        self._mesh_error = pn.pane.Alert("", alert_type="warning", visible=False, sizing_mode="stretch_width")
        # Panes whose object is replaced on each redraw, unlinked: Panel shares linked panes' axes, and a shared
        # "step" range kept the first run's length.
        for name in ("status", "memory_text", "interval_text", "mesh_text", "exercise_text"):
            setattr(self, f"_{name}", pn.pane.Markdown("", sizing_mode="stretch_width", margin=(0, 10)))
        for name in (
            "loss",
            "lr",
            "speed",
            "memory_plot",
            "interval_plot",
            "mesh_plot",
            "accum_plot",
            "zero_plot",
            "resume_plot",
        ):
            setattr(self, f"_{name}", pn.pane.HoloViews(sizing_mode="stretch_width", linked_axes=False))
        for recompute in (
            self.recompute_memory,
            self.recompute_interval,
            self.recompute_mesh,
            self.recompute_exercises,
            self.refresh_runs,
        ):
            recompute()

    @param.depends(
        "model",
        "dp",
        "tp",
        "pp",
        "micro_batch",
        "seq_len",
        "precision",
        "activation_checkpointing",
        "flash_attention",
        "gpu",
        "mfu_pct",
        watch=True,
    )
    def recompute_memory(self) -> None:
        """Memory per GPU of every strategy on dp*tp*pp GPUs, and the throughput those GPUs reach."""
        self.memory = ex.memory_by_strategy(
            self.model,
            dp=self.dp,
            tp=self.tp,
            pp=self.pp,
            micro_batch=self.micro_batch,
            seq_len=self.seq_len,
            precision=self.precision,
            activation_checkpointing=self.activation_checkpointing,
            flash_attention=self.flash_attention,
            progress=kit.reporter(self._progress),
        )
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

    @param.depends(
        "checkpoint_s",
        "gpu_mtbf_hours",
        "n_gpus",
        "restart_minutes",
        "async_checkpoint",
        "async_blocking_pct",
        "model",
        watch=True,
    )
    def recompute_interval(self) -> None:
        """The lost-time trade-off of the checkpoint interval, its optimum, and what async saves change."""
        s = self.interval = ex.checkpoint_interval(
            self.model,
            checkpoint_s=self.checkpoint_s,
            gpu_mtbf_hours=self.gpu_mtbf_hours,
            n_gpus=self.n_gpus,
            restart_minutes=self.restart_minutes,
            async_checkpoint=self.async_checkpoint,
            async_blocking_pct=self.async_blocking_pct,
        )
        self._interval_plot.object = self.interval_plot()
        self._interval_text.object = s.summary()

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

    @param.depends("model", "dp", "tp", "pp", "gpus_per_node", watch=True)
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
        ticks = [(float(y) - 0.45, f"node {n}") for n, y in frame.groupby("node")["y1"].max().items()]
        height = max(220, int(40 * (frame["y1"].max() - frame["y0"].min())) + 100)
        return (boxes * outlines * labels).opts(
            hv.opts.Overlay(
                title=f"Mesh dp {self.dp} × tp {self.tp} × pp {self.pp} (colour: pipeline stage; dashed: a TP group)",
                xlabel="GPU slot within the node",
                ylabel="node",
                yticks=ticks,
                responsive=True,
                show_grid=False,
                xticks=[(i + 0.5, f"GPU {i}") for i in range(min(self.gpus_per_node, 8))],
                height=min(height, 900),
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
        token, errors, n = self.begin(), {}, ex.MODELS[self.model].num_params()
        zero = {
            who: self.attempt(errors, "zero_bytes_per_gpu", ex.zero_states, fn, n, self.dp)
            for who, fn in self._who("zero_bytes_per_gpu")
        }
        who, step_fn = self._who("accumulation_step")[-1]
        whole = ex.accumulation_run(reference.accumulation_step, k=1)
        split = self.attempt(
            errors,
            "accumulation_step",
            ex.accumulation_run,
            step_fn,
            k=self.accum_k,
            progress=kit.reporter(self._progress),
        )
        resume = {
            who: self.attempt(errors, "save_checkpoint / load_checkpoint", ex.resume_run, save, load)
            for (who, save), (_, load) in zip(self._who("save_checkpoint"), self._who("load_checkpoint"))
        }
        if not self.is_latest(token):
            return
        self.errors = errors
        self._zero_plot.object = (
            kit.bar_plot(
                pd.concat([f.assign(who=w) for w, f in zero.items() if f is not None]),
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
        label = f"{self.accum_k} micro-batches ({who})"
        self._accum_plot.object = self.runs_plot(
            [whole.frame("one batch of 8 (reference)")] + ([split.frame(label)] if split else []),
            "Exercise 1: accumulated micro-batches vs one whole batch",
        )
        self._resume_plot.object = self.runs_plot(
            [r.frame(w) for w, r in resume.items() if r], "Exercise 3: stop after step 4, save, load, continue"
        )
        lines = [
            f"Your functions plugged in: {', '.join(f'`{k}`' for k in self.yours) or 'none yet'} (pass them as "
            "`dashboard(accumulation_step=..., zero_bytes_per_gpu=..., save_checkpoint=..., load_checkpoint=...)`;"
            " without them each drill runs the reference)."
        ] + ([split.verdict(whole, label)] if split else [])
        lines += [r.verdict("your" if w == "yours" else "the reference") for w, r in resume.items() if r]
        self._exercise_text.object = "  \n".join(lines)

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

    @param.depends("tracker_path", watch=True)
    def _new_tracker(self) -> None:
        launched, self.live = self.live.launched, ex.LiveRuns(self.tracker_path, allow_start=self.allow_runs)
        self.live.launched = launched
        self.refresh_runs()

    def refresh_runs(self) -> None:
        """Reload the runs in the tracker into the run picker (newest first) and redraw."""
        self._load_runs()
        self.poll()

    def _load_runs(self) -> None:
        try:
            options, self._read_error = self.live.options(), ""
        except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file: say so instead of breaking the page
            options, self._read_error = {}, f"Could not read {self.tracker_path}: {kit.describe(exc)}"
        current = self._run_select.value
        self._run_select.options = options
        if current not in options.values():
            self._run_select.value = next(iter(options.values()), None)

    def select_run(self, run_id: str) -> None:
        """Show ``run_id`` (refreshing the list first when it is new)."""
        if run_id not in self._run_select.options.values():
            self._load_runs()
        self._run_select.value = run_id

    def poll(self) -> None:
        """Read the chosen run and redraw when it changed; poll again while it runs or a launch is under way."""
        if self._launch_error:
            self.live_error, self._launch_error = self._launch_error, ""
        job = self.live.launched
        if job is not None and job.run_id not in self._run_select.options.values():
            self.select_run(job.run_id)  # which polls again, through the picker's watcher
            return
        self.live_error = self.live.check_launched() or self.live_error
        try:
            snap, self._read_error = self.live.snapshot(self._run_select.value), ""
        except Exception as exc:  # noqa: BLE001 - the file went away or is not a tracker: say so, keep polling
            snap, self._read_error = ex.RunSnapshot(None), f"Could not read the run: {kit.describe(exc)}"
        info = snap.info
        key = (
            None if info is None else (info["run_id"], info["updated"], info["status"], info["last_step"]),
            self.live_error,
            self._read_error,
            self._launching,
            self._prep,
        )
        if key != self._drawn:  # redrawing three figures costs more than reading the tracker
            labels = {v: k for k, v in self._run_select.options.items()}
            if info is not None and f" · {info['status']} · " not in labels.get(info["run_id"], ""):
                self._load_runs()  # the picker's label shows the run's status: it changed
            self._drawn = key
            self.snapshot = snap if info is not None or self._run_select.options else example_run()
            self._redraw()
        # A launch can finish inside this call: a job started here keeps the poll going until it is seen.
        if self._launching or self.live.launched is not None or (info is not None and info["status"] == "running"):
            self._callback = self._callback or pn.state.add_periodic_callback(self.poll, period=POLL_MS)
        else:
            self._stop_polling()

    def _stop_polling(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def _redraw(self) -> None:
        snap = self.snapshot
        last, planned = snap.steps
        # The x axis spans the planned steps, so the curves grow across it (and no earlier run's range lingers).
        self._xlim = (0, planned)
        self._loss.object = self.loss_plot()
        self._lr.object, self._speed.object = (
            self.metric_plot(*spec)
            for spec in (
                ("lr", "Learning rate (warm-up, cosine decay)", "learning rate"),
                ("tokens_per_s", "Throughput (all ranks)", "tokens per second"),
            )
        )
        error = "  \n".join(e for e in (self.live_error, self._read_error) if e)
        self._error.param.update(object=error, visible=bool(error))
        done, total, label = self._prep or (last, planned, "")
        self._run_progress.param.update(value=0, max=total)  # one at a time: value is checked against the max
        self._run_progress.value = min(done, total)
        if self._launching:
            self._status.object = f"Launching: {label or 'starting torchrun'}…"
        else:
            self._status.object = (
                f"No runs in `{html.escape(self.tracker_path)}` yet: below is a worked example, "
                f"{html.escape(snap.info['note'])}. Start a run to see your own.  \n"
                if snap.example
                else ""
            ) + snap.summary()

    def _series(self, key: str) -> pd.DataFrame:
        frame = self.snapshot.metrics
        return frame[["step", key]].dropna() if key in frame else pd.DataFrame({"step": [], key: []}, dtype=float)

    def _title(self, text: str) -> str:
        return f"Worked example · {text}" if self.snapshot.example else text

    def loss_plot(self) -> hv.Overlay:
        """Training loss per step, and validation loss where the run evaluated."""
        train = self._series("loss").rename(columns={"loss": "value"}).assign(series="train")
        evals = self._series("eval_loss").rename(columns={"eval_loss": "value"}).assign(series="eval")
        ylabel = "cross-entropy loss (nats/token)"
        curves = kit.timeseries_plot(
            pd.concat([train, evals], ignore_index=True) if not evals.empty else train,
            "value",
            x="step",
            by="series",
            colors=LOSS_COLORS,
            title="Loss",
            xlabel="optimizer step",
            ylabel=ylabel,
        )
        points = hv.Scatter(evals, ("step", "optimizer step"), ("value", ylabel)).opts(
            color=LOSS_COLORS["eval"], size=7
        )
        return (curves * points).opts(
            hv.opts.Overlay(
                title=self._title("Loss (train per step, eval dots)"),
                xlim=self._xlim,
                framewise=True,
                legend_position="top_right",
            )
        )

    def metric_plot(self, key: str, title: str, ylabel: str) -> hv.NdOverlay:
        """One logged metric per step (the learning rate as applied, the throughput)."""
        return kit.timeseries_plot(
            self._series(key),
            key,
            x="step",
            title=self._title(title),
            xlabel="optimizer step",
            ylabel=ylabel,
            legend=False,
        ).opts(xlim=self._xlim)

    def start_run(self, *, wait: bool = False) -> None:
        """Launch a short real job (``torchrun``, ``live_nproc`` ranks) on a thread, so the page stays live while the
        dataset is prepared (seconds, once per workdir), and follow it."""
        if self._launching or self.live.running():
            self.live_error = "A run started here is still going: stop it first."
            return self.poll()
        self.live_error, self._launching = "", True

        def launch() -> None:
            try:
                self.live.start(
                    self.live_strategy,
                    int(self.live_nproc),
                    int(self.live_steps),
                    progress=lambda done, total, label: setattr(self, "_prep", (done, total, label)),
                )
            except Exception as exc:  # noqa: BLE001 - a config the mesh refuses, a dataset that failed: show it
                self._launch_error = f"Could not start the run: {kit.describe(exc)}"
            finally:
                self._launching, self._prep = False, None

        thread = threading.Thread(target=launch, name="training-launch", daemon=True)
        thread.start()
        self.poll()
        if wait:
            thread.join()
            self.poll()

    def stop_run(self) -> None:
        """Stop the job this session started and mark its run killed."""
        self.live.stop()
        self.poll()

    def controls(self) -> pn.Column:
        """The sidebar: model and mesh, memory, and the failure model of the interval tab."""
        return pn.Column(
            kit.controls(self, ["model", "dp", "tp", "pp", "gpus_per_node"], title="Model and mesh"),
            kit.controls(
                self,
                [
                    "micro_batch",
                    "seq_len",
                    "precision",
                    "activation_checkpointing",
                    "flash_attention",
                    "gpu",
                    "mfu_pct",
                ],
                title="Memory and speed",
            ),
            kit.controls(
                self,
                [
                    "checkpoint_s",
                    "gpu_mtbf_hours",
                    "n_gpus",
                    "restart_minutes",
                    "async_checkpoint",
                    "async_blocking_pct",
                ],
                title="Checkpoints and failures",
            ),
            sizing_mode="stretch_width",
        )

    def main(self) -> pn.Column:
        """Live run, memory per GPU, checkpoint interval, mesh, your exercises."""
        refresh, start, stop = self._buttons
        live_controls = pn.Column(
            pn.pane.Markdown(
                pn.bind(lambda path: f"Tracker: `{html.escape(path)}`", self.param.tracker_path), margin=(0, 10)
            ),
            self._run_select,
            refresh,
            pn.pane.Markdown("#### Start a run", margin=(0, 10)),
            kit.controls(self, ["live_strategy", "live_nproc", "live_steps"]),
            start,
            stop,
            width=340,
        )
        live = pn.Row(
            live_controls,
            pn.Column(
                self._error,
                self._status,
                self._run_progress,
                self._loss,
                self._lr,
                self._speed,
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )
        key = kit.color_key({**PARTS, "one GPU's memory (dashed)": kit.OVER})
        tabs = pn.Tabs(
            ("Live run", live),
            ("Memory per GPU", pn.Column(self._memory_text, self._memory_plot, key, sizing_mode="stretch_width")),
            ("Checkpoint interval", pn.Column(self._interval_text, self._interval_plot, sizing_mode="stretch_width")),
            ("Mesh", pn.Column(self._mesh_error, self._mesh_text, self._mesh_plot, sizing_mode="stretch_width")),
            (
                "Your exercises",
                pn.Column(
                    kit.controls(self, ["accum_k"]),
                    self._exercise_text,
                    self._accum_plot,
                    self._zero_plot,
                    self._resume_plot,
                    sizing_mode="stretch_width",
                ),
            ),
            sizing_mode="stretch_width",
            dynamic=False,
        )
        return pn.Column(self.error_view, self._progress, tabs, sizing_mode="stretch_width")

    def close(self) -> None:
        """Stop polling and close the tracker (the session ended); a job started here keeps running."""
        self._stop_polling()
        self.live.close()


Dashboard = TrainingDashboard


def dashboard(**params: Any) -> TrainingDashboard:
    """The dashboard for a notebook: ``params`` set any control and plug in your exercise functions
    (``dashboard(model="70B", tp=8, pp=4, zero_bytes_per_gpu=zero_bytes_per_gpu)``)."""
    return TrainingDashboard(**params)


def app() -> pn.template.FastListTemplate:
    """A fresh dashboard in the lab's page, one per browser session (``syslab serve``): it starts training
    jobs only when the server was started with ``--allow-training-runs``."""
    return TrainingDashboard.page(allow_runs=os.environ.get(ALLOW_RUNS_ENV) == "1")
