"""Experiment tracker: runs and their metrics in SQLite, readable live from another process.

The training job (rank 0) writes; a dashboard or notebook in another process reads the same file
while the run goes on. SQLite in WAL mode lets one writer and many readers work at once, and every
``log`` commits straight away, so a reader sees a step as soon as ``log`` returns.
"""

from __future__ import annotations

import json
import math
import re
import threading
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from lab_core.sim.clock import Clock, RealClock
from lab_core.store import sqlite

STATUSES = ("running", "finished", "failed", "killed")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    step INTEGER NOT NULL,
    key TEXT NOT NULL,
    value REAL,
    wall REAL NOT NULL,
    PRIMARY KEY (run_id, key, step)
);
"""

RUN_COLUMNS = ["run_id", "name", "status", "created", "updated", "last_step", "config"]
METRIC_COLUMNS = ["step", "key", "value", "wall"]


class UnknownRun(ValueError):
    """No run has this id."""


class Tracker:
    """Runs (name, config, status) and per-step scalar metrics in one SQLite file."""

    def __init__(self, path: str | Path, *, clock: Clock | None = None) -> None:
        self.path = Path(path)
        self.clock = clock or RealClock()
        self.conn = sqlite(self.path)
        # The training loop and a dashboard's periodic callback may share one Tracker from two threads.
        self.lock = threading.RLock()
        with self.lock:
            self.conn.executescript(SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.conn.close()

    # --- writing ---------------------------------------------------------------------------

    def start_run(self, name: str, config: Mapping[str, Any], *, run_id: str | None = None) -> str:
        """Create a run (status "running") and return its id; an existing ``run_id`` is resumed."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"run name must be a non-empty string, got {name!r}")
        if not isinstance(config, Mapping):
            raise ValueError(f"run config must be a mapping, got {type(config).__name__}")
        try:
            config_json = json.dumps(dict(config), sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"run config is not JSON-serialisable: {exc}") from None
        if run_id is None:
            run_id = uuid.uuid4().hex[:12]
        elif not isinstance(run_id, str) or not _RUN_ID.match(run_id):
            raise ValueError(f"run_id must be 1-64 letters, digits, '.', '_' or '-', got {run_id!r}")
        now = self.clock.now()
        with self.lock:
            # A job restarted from a checkpoint keeps logging into the same run under its old id.
            self.conn.execute(
                "INSERT INTO runs (run_id, name, config, status, created, updated) VALUES (?, ?, ?, 'running', ?, ?) "
                "ON CONFLICT(run_id) DO UPDATE SET status = 'running', updated = excluded.updated",
                (run_id, name.strip(), config_json, now, now),
            )
        return run_id

    def log(self, run_id: str, step: int, metrics: Mapping[str, float], *, wall: float | None = None) -> None:
        """Record ``metrics`` for ``step`` (a step logged again overwrites, as after a resume)."""
        self.log_many(run_id, [(step, metrics)], wall=wall)

    def log_many(
        self, run_id: str, rows: Iterable[tuple[int, Mapping[str, float]]], *, wall: float | None = None
    ) -> None:
        """Record several ``(step, metrics)`` pairs in one transaction."""
        wall = self.clock.now() if wall is None else float(wall)
        records = [(run_id, s, k, v, wall) for step, metrics in rows for s, k, v in _checked(step, metrics)]
        with self.lock:
            self._require(run_id)
            self.conn.execute("BEGIN")
            try:
                self.conn.executemany(
                    "INSERT OR REPLACE INTO metrics (run_id, step, key, value, wall) VALUES (?, ?, ?, ?, ?)", records
                )
                self.conn.execute("UPDATE runs SET updated = ? WHERE run_id = ?", (wall, run_id))
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def finish(self, run_id: str, status: str = "finished") -> None:
        """Mark a run ended: "finished", "failed" or "killed"."""
        if status not in STATUSES or status == "running":
            raise ValueError(f"status must be one of {', '.join(STATUSES[1:])}, got {status!r}")
        with self.lock:
            self._require(run_id)
            self.conn.execute(
                "UPDATE runs SET status = ?, updated = ? WHERE run_id = ?", (status, self.clock.now(), run_id)
            )

    # --- reading ---------------------------------------------------------------------------

    def runs(self) -> pd.DataFrame:
        """Every run, newest first: run_id, name, status, created, updated, last_step, config (a dict)."""
        with self.lock:
            rows = self.conn.execute(
                "SELECT r.run_id, r.name, r.status, r.created, r.updated, "
                "(SELECT MAX(step) FROM metrics m WHERE m.run_id = r.run_id) AS last_step, r.config "
                "FROM runs r ORDER BY r.created DESC, r.rowid DESC"
            ).fetchall()
        for row in rows:
            row["config"] = json.loads(row["config"])
        return pd.DataFrame(rows, columns=RUN_COLUMNS)

    def run(self, run_id: str) -> dict:
        """One run as a dict (config decoded, ``last_step`` None before the first log)."""
        with self.lock:
            row = self._require(run_id)
            last = self.conn.execute("SELECT MAX(step) AS s FROM metrics WHERE run_id = ?", (run_id,)).fetchone()
        row["config"] = json.loads(row["config"])
        row["last_step"] = last["s"]
        return row

    def metrics(self, run_id: str, keys: Iterable[str] | None = None) -> pd.DataFrame:
        """Tidy frame [step, key, value, wall] sorted by key then step; only ``keys`` when given."""
        sql = "SELECT step, key, value, wall FROM metrics WHERE run_id = ?"
        args: list[Any] = [run_id]
        if keys is not None:
            keys = [keys] if isinstance(keys, str) else list(keys)
            sql += f" AND key IN ({','.join('?' * len(keys))})"
            args += keys
        with self.lock:
            self._require(run_id)
            rows = self.conn.execute(sql + " ORDER BY key, step", args).fetchall()
        frame = pd.DataFrame(rows, columns=METRIC_COLUMNS)
        # SQLite stores NaN as NULL; a diverged loss must read back as NaN, not None.
        return frame.astype({"step": "int64", "key": "object", "value": "float64", "wall": "float64"})

    def wide(self, run_id: str) -> pd.DataFrame:
        """One row per step: ``step``, ``wall`` (latest write of that step) and a column per metric key."""
        tidy = self.metrics(run_id)
        if tidy.empty:
            return pd.DataFrame(columns=["step", "wall"])
        values = tidy.pivot(index="step", columns="key", values="value")
        values.columns.name = None
        walls = tidy.groupby("step")["wall"].max()
        return values.assign(wall=walls)[["wall", *values.columns]].reset_index()

    def export_tensorboard(self, run_id: str, logdir: str | Path) -> Path:
        """Write the run's scalars (and its config as text) as TensorBoard events under ``logdir/run_id``."""
        # Imported here: tensorboard pulls in protobuf and grpc, which readers of the tracker don't need.
        from torch.utils.tensorboard import SummaryWriter

        info = self.run(run_id)
        out = Path(logdir) / run_id
        writer = SummaryWriter(log_dir=str(out))
        try:
            writer.add_text("config", "```\n" + json.dumps(info["config"], indent=2, sort_keys=True) + "\n```", 0)
            for row in self.metrics(run_id).itertuples(index=False):
                writer.add_scalar(row.key, row.value, global_step=int(row.step), walltime=row.wall)
        finally:
            writer.close()
        return out

    def _require(self, run_id: str) -> dict:
        row = self.conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            known = [r["run_id"] for r in self.conn.execute("SELECT run_id FROM runs ORDER BY created DESC LIMIT 10")]
            raise UnknownRun(f"unknown run_id {run_id!r} in {self.path}; runs: {', '.join(known) or 'none'}")
        return row


def _checked(step: int, metrics: Mapping[str, float]) -> list[tuple[int, str, float | None]]:
    """``(step, key, value)`` rows after checking types; NaN stays NaN (a diverged loss is worth recording)."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    if not isinstance(metrics, Mapping) or not metrics:
        raise ValueError(f"metrics for step {step} must be a non-empty mapping of name to number")
    rows = []
    for key, value in metrics.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"metric name must be a non-empty string, got {key!r}")
        if isinstance(value, bool):
            raise ValueError(f"metric {key!r} must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"metric {key!r} must be a number, got {value!r}") from None
        rows.append((step, key, None if math.isnan(number) else number))
    return rows
