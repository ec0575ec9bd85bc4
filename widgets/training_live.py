"""The live-run tab of Lab 08's dashboard: the runs of an experiment tracker, one followed as it grows (a recorded
worked example before any run exists), and a short real ``torchrun`` job started from the page. Run logic and the
data drawn live in ``lab_core.training.live``; this is the tab's widgets and plots."""

from __future__ import annotations

import html
from functools import lru_cache

import holoviews as hv
import panel as pn
import param

from lab_core.training import experiments as ex
from widgets import kit

LOSS_COLORS: dict[str, str] = {"train": "#1f77b4", "eval": "#ff7f0e"}
POLL_MS = 1000
example_run = lru_cache(maxsize=1)(ex.example_run)


class LiveRunTab(param.Parameterized):
    """The tab as a part of a dashboard class: call :meth:`build_live` once its panes may exist, lay out
    :meth:`live_tab`, and :meth:`close` when the session ends."""

    # Set by the notebook (or SYSLAB_TRAINING_DIR), never typed on a served page: a visitor's path would read any
    # SQLite file on the server and start jobs writing beside it.
    tracker_path = param.String(default="", precedence=-1, doc="the tracker database (SQLite) the live tab reads")
    # On in a notebook (the student's own machine); off on a served page unless the server allows it.
    allow_runs = param.Boolean(default=True, precedence=-1, doc="whether the Start button may launch torchrun")
    live_strategy = param.Selector(default="ddp", objects=["ddp", "fsdp", "tp", "pp"], label="Strategy")
    live_nproc = param.Selector(default=2, objects=[1, 2], label="Processes (ranks)")
    live_steps = param.Integer(60, bounds=(10, 400), step=10, label="Optimizer steps")

    def build_live(self) -> None:
        """The tab's widgets and panes, and a first read of the tracker."""
        self.live = ex.LiveRuns(self.tracker_path, allow_start=self.allow_runs)
        self.live_error = self._read_error = ""
        self._callback: pn.io.PeriodicCallback | None = None
        self._drawn: tuple = ()
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
        self._status = pn.pane.Markdown("", sizing_mode="stretch_width", margin=(0, 10))
        # Unlinked: Panel shares linked panes' axes, and a shared "step" range kept the first run's length.
        for name in ("loss", "lr", "speed"):
            setattr(self, f"_{name}", pn.pane.HoloViews(sizing_mode="stretch_width", linked_axes=False))
        self.refresh_runs()

    @param.depends("tracker_path", watch=True)
    def _new_tracker(self) -> None:
        self.live.retarget(self.tracker_path)
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
        job = self.live.launched
        if job is not None and job.run_id not in self._run_select.options.values():
            self.select_run(job.run_id)  # which polls again, through the picker's watcher
            return
        self.live_error = self.live.news(kit.describe) or self.live_error
        try:
            snap, self._read_error = self.live.snapshot(self._run_select.value), ""
        except Exception as exc:  # noqa: BLE001 - the file went away or is not a tracker: say so, keep polling
            snap, self._read_error = ex.RunSnapshot(None), f"Could not read the run: {kit.describe(exc)}"
        info = snap.info
        key = (snap.version, self.live_error, self._read_error, self.live.launching, self.live.prep)
        if key != self._drawn:  # redrawing three figures costs more than reading the tracker
            labels = {v: k for k, v in self._run_select.options.items()}
            if info is not None and f" · {info['status']} · " not in labels.get(info["run_id"], ""):
                self._load_runs()  # the picker's label shows the run's status: it changed
            self._drawn = key
            self.snapshot = snap if info is not None or self._run_select.options else example_run()
            self._redraw()
        if self.live.busy(snap):
            self._callback = self._callback or pn.state.add_periodic_callback(self.poll, period=POLL_MS)
        else:
            self._stop_polling()

    def _stop_polling(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def _redraw(self) -> None:
        snap = self.snapshot
        # The x axis spans the planned steps, so the curves grow across it (and no earlier run's range lingers).
        self._xlim = (0, snap.steps[1])
        self._loss.object = self.loss_plot()
        self._lr.object = self.metric_plot("lr", "Learning rate (warm-up, cosine decay)", "learning rate")
        self._speed.object = self.metric_plot("tokens_per_s", "Throughput (all ranks)", "tokens per second")
        error = "  \n".join(e for e in (self.live_error, self._read_error) if e)
        self._error.param.update(object=error, visible=bool(error))
        done, total = self.live.progress(snap)
        self._run_progress.param.update(value=0, max=total)  # one at a time: value is checked against the max
        self._run_progress.value = min(done, total)
        self._status.object = self.live.status(snap)

    def _title(self, text: str) -> str:
        return f"Worked example · {text}" if self.snapshot.example else text

    def loss_plot(self) -> hv.Overlay:
        """Training loss per step, and validation loss where the run evaluated."""
        losses, ylabel = self.snapshot.losses(), "cross-entropy loss (nats/token)"
        curves = kit.timeseries_plot(
            losses,
            "value",
            x="step",
            by="series",
            colors=LOSS_COLORS,
            title="Loss",
            xlabel="optimizer step",
            ylabel=ylabel,
        )
        points = hv.Scatter(losses[losses["series"] == "eval"], ("step", "optimizer step"), ("value", ylabel))
        return (curves * points.opts(color=LOSS_COLORS["eval"], size=7)).opts(
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
            self.snapshot.series(key),
            key,
            x="step",
            title=self._title(title),
            xlabel="optimizer step",
            ylabel=ylabel,
            legend=False,
        ).opts(xlim=self._xlim)

    def start_run(self, *, wait: bool = False) -> None:
        """Launch a short real job (``torchrun``, ``live_nproc`` ranks) in the background, so the page stays live
        while the dataset is prepared (seconds, once per workdir), and follow it."""
        try:
            self.live_error, thread = "", None
            thread = self.live.start_in_background(self.live_strategy, int(self.live_nproc), int(self.live_steps))
        except RuntimeError as exc:
            self.live_error = str(exc)
        self.poll()
        if wait and thread is not None:
            thread.join()
            self.poll()

    def stop_run(self) -> None:
        """Stop the job this session started and mark its run killed."""
        self.live.stop()
        self.poll()

    def live_tab(self) -> pn.Row:
        """The run picker and the Start / Stop buttons beside the run's status, loss, learning rate and speed."""
        refresh, start, stop = self._buttons
        tracker = pn.bind(lambda path: f"Tracker: `{html.escape(path)}`", self.param.tracker_path)
        controls = pn.Column(
            pn.pane.Markdown(tracker, margin=(0, 10)),
            self._run_select,
            refresh,
            pn.pane.Markdown("#### Start a run", margin=(0, 10)),
            kit.controls(self, ["live_strategy", "live_nproc", "live_steps"]),
            start,
            stop,
            width=340,
        )
        plots = (self._error, self._status, self._run_progress, self._loss, self._lr, self._speed)
        return pn.Row(controls, pn.Column(*plots, sizing_mode="stretch_width"), sizing_mode="stretch_width")

    def close(self) -> None:
        """Stop polling and close the tracker (the session ended); a job started here keeps running."""
        self._stop_polling()
        self.live.close()
