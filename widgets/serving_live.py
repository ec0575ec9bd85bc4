"""Lab 07's live-engine tab: the real engine (``experiments.LiveRun``, a tiny random-weight model on
CPU) serving requests on its own thread, each request's queued / prefill / decode bars, KV blocks
per step and the streamed text; the student's block manager and scheduler run it as "yours".

The engine thread only fills a snapshot. A periodic callback on the page's own event loop (the
server session's, or the notebook kernel's IOLoop) draws it: Bokeh documents take updates from
their own loop only, and in a notebook there is no server session to hand them to.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

import holoviews as hv
import pandas as pd
import panel as pn
import param

from lab_core.llm.model import Transformer, build_model
from lab_core.serving import experiments as ex
from lab_core.serving.engine import EngineConfig, LLMEngine
from lab_core.serving.timeline import PHASES, phase_bars
from widgets import kit

if TYPE_CHECKING:
    from widgets.serving import ServingDashboard

YOURS, REFERENCE = "yours", "reference"
PHASE_COLORS: dict[str, str] = dict(zip(PHASES, ("#bbbbbb", "#ff7f0e", "#1f77b4")))
LIVE_ORDERS: dict[str, str] = {"fcfs (arrival order)": "fcfs", "paid-first (strict)": "priority"}
POLL_MS = 200
ERROR = "live engine"  # its key in the dashboard's errors


def printable(text: str) -> str:
    """The streamed text with control and replacement characters shown as a middle dot."""
    return "".join(c if c.isprintable() and c != "\ufffd" else "·" for c in text)


class LiveEngineTab(pn.viewable.Viewer):
    """The live tab of ``owner`` (a :class:`ServingDashboard`: its block size, chunking, seed, the
    student's plug-ins and the error pane)."""

    live_requests = param.Integer(8, bounds=(1, 32), label="Requests per click")
    live_blocks = param.Integer(48, bounds=(16, 256), step=8, label="KV blocks (live engine)")
    live_budget = param.Integer(128, bounds=(16, 512), step=16, label="Token budget per step (live engine)")
    live_pause = param.Integer(20, bounds=(0, 200), step=5, label="Pause between steps (ms; 0 = full speed)")
    live_policy = param.Selector(default="fcfs", objects=LIVE_ORDERS, label="Queue order (live engine)")
    live_block_manager = param.Selector(default=REFERENCE, objects=[REFERENCE], label="Block manager")
    live_scheduler = param.Selector(default=REFERENCE, objects=[REFERENCE], label="Scheduler")
    live_request = param.Selector(default="latest", objects=["latest"], label="Show the text of")
    live = param.ClassSelector(
        class_=ex.LiveSnapshot, default=ex.LiveSnapshot(), precedence=-1, doc="the live engine as last drawn"
    )

    def __init__(self, owner: ServingDashboard, **params: Any) -> None:
        self.owner = owner
        chosen = {
            f"live_{k}": params.pop(f"live_{k}", YOURS if k in owner.yours else REFERENCE)
            for k in ("block_manager", "scheduler")
        }
        super().__init__(**params)
        for choice in chosen:
            if choice.removeprefix("live_") in owner.yours:  # "yours" is valid once the objects include it
                self.param[choice].objects = [REFERENCE, YOURS]
        with param.discard_events(self):
            self.param.update(chosen)
        self._model: Transformer | None = None
        self._run: ex.LiveRun | None = None
        self._seen, self._sends, self._poller = -1, 0, None
        self._send = pn.widgets.Button(
            label="Send requests to the live engine", button_type="primary", sizing_mode="stretch_width"
        )
        self._send.on_click(lambda _e: self.send())
        self._reset = pn.widgets.Button(label="New engine (empty cache)", sizing_mode="stretch_width")
        self._reset.on_click(lambda _e: self.reset())
        # Redrawn whole: a DynamicMap kept the first frame's axes while requests were added and time went on.
        self._timeline = pn.panel(self.timeline_plot, sizing_mode="stretch_width")
        self._kv = pn.panel(self.kv_plot, sizing_mode="stretch_width")

    def label(self) -> str:
        """Which block manager and scheduler the engine runs, "yours" marked."""

        def name(choice: str, what: str) -> str:
            return f"**yours** ({what})" if choice == YOURS else f"reference {what}"

        return f"{name(self.live_block_manager, 'block manager')} + {name(self.live_scheduler, 'scheduler')}"

    def engine_config(self) -> EngineConfig:
        """The live engine's settings (block size and chunking are the dashboard's)."""
        return EngineConfig(
            model="tiny",
            block_size=int(self.owner.block_size),
            num_blocks=int(self.live_blocks),
            token_budget=int(self.live_budget),
            chunked_prefill=bool(self.owner.chunked_prefill),
            policy=self.live_policy,
        )

    def _new_run(self) -> ex.LiveRun:
        self._model = self._model or build_model("tiny")
        mine = {"block_manager": self.live_block_manager, "scheduler": self.live_scheduler}
        return ex.LiveRun(
            self.engine_config(),
            model=self._model,
            pause=int(self.live_pause) / 1e3,
            label=self.label(),
            **{k: self.owner.yours[k] for k, v in mine.items() if v == YOURS},
        )

    def _report(self, error: str | None) -> None:
        errors = {k: v for k, v in self.owner.errors.items() if k != ERROR}
        self.owner.errors = {**errors, ERROR: error} if error else errors

    def send(self, n: int | None = None) -> None:
        """Send ``n`` (default: the control's) requests, on a new engine when the settings changed."""
        run = self._run
        if run is None or (
            run.idle and (run.config != self.engine_config() or run.label != self.label() or run.exception is not None)
        ):
            if run is not None:
                run.close()
            errors: dict[str, str] = {}
            self._run, self._seen = kit.LabDashboard.attempt(errors, ERROR, self._new_run), -1
            self._report(errors.get(ERROR))
            if self._run is None:
                return
        self._run.pause = int(self.live_pause) / 1e3
        self._sends += 1
        self._run.send(ex.live_requests(int(n or self.live_requests), seed=self._sends + int(self.owner.seed)))
        if self._poller is None:
            self._poller = pn.state.add_periodic_callback(self.poll, period=POLL_MS)

    def poll(self) -> None:
        """Draw the runner's latest snapshot if it is new (runs on the page's event loop)."""
        run = self._run
        if run is None or run.version == self._seen and (run.exception is None or ERROR in self.owner.errors):
            return
        snap = run.snapshot()
        self._seen = run.version
        if run.exception is not None:
            self._report(f"{run.label}: {kit.describe(run.exception)}")
        self.param.live_request.objects = ["latest", *snap.timeline["request"]]
        self.live = snap

    def wait(self, timeout: float = 60.0) -> ex.LiveSnapshot:
        """Block until the engine's requests are done (notebooks, tests); returns the drawn snapshot."""
        if self._run is not None and not self._run.wait(timeout):
            raise TimeoutError(f"the live engine did not finish its requests in {timeout:g} s")
        self.poll()
        return self.live

    def reset(self) -> None:
        """Drop the engine and clear the timeline."""
        if self._run is not None:
            self._run.close()
        self._run = None
        self._report(None)
        self.param.live_request.objects = ["latest"]
        self.param.update(live_request="latest", live=ex.LiveSnapshot(label=self.label()))

    def close(self) -> None:
        """Stop polling and the engine thread (the session ended)."""
        if self._poller is not None:
            self._poller.stop()
        if self._run is not None:
            self._run.close()

    @property
    def engine(self) -> LLMEngine | None:
        """The real engine (None before the first send)."""
        return self._run.engine if self._run is not None else None

    def phases(self) -> pd.DataFrame:
        """The drawn timeline as bars: request, row, phase, start, end (s since the first request)."""
        return phase_bars(self.live.timeline, self.live.now)

    # ---- views -------------------------------------------------------------------------------------

    @param.depends("live")
    def timeline_plot(self) -> hv.Overlay:
        """One bar per request: queued (arrival → first scheduled), prefill (→ first token), decode (→ finish)."""
        bars, snap = self.phases(), self.live
        n = len(snap.timeline)
        vdims = ["request", "phase", "tier", "prompt_len", "output_len", "max_tokens"]
        layers = [
            hv.Rectangles(
                bars[bars["phase"] == phase].assign(y0=lambda f: f["row"] - 0.38, y1=lambda f: f["row"] + 0.38),
                [("start", "time since the first request (s)"), "y0", "end", "y1"],
                vdims,
                label=phase,
            ).opts(color=color, line_color="white", line_width=0.5, tools=["hover"])
            for phase, color in PHASE_COLORS.items()
        ]
        now = hv.VLine(snap.now).opts(color="#000000", line_width=1, line_dash="dotted", alpha=0.6 if n else 0)
        labels = [(i, f"{r.request} · {r.tier} · {r.prompt_len} tok") for i, r in enumerate(snap.timeline.itertuples())]
        state = "running" if snap.running else "done"
        title = (
            f"Request timelines ({state}; {n} requests, {snap.steps} engine steps)"
            if n
            else "Request timelines (press “Send requests”)"
        )
        return hv.Overlay([*layers, now]).opts(
            hv.opts.Overlay(
                title=title,
                xlabel="time since the first request arrived (s)",
                ylabel="request",
                yticks=labels or [(0, "")],
                ylim=(max(n, 1) - 0.5, -0.5),
                xlim=(0, max(snap.now, 0.1) * 1.02),
                responsive=True,
                height=max(260, 24 * n + 110),
                legend_position="top_right",
                show_grid=False,
                framewise=True,
            )
        )

    @param.depends("live")
    def kv_plot(self) -> hv.Overlay:
        """KV blocks in use after each step of the live engine, with the cache size."""
        snap = self.live
        kv = snap.kv if not snap.kv.empty else pd.DataFrame({"t": [0.0], "blocks": [0]})
        plot = kit.timeseries_plot(
            kv,
            "blocks",
            step=True,
            title="KV blocks in use",
            ylabel="KV blocks in use",
            xlabel="time since the first request arrived (s)",
            legend=False,
        )
        total = snap.total_blocks or int(self.live_blocks)
        cap = hv.HLine(total).opts(color=kit.OVER, line_dash="dashed", line_width=2)
        return (plot * cap).opts(
            hv.opts.Overlay(
                title=f"KV blocks in use (of {total}; dashed: all of them)",
                ylim=(0, total * 1.1),
                show_legend=False,
                framewise=True,
            )
        )

    @param.depends("live", "live_request")
    def text(self) -> pn.pane.HTML:
        """The streamed text of the chosen (or latest) request, with its state."""
        t = self.live.timeline
        rid = t["request"].iloc[-1] if len(t) and self.live_request == "latest" else self.live_request
        if rid not in set(t["request"]):
            return pn.pane.HTML("", sizing_mode="stretch_width")
        row, snap = t.set_index("request").loc[rid], self.live
        ids = " ".join(map(str, snap.tokens.get(rid, [])))
        more = "… " if row["output_len"] > len(snap.tokens.get(rid, [])) else ""
        box = "white-space:pre-wrap;word-break:break-all;background:#f6f6f6;padding:0.4em;max-height:6em;overflow:auto"
        return pn.pane.HTML(
            f"<b>{html.escape(rid)}</b> ({row['tier']}, {row['prompt_len']} prompt tokens): {row['state']}, "
            f"{row['output_len']} of {row['max_tokens']} tokens streamed"
            f"<div>text (· = a byte that is not printable UTF-8):</div>"
            f'<pre class="serving-text" style="{box}">{html.escape(printable(snap.texts.get(rid, ""))) or "&nbsp;"}</pre>'
            f'<div>latest token ids:</div><pre class="serving-ids" style="{box}">{more}{ids or "&nbsp;"}</pre>'
            '<span style="color:#777;font-size:0.85em">The tiny model has random weights, so its text is noise: '
            "what this shows is when each token arrives.</span>",
            sizing_mode="stretch_width",
        )

    @param.depends("live")
    def status(self) -> pn.pane.Markdown:
        """What the live engine runs and how far it is."""
        t, snap = self.live.timeline, self.live
        if t.empty:
            return pn.pane.Markdown(
                f"Live engine: {self.label()}. Press the button to send requests.",
                sizing_mode="stretch_width",
                margin=(0, 10),
            )
        done = t.dropna(subset=["finish"])
        ttft = done["ttft"].median() * 1e3 if len(done) else math.nan
        return pn.pane.Markdown(
            f"Live engine: {snap.label}, {'running' if snap.running else 'idle'}. {len(done)} of {len(t)} requests "
            f"done after {snap.steps} steps in {snap.now:.2f} s; median TTFT {ttft:.0f} ms; "
            f"{int(t['preemptions'].sum())} preemptions.",
            sizing_mode="stretch_width",
            margin=(0, 10),
        )

    def __panel__(self) -> pn.viewable.Viewable:
        # A FlexBox in a Row beside a fixed-width column stopped every later update from reaching the
        # browser (Panel 1.x, seen in the served app): the views are stacked in one column.
        return pn.Row(
            pn.Column(
                kit.controls(
                    self,
                    [
                        "live_requests",
                        "live_blocks",
                        "live_budget",
                        "live_pause",
                        "live_policy",
                        "live_block_manager",
                        "live_scheduler",
                    ],
                ),
                self._send,
                self._reset,
                width=300,
                margin=(5, 25, 5, 5),
            ),
            pn.Column(
                self.status,
                self._timeline,
                kit.color_key(PHASE_COLORS),
                self._kv,
                pn.Param(
                    self, parameters=["live_request"], show_name=False, widgets={"live_request": pn.widgets.Select}
                ),
                self.text,
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )
