"""Lab 09 dashboard without a browser: it builds, every control changes what it shows, the GPU map marks
stranded, dead and reserved GPUs, the player steps, and students' schedulers and placers plug in."""

from __future__ import annotations

import hashlib

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import pytest

from lab_core.cluster import (
    FULL_GPU,
    SCHEDULERS,
    Failure,
    best_fit,
    easy_backfill,
    first_fit,
    stranded_gpus,
    stranded_mask,
)
from lab_core.cluster.experiments import COMPARE_LABELS, FRAMES, cluster_at
from widgets.cluster import JOB_COLORS, TITLES, YOURS, ClusterDashboard, Dashboard, app, dashboard

#: A short trace (quick recomputes) arriving fast and in bursts, so jobs queue, block, strand GPUs and get reserved for.
SMALL = {"n_jobs": 80, "racks": 3, "rate": 70.0, "burstiness": 2.0, "mix": "published"}
#: One rack under more load than it serves: snapshots catch jobs waiting, GPUs stranded, nodes reserved.
PRESSURE = {"n_jobs": 100, "racks": 1, "rate": 25.0, "mix": "published"}


@pytest.fixture(scope="module")
def default() -> ClusterDashboard:
    return dashboard()


def views(dash: ClusterDashboard):
    return (dash.heatmap_plot, dash.ratios_plot, dash.queue_plot, dash.jct_plot)


def shown(dash: ClusterDashboard) -> str:
    """A digest of everything the plots and the table draw: the GPU map at every snapshot (which job, free,
    live, reserved), the sampled metrics, the JCT distributions and the comparison numbers."""
    h = hashlib.sha256()
    for f in dash.run.frames:
        for a in (f.owners, f.free, f.alive, f.reserved):
            h.update(np.ascontiguousarray(a).tobytes())
    s = dash.samples()
    h.update(s[["t", "utilisation", "fragmentation", "stranded", "queue"]].to_numpy(dtype=float).tobytes())
    h.update(dash.run.jct[["jct_h", "share"]].to_numpy(dtype=float).tobytes())
    h.update(dash.comparison().drop(columns=["seconds"]).to_csv().encode())
    h.update(dash.gpu_map().to_csv().encode())
    h.update(str(dash.run.shape).encode())
    return h.hexdigest()


def test_builds_and_renders(default):
    assert default.errors == {}
    table = default.comparison()
    assert list(table["scheduler"]) == list(SCHEDULERS)
    assert (table["done"] == default.n_jobs).all()
    assert default.run.scheduler == "easy_backfill" and default.run.placer == "best_fit"
    assert len(default.run.frames) >= FRAMES
    for view in views(default):
        hv.render(view())
    pn.panel(default).get_root()
    assert "Recomputed in" in default.headline().object


def test_app_is_a_servable_template():
    assert isinstance(app(), pn.template.FastListTemplate)


def test_recompute_time_is_measured(record_property, default):
    record_property("recompute_s_defaults", default.run.seconds)
    record_property("recompute_s_chosen_scheduler", default.run.main_seconds)
    record_property("recompute_s_other_schedulers", default.run.compare_seconds)
    dash = dashboard()
    dash.scheduler = "fifo"  # the other schedulers' runs are cached
    record_property("recompute_s_scheduler_only", dash.run.seconds)
    assert dash.run.compare_seconds == 0.0 and dash.run.main_seconds > 0
    assert list(dash.comparison()["scheduler"]) == list(SCHEDULERS)  # the cached ones are all still shown
    assert dash.run.jct["scheduler"].unique().tolist() == list(SCHEDULERS)
    assert dash.comparison().drop(columns="seconds").equals(default.comparison().drop(columns="seconds"))
    assert default.run.seconds > 0 and default.run.main_seconds > 0 and default.run.compare_seconds > 0


CHANGES = [
    ("scheduler", "fifo"),
    ("placer", "fgd"),
    ("racks", 4),
    ("nodes_per_rack", 3),
    ("gpus_per_node", 4),
    ("nvlink_domain", 2),
    ("mix", "sharing"),
    ("rate", 20.0),
    ("burstiness", 3.0),
    ("n_jobs", 60),
    ("priorities", 3),
    ("seed", 7),
    ("failure", "rack"),
    ("fail_index", 3),
    ("fail_at", 1.0),
    ("repair_after", 3.0),
    ("frame", 5),
]


@pytest.mark.parametrize(("name", "value"), CHANGES, ids=[c[0] for c in CHANGES])
def test_every_control_changes_what_is_shown(name, value):
    # The failure controls matter only with a failure on: a node that holds jobs at 0.5 h.
    dash = dashboard(failure="node", fail_index=0, fail_at=0.5, **SMALL)
    assert dash.errors == {}
    before = shown(dash)
    setattr(dash, name, value)
    assert dash.errors == {}, dash.errors
    assert shown(dash) != before
    for view in views(dash):
        hv.render(view())


def test_every_control_is_in_the_sidebar(default):
    names = {w.name for w in default.controls().select(pn.widgets.Widget)}
    labels = {default.param[name].label for name, _ in CHANGES if name != "frame"}
    assert labels <= names, labels - names


def test_stranded_cells_add_up_to_the_stranded_gpus_at_every_snapshot():
    for scheduler, mix, rate in (
        ("easy_backfill", "published", 25.0),
        ("greedy", "published", 25.0),
        ("fifo", "heavy8", 12.0),
    ):
        dash = dashboard(**{**PRESSURE, "scheduler": scheduler, "mix": mix, "rate": rate})
        assert dash.errors == {}
        seen = 0
        for f in dash.run.frames:
            c = cluster_at(dash.run.shape, f)
            mask = stranded_mask(c, f.queue)
            assert not (mask & ~(c.exists & (c.free > 0))).any()  # only GPUs with something free
            assert int(c.free[mask].sum()) == round(stranded_gpus(c, f.queue) * FULL_GPU)
            seen += int(mask.any())
        assert seen > 0, f"{scheduler}/{mix}: no snapshot had a stranded GPU; the check above tested nothing"


def test_gpu_map_marks_busy_free_and_stranded(default):
    for i, f in enumerate(default.run.frames):
        cells = default.gpu_map(i)
        assert len(cells) == default.racks * default.nodes_per_rack * default.gpus_per_node
        assert ((cells["job"] >= 0) == (cells["state"] == "busy")).all()
        assert (cells["job"].to_numpy() == f.owners[cells["node"], cells["gpu"]]).all()
    states = {s for i in range(len(default.run.frames)) for s in default.gpu_map(i)["state"]}
    assert {"busy", "free", "stranded", "reserved"} <= states


def test_reserved_nodes_are_those_a_reserving_scheduler_held():
    fifo = dashboard(scheduler="fifo", **PRESSURE)
    assert fifo.errors == {} and any(f.queue for f in fifo.run.frames)
    assert not any(f.reserved.any() for f in fifo.run.frames)
    for name in ("reservation", "easy_backfill", "conservative_backfill"):
        dash = dashboard(scheduler=name, **PRESSURE)
        assert dash.errors == {}
        held = [f for f in dash.run.frames if f.reserved.any()]
        assert held, f"{name} never held a node for a blocked job"
        assert all(f.queue for f in held)  # only while somebody waits


def test_a_rack_failure_shows_the_rack_down_until_repaired():
    dash = dashboard(failure="rack", fail_index=0, fail_at=1.0, repair_after=2.0, **SMALL)
    assert dash.errors == {}
    racks = np.repeat(np.arange(dash.racks), dash.nodes_per_rack)
    for i, f in enumerate(dash.run.frames):
        during = 3600.0 <= f.t < 3 * 3600.0
        assert (~f.alive == ((racks == 0) & during)).all(), f.t
        down = dash.gpu_map(i)["state"] == "down"
        assert down.sum() == (dash.nodes_per_rack * dash.gpus_per_node if during else 0)
    assert dash.run.failure == Failure(3600.0, rack=0, repair_after=7200.0)  # the run's input, not injected
    table = dash.comparison()
    assert table["restarts"].sum() > 0 and table["lost_gpu_hours"].sum() > 0
    assert dash.param.fail_index.bounds == (0, dash.racks - 1)
    dash.failure = "node"
    assert dash.param.fail_index.bounds == (0, dash.racks * dash.nodes_per_rack - 1)


def test_step_button_and_player_move_through_time():
    dash = dashboard(**SMALL)
    start = dash.frame
    t0 = dash.current().t
    dash._step.clicks += 1  # what a click does
    assert dash.frame == start + 1 and dash.current().t > t0
    assert f"snapshot {start + 1} of" in dash.headline().object
    last = dash.param.frame.bounds[1]
    assert last == len(dash.run.frames) - 1 and dash._player.end == last
    dash.frame = last
    dash.step()
    assert dash.frame == last
    assert dash.current().t == dash.run.frames[-1].t


def student_fifo(view) -> None:
    """A student's FIFO: start jobs in order until one does not fit."""
    for job in view.queue:
        placement = view.place(job)
        if placement is None:
            return
        view.start(job, placement)


def test_student_scheduler_and_placer_appear_as_yours():
    dash = dashboard(scheduler=student_fifo, placer=first_fit, **SMALL)
    assert YOURS in dash.param.scheduler.objects and YOURS in dash.param.placer.objects
    assert dash.scheduler == YOURS and dash.placer == YOURS and dash.errors == {}
    table = dash.comparison().set_index("scheduler")
    assert YOURS in table.index
    # The student's FIFO with the reference first-fit behaves as the reference FIFO with it.
    assert table.loc[YOURS, "mean_jct_h"] == pytest.approx(table.loc["fifo", "mean_jct_h"])
    reference = dashboard(scheduler="fifo", placer="first_fit", **SMALL)
    assert dash.comparison().set_index("scheduler").loc["fifo", "mean_jct_h"] == pytest.approx(
        reference.comparison().set_index("scheduler").loc["fifo", "mean_jct_h"]
    )


def test_without_student_code_there_is_no_yours(default):
    assert YOURS not in default.param.scheduler.objects and YOURS not in default.param.placer.objects
    with pytest.raises(ValueError):
        default.scheduler = YOURS


def test_student_scheduler_that_raises_shows_the_error_and_keeps_the_rest():
    def broken(view) -> None:
        if view.queue:
            raise ZeroDivisionError("oops")

    dash = dashboard(scheduler=broken, **SMALL)
    assert "ZeroDivisionError" in dash.errors[YOURS] and "in broken" in dash.errors[YOURS]
    assert set(dash.comparison()["scheduler"]) == set(SCHEDULERS)  # the others still ran
    alert = dash.error_view()
    assert alert.visible and "ZeroDivisionError" in alert.object
    for view in views(dash):
        hv.render(view())
    pn.panel(dash).get_root()
    dash.scheduler = "fifo"
    assert dash.run.result is not None and "fifo" not in dash.errors


def test_student_placer_that_double_books_shows_the_error():
    def greedy_slot(cluster, job, exclude=None):
        return tuple((0, g, job.gpu_milli) for g in range(job.num_gpus)) or None

    dash = dashboard(placer=greedy_slot, **SMALL)
    assert "PlacementError" in dash.errors["easy_backfill"]
    assert dash.run.result is None and not dash.run.frames
    for view in views(dash):
        hv.render(view())
    assert "see the error" in dash.headline().object


def test_student_scheduler_that_starts_nothing_is_stopped_not_hung():
    dash = dashboard(scheduler=lambda view: None, **SMALL)
    assert "still waiting" in dash.errors[YOURS]
    assert dash.run.frames and dash.run.frames[-1].queue  # shown as it was when stopped


def test_bad_settings_show_an_error_instead_of_crashing():
    dash = dashboard(gpus_per_node=4, nvlink_domain=8, **SMALL)
    assert "nvlink_domain must divide" in dash.errors["settings"]
    for view in views(dash):
        hv.render(view())
    pn.panel(dash).get_root()
    dash.nvlink_domain = 4
    assert dash.errors == {} and dash.run.frames
    overloaded = dashboard(**{**SMALL, "racks": 1, "nodes_per_rack": 1, "rate": 120.0, "mix": "heavy8"})
    assert "lower the arrival rate" in overloaded.errors["settings"]


def test_settings_are_bounded():
    for bad in ({"racks": 10}, {"n_jobs": 5000}, {"rate": 0.0}, {"gpus_per_node": 3}):
        with pytest.raises(ValueError):
            dashboard(**bad)


def test_the_reference_plugins_run_as_yours_and_match_the_built_in_ones():
    assert {name: p.reference for name, p in Dashboard.plugins.items()} == {
        "scheduler": easy_backfill,
        "placer": best_fit,
    }
    dash = dashboard(**{name: p.reference for name, p in Dashboard.plugins.items()}, **SMALL)
    assert dash.errors == {} and dash.scheduler == YOURS and dash.placer == YOURS
    table = dash.comparison().drop(columns="seconds").set_index("scheduler")
    assert table.loc[YOURS].equals(table.loc["easy_backfill"])


def test_headline_says_over_what_utilisation_is_measured(default):
    row = default.comparison().set_index("scheduler").loc[default.scheduler]
    text = default.headline().object
    assert f"GPU utilisation **{row['arrival_utilisation_pct']:.0f} % while jobs arrive**" in text
    assert f"{row['makespan_utilisation_pct']:.0f} % over the whole {row['makespan_h']:.1f} h run" in text
    # The drain after the last arrival is what made the makespan figure low.
    assert row["arrival_utilisation_pct"] > row["makespan_utilisation_pct"] + 10


def test_table_headers_are_whole_and_carry_units(default):
    table = default.comparison_table()
    assert list(table.value.columns) == list(TITLES) and table.titles == TITLES
    for column, title in TITLES.items():
        assert title.replace("\u00ad", "") == COMPARE_LABELS[column]
        assert column in ("scheduler", "done", "restarts") or title.endswith(")"), title
    # The ratios plot draws the table's percent, not shares of 1.
    ratios = hv.render(default.ratios_plot())
    assert "%" in ratios.yaxis[0].axis_label


def test_every_busy_gpu_is_labelled_with_its_job_id(default):
    busy = default.gpu_map().query("job >= 0")
    assert len(busy) > 0
    labels = [e for e in default.heatmap_plot().traverse(lambda e: e, [hv.Labels])]
    assert len(labels) == 2  # white ids on dark colours, dark ids on light ones
    assert sorted(pd.concat([e.dframe() for e in labels])["label"]) == sorted(busy["job"].astype(str))
    # More jobs run at once than there are colours, which is why the label is there.
    most = max(default.gpu_map(i).query("job >= 0")["job"].nunique() for i in range(len(default.run.frames)))
    assert most > len(JOB_COLORS)
