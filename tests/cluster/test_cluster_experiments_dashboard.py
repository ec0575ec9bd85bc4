"""The dashboard's data in ``lab_core.cluster.experiments``: its workload and failure from the settings, the
run cache, one recompute, and the tidy data behind each plot (no Panel or HoloViews involved)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lab_core.cluster import FGD, SCHEDULERS, Failure, best_fit, synthetic
from lab_core.cluster import experiments as ex

SHAPE = (2, 2, 8, 4)


@pytest.fixture(scope="module")
def runs() -> dict[str, ex.PolicyRun]:
    jobs = ex.workload(SHAPE, n_jobs=60, rate=40.0, mix="published", burstiness=1.0, priorities=1, seed=3)
    failure = Failure(3600.0, rack=1, repair_after=1800.0)
    return {
        name: ex.run_policy(SHAPE, jobs, SCHEDULERS[name](), best_fit, [failure], frames=name == "easy_backfill")
        for name in ("easy_backfill", "fifo")
    }


@pytest.fixture(scope="module")
def recompute(runs) -> ex.Recompute:
    failure = Failure(3600.0, rack=1, repair_after=1800.0)
    return ex.recompute_of(
        runs, "easy_backfill", "best_fit", SHAPE, failure, 1.2, seconds=0.5, main_seconds=0.3, compare_seconds=0.2
    )


def test_workload_is_the_synthetic_trace_per_hour_and_never_wider_than_the_cluster():
    jobs = ex.workload((1, 1, 8, 4), n_jobs=50, rate=36.0, mix="published", burstiness=1.0, priorities=2, seed=5)
    same = synthetic(50, rate=36.0 / 3600.0, mix="published", priorities=2, seed=5, max_gpus=8)
    assert [(j.submit, j.num_gpus, j.priority) for j in jobs] == [(j.submit, j.num_gpus, j.priority) for j in same]
    assert max(j.num_gpus for j in jobs) <= 8


def test_failure_from_the_settings():
    assert ex.failure_from("none", 3, 2.0, 1.0) is None
    assert ex.failure_from("rack", 1, 2.0, 0.5) == Failure(7200.0, rack=1, repair_after=1800.0)
    assert ex.failure_from("node", 5, 0.25, 1.0) == Failure(900.0, node=5, repair_after=3600.0)


def test_placer_by_name():
    assert ex.placer("best_fit", []) is best_fit
    assert isinstance(ex.placer("fgd", synthetic(20, seed=1)), FGD)
    with pytest.raises(KeyError):
        ex.placer("nowhere", [])


def test_run_cache_reuses_runs_for_the_same_inputs_only_and_never_the_chosen_one(runs):
    cache = ex.RunCache(("a",), {name: (run, None) for name, run in runs.items()})
    kept = cache.reusable(("a",), "easy_backfill")
    assert set(kept) == {"fifo"} and kept["fifo"][0] is runs["fifo"]
    assert set(cache.runs) == {"easy_backfill", "fifo"}  # a copy: the cache itself is unchanged
    assert cache.reusable(("b",), "fifo") == {}


def test_a_recompute_holds_the_chosen_run_and_compares_every_scheduler(recompute, runs):
    assert recompute.result is runs["easy_backfill"].result and recompute.frames == runs["easy_backfill"].frames
    assert list(recompute.compare["scheduler"]) == ["easy_backfill", "fifo"]
    assert set(recompute.jct["scheduler"]) == {"easy_backfill", "fifo"}
    assert (recompute.seconds, recompute.main_seconds, recompute.compare_seconds, recompute.load) == (
        0.5,
        0.3,
        0.2,
        1.2,
    )
    assert recompute.frame(10**6) is recompute.frames[-1] and recompute.frame(0) is recompute.frames[0]
    assert recompute.failure_hours() == (1.0, 1.5)
    assert recompute.samples()["t_h"].equals(recompute.result.samples["t"] / 3600.0)
    empty = ex.recompute_of({}, "fifo", "best_fit", SHAPE, None, 0.0, seconds=0.1, main_seconds=0, compare_seconds=0)
    assert empty.result is None and empty.frame(0) is None and empty.failure_hours() is None
    assert empty.samples().empty and list(empty.compare.columns) == ex.COMPARE_COLUMNS


def test_series_are_in_percent_and_never_empty(recompute):
    long = ex.ratio_series(recompute.samples())
    assert set(long["metric"]) == set(ex.RATIO_LABELS.values())
    assert long["pct"].between(0, 100).all() and long["pct"].max() > 1  # percent, not shares of 1
    placeholder = ex.ratio_series(ex.Recompute().samples())
    assert len(placeholder) == 1 and placeholder["pct"].iloc[0] == 0.0
    assert ex.queue_series(ex.Recompute().samples()).to_dict("list") == {"t_h": [0.0], "queue": [0]}
    assert ex.queue_series(recompute.samples()) is not None and len(ex.queue_series(recompute.samples())) > 1


def test_map_layers_draw_every_gpu_once_and_mark_what_the_map_marks(recompute):
    index = next(i for i, f in enumerate(recompute.frames) if not f.alive.all() and (f.owners >= 0).any())
    frame = recompute.frames[index]
    cells = ex.gpu_map(SHAPE, frame)
    m = ex.map_layers(SHAPE, frame, cells, palette=16)
    assert len(m.cells) == 32 and (m.cells["x1"] - m.cells["x0"]).round(2).eq(0.9).all()
    assert sorted(m.busy["job"]) == sorted(frame.owners[frame.owners >= 0])
    assert (m.busy["palette"] == m.busy["job"] % 16).all() and (m.busy["dark"] == (m.busy["palette"] % 2 == 0)).all()
    assert [y0 + 0.5 for _, y0, _, _ in m.down] == [2.0, 3.0]  # rack 1 is down
    assert len(m.reserved) == int(frame.reserved.sum())
    assert m.rack_lines == [1.5] and m.domain_lines == [3.5]
    assert m.names == ["r0n0", "r0n1", "r1n0", "r1n1"]
    assert m.title.startswith(f"GPU map at t = {frame.t / 3600:.2f} h") and f"{frame.running} running" in m.title
    nothing = ex.map_layers(SHAPE, None, ex.gpu_map(SHAPE, None), palette=16)
    assert nothing.title == "GPU map (no run)" and nothing.busy.empty and not nothing.down


def test_headline_gives_the_chosen_runs_numbers_at_the_snapshot(recompute):
    row = recompute.compare.set_index("scheduler").loc["easy_backfill"]
    text = ex.headline(recompute, 3)
    assert text.startswith("**easy_backfill** + **best_fit** on 2×2 nodes × 8 GPUs (offered load 1.20)")
    assert f"mean JCT **{row['mean_jct_h']:.2f} h**" in text
    assert f"(snapshot 3 of {len(recompute.frames) - 1})" in text and "Recomputed in 500 ms" in text
    assert ex.headline(ex.Recompute(seconds=0.25), 0) == "No results; see the error above. Recomputed in 250 ms."


def test_table_titles_are_the_comparison_labels_with_a_soft_hyphen():
    assert set(ex.TABLE_TITLES) <= set(ex.COMPARE_COLUMNS)
    for column, title in ex.TABLE_TITLES.items():
        assert title.replace("\u00ad", "") == ex.COMPARE_LABELS[column]
    assert "\u00ad" in ex.TABLE_TITLES["mean_fragmentation_pct"]
    assert isinstance(ex.gpu_map(SHAPE, None), pd.DataFrame) and np.array_equal(
        ex.gpu_map(SHAPE, None).columns, ["node", "name", "rack", "gpu", "job", "free_pct", "state", "reserved"]
    )
