"""What notebooks, benchmarks and the dashboard run (``lab_core.cluster.experiments``): one run loop with
failures as input, snapshots, and the comparison tables in the units the page shows."""

from __future__ import annotations

import numpy as np
import pytest

from lab_core.cluster import SCHEDULERS, Failure, best_fit, synthetic
from lab_core.cluster import experiments as ex

SHAPE = (2, 2, 8, 4)


@pytest.fixture(scope="module")
def jobs():
    return synthetic(60, rate=40 / 3600, mix="published", seed=3, max_gpus=32)


def test_a_run_takes_its_failure_as_input_and_snapshots_it(jobs):
    seen = []
    run = ex.run_policy(
        SHAPE,
        jobs,
        SCHEDULERS["easy_backfill"](),
        best_fit,
        [Failure(3600.0, rack=1, repair_after=1800.0)],
        progress=lambda *a: seen.append(a),
    )
    assert run.result.stopped is None and run.result.summary["done"] == len(jobs)
    assert len(run.frames) >= ex.FRAMES + 1 and run.frames[0].t == 0
    assert seen[-1] == (100, 100, "done")
    for f in run.frames:
        down = 3600.0 <= f.t < 5400.0
        assert (~f.alive == (np.array([0, 0, 1, 1], bool) & down)).all(), f.t
    events = run.result.events
    assert (events["event"] == "node failed").sum() == 2 and (events["event"] == "node back").sum() == 2
    assert all(j.start is None and j.restarts == 0 for j in jobs)  # the caller's jobs are copied, not run
    assert not ex.run_policy(SHAPE, jobs, SCHEDULERS["fifo"](), best_fit, frames=False).frames


def test_the_comparison_is_in_hours_and_percent(jobs):
    results = {
        name: ex.run_policy(SHAPE, jobs, SCHEDULERS[name](), best_fit, frames=False).result
        for name in ("fifo", "easy_backfill")
    }
    table = ex.comparison(results).set_index("scheduler")
    assert list(ex.comparison(results).columns) == ex.COMPARE_COLUMNS == list(ex.COMPARE_LABELS)
    fifo = results["fifo"].summary
    assert table.loc["fifo", "mean_jct_h"] == pytest.approx(fifo["mean_jct"] / 3600)
    assert table.loc["fifo", "arrival_utilisation_pct"] == pytest.approx(fifo["arrival_utilisation"] * 100)
    assert table.loc["fifo", "makespan_utilisation_pct"] == pytest.approx(fifo["utilisation"] * 100)
    assert table.loc["fifo", "mean_stranded_pct"] == pytest.approx(fifo["mean_stranded"] * 100)
    for column, label in ex.COMPARE_LABELS.items():  # every measured column names its unit
        assert column in ("scheduler", "done", "restarts", "migrations") or label.endswith(")"), label
    cdf = ex.jct_distribution(results)
    for name, part in cdf.groupby("scheduler"):
        assert len(part) == len(jobs) and part["jct_h"].is_monotonic_increasing and part["share"].iloc[-1] == 1.0
        assert part["jct_h"].mean() == pytest.approx(table.loc[name, "mean_jct_h"])


def test_the_gpu_map_and_the_busiest_snapshot(jobs):
    run = ex.run_policy(SHAPE, jobs, SCHEDULERS["fifo"](), best_fit)
    i = ex.busiest_frame(run.frames)
    queued = [sum(j.gpus for j in f.queue) for f in run.frames]
    assert queued[i] == max(queued) > 0
    cells = ex.gpu_map(SHAPE, run.frames[i])
    assert len(cells) == 32 and set(cells["state"]) <= {"busy", "free", "stranded", "reserved", "down"}
    assert ((cells["job"] >= 0) == (cells["state"] == "busy")).all()


def test_a_load_the_cluster_can_never_serve_is_refused(jobs):
    assert ex.check_load(jobs, 32) == pytest.approx(ex.offered_load(jobs, 32))
    with pytest.raises(ValueError, match="lower the arrival rate"):
        ex.check_load(jobs, 1)
