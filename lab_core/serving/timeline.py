"""The engine's requests as one table: what calibration compares with the simulator and what the
live dashboard draws as queued / prefill / decode bars."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from lab_core.serving.engine import LLMEngine
from lab_core.serving.protocol import tier_name
from lab_core.serving.sequence import Sequence

COLUMNS = [
    "request",
    "tier",
    "prompt_len",
    "output_len",
    "max_tokens",
    "arrival",
    "scheduled",
    "first_token",
    "finish",
    "ttft",
    "tpot",
    "e2e",
    "state",
    "preemptions",
]
PHASES = ("queued", "prefill", "decode")
"""A request's phases: arrival -> first scheduled -> first token -> finish."""


def _state(seq: Sequence) -> str:
    if seq.finish_time is not None:
        return "aborted" if seq.finish_reason == "abort" else "done"
    if seq.first_token_time is not None:
        return "decode"
    return "prefill" if seq.first_scheduled is not None else "queued"


def request_table(engine: LLMEngine, t0: float, ids: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per request of ``engine`` (``ids``, default all it keeps), times in seconds since ``t0``.

    ``finish`` is NaN until a request ends and for an aborted one; ``ttft = first_token - arrival``,
    ``tpot`` the mean gap between later tokens (NaN for one-token answers), ``e2e = finish - arrival``.
    """

    def rel(t: float | None) -> float:
        return math.nan if t is None else t - t0

    rows = []
    for rid in list(engine.sequences) if ids is None else ids:
        s = engine.sequences[rid]
        finish = rel(s.finish_time) if s.finish_reason != "abort" else math.nan
        rows.append(
            (
                rid,
                tier_name(s.priority),
                len(s.prompt),
                len(s.output),
                s.params.max_tokens,
                rel(s.arrival),
                rel(s.first_scheduled),
                rel(s.first_token_time),
                finish,
                _state(s),
                s.preemptions,
            )
        )
    df = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("ttft", "tpot", "e2e")])
    df.insert(COLUMNS.index("ttft"), "ttft", df.first_token - df.arrival)
    gaps = (df.finish - df.first_token) / (df.output_len - 1).clip(lower=1)
    df.insert(COLUMNS.index("tpot"), "tpot", np.where(df.output_len > 1, gaps, np.nan).astype(float))
    df.insert(COLUMNS.index("e2e"), "e2e", df.finish - df.arrival)
    return df


def phase_bars(table: pd.DataFrame, now: float) -> pd.DataFrame:
    """A :func:`request_table` as bars: request, row, phase, start, end (a running phase ends at ``now``)."""
    rows = []
    for i, r in enumerate(table.itertuples()):
        marks = [r.arrival, r.scheduled, r.first_token, r.finish]
        for phase, start, end in zip(PHASES, marks, marks[1:]):
            if math.isnan(start):
                break
            rows.append(
                (
                    r.request,
                    i,
                    phase,
                    start,
                    now if math.isnan(end) else end,
                    r.tier,
                    r.prompt_len,
                    r.output_len,
                    r.max_tokens,
                )
            )
    return pd.DataFrame(
        rows, columns=["request", "row", "phase", "start", "end", "tier", "prompt_len", "output_len", "max_tokens"]
    )
