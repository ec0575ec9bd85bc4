"""Trace files: the lab's CSV schema (round trip, every kind of bad row), the shipped demo trace,
and the Alibaba openb trace (hand-written files here, the real one from the shared data folder)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from lab_core.cluster import FGD, Job, Workload, best_fit
from lab_core.cluster.synthetic import synthetic
from lab_core.cluster.traces import (
    DEMO_TRACE,
    TraceError,
    demo_jobs,
    load_csv,
    load_openb,
    openb_cluster,
    save_csv,
    write_demo_trace,
)
from lab_core.labs import data_dir

HEADER = "submit_time,duration,num_gpus,gpu_milli\n"


def fields(jobs: list[Job]) -> list[dict]:
    """Every field of each job (Job compares by identity, so traces are compared field by field)."""
    return [asdict(j) for j in jobs]


def write(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- round trip


def test_save_then_load_gives_equal_jobs(tmp_path):
    jobs = synthetic(200, mix="sharing", seed=3, overestimate=2.5, priorities=3)
    jobs[0].gpu_type = "A100"
    jobs[1].checkpoint_interval = None
    jobs[2].name = "needs, quoting"
    jobs[3].priority = -2
    jobs.append(Job(id=999, submit=0.125, duration=1 / 3, num_gpus=0, cpu_milli=1500, memory_mib=2048, tenant="cpu"))
    path = save_csv(jobs, tmp_path / "out" / "t.csv")
    load = load_csv(path)
    assert load.skipped == []
    assert fields(load.jobs) == fields(jobs)  # every field, floats to the last bit


def test_optional_columns_take_documented_defaults_and_unknown_columns_are_ignored(tmp_path):
    path = write(tmp_path, "num_gpus,duration,submit_time,colour\n2,60,5,blue\n0,30,6,\n")
    a, b = load_csv(path).jobs
    assert (a.id, a.submit, a.duration, a.num_gpus, a.gpu_milli) == (0, 5.0, 60.0, 2, 1000)
    assert (a.cpu_milli, a.memory_mib, a.priority, a.tenant, a.gpu_type) == (0, 0, 0, "default", None)
    assert a.checkpoint_interval is None and a.estimate == 60.0 and a.name == ""
    assert (b.id, b.num_gpus, b.gpu_milli) == (1, 0, 0)


def test_whole_numbers_written_as_floats_are_accepted(tmp_path):
    job = load_csv(write(tmp_path, HEADER + "0,10,8.0,1000.0\n")).jobs[0]
    assert job.num_gpus == 8 and isinstance(job.num_gpus, int) and job.gpu_milli == 1000


# ----------------------------------------------------------------------------- bad rows

BAD_ROWS = [
    ("0,,1,1000", "row 2: duration is missing"),
    (",10,1,1000", "row 2: submit_time is missing"),
    ("-1,10,1,1000", "row 2: submit_time must be >= 0"),
    ("0,-10,1,1000", "row 2: duration must be > 0"),
    ("0,0,1,1000", "row 2: duration must be > 0"),
    ("0,ten,1,1000", "row 2: duration is not a number: 'ten'"),
    ("0,10,-1,1000", "row 2: num_gpus must be >= 0"),
    ("0,10,1.5,1000", "row 2: num_gpus must be a whole number"),
    ("0,10,two,1000", "row 2: num_gpus is not a number"),
    ("0,10,1,1500", "row 2: gpu_milli must be a whole number in 0..1000"),  # JobError
    ("0,10,2,500", "row 2: a job with num_gpus=2 must use whole GPUs"),  # JobError
    ("0,nan,1,1000", "row 2: duration must be finite"),
    ("0,10,1,1000,extra", "row 2: has 5 cells, the header has 4"),
]


@pytest.mark.parametrize("line,message", BAD_ROWS)
def test_a_bad_row_raises_naming_its_row_and_field(tmp_path, line, message):
    path = write(tmp_path, HEADER + "0,10,1,1000\n" + line + "\n0,10,1,1000\n")
    with pytest.raises(TraceError) as info:
        load_csv(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("line,message", BAD_ROWS)
def test_skip_bad_skips_the_row_and_reports_it(tmp_path, line, message):
    path = write(tmp_path, HEADER + "0,10,1,1000\n" + line + "\n7,10,1,1000\n")
    load = load_csv(path, skip_bad=True)
    assert [j.submit for j in load.jobs] == [0.0, 7.0]
    assert len(load.skipped) == 1 and load.skipped[0].startswith(message)


def test_skip_bad_counts_every_bad_row(tmp_path):
    lines = ["0,10,1,1000", "0,,1,1000", "1,10,1,1000", "2,10,2,500", "x,10,1,1000", "3,10,1,250"]
    load = load_csv(write(tmp_path, HEADER + "\n".join(lines) + "\n"), skip_bad=True)
    assert len(load.jobs) == 3 and [j.id for j in load.jobs] == [0, 2, 5]
    assert [m.split(":")[0] for m in load.skipped] == ["row 2", "row 4", "row 5"]


def test_optional_fields_are_checked_too(tmp_path):
    text = "submit_time,duration,num_gpus,cpu_milli,checkpoint_interval,estimate,tenant\n"
    rows = ["0,10,1,-5,,,a", "0,10,1,0,0,,a", "0,10,1,0,,-1,a", "0,10,1,0,,,"]
    load = load_csv(write(tmp_path, text + "\n".join(rows) + "\n"), skip_bad=True)
    assert [m.split(":", 1)[1].strip().split()[0] for m in load.skipped] == [
        "cpu_milli",
        "checkpoint_interval",
        "estimate",
    ]
    assert load.jobs[0].tenant == "default"


def test_duplicate_ids_are_bad_rows(tmp_path):
    path = write(tmp_path, "id,submit_time,duration,num_gpus\n4,0,10,1\n5,0,10,1\n4,1,10,1\n")
    with pytest.raises(TraceError, match="row 3: id 4 is already used by row 1"):
        load_csv(path)


def test_a_missing_required_column_names_it(tmp_path):
    with pytest.raises(TraceError, match="missing required columns duration, num_gpus"):
        load_csv(write(tmp_path, "submit_time,gpu_milli\n0,1000\n"))
    with pytest.raises(TraceError, match="missing required column num_gpus$"):
        load_csv(write(tmp_path, "submit_time,duration\n0,1\n"))


def test_empty_and_absent_files_are_trace_errors(tmp_path):
    with pytest.raises(TraceError, match="empty file"):
        load_csv(write(tmp_path, ""))
    with pytest.raises(TraceError, match="cannot open"):
        load_csv(tmp_path / "nope.csv")
    assert load_csv(write(tmp_path, HEADER, "header_only.csv")).jobs == []


# ----------------------------------------------------------------------------- shipped demo trace


def test_shipped_demo_trace_is_what_the_generator_writes(tmp_path):
    fresh = write_demo_trace(tmp_path / "demo.csv")
    assert DEMO_TRACE.read_bytes() == fresh.read_bytes(), "regenerate with lab_core.cluster.traces.write_demo_trace()"
    assert fields(load_csv(DEMO_TRACE).jobs) == fields(demo_jobs())
    assert len(demo_jobs()) == 300


# ----------------------------------------------------------------------------- data folder


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SYSLAB_DATA", str(tmp_path))
    assert data_dir() == tmp_path
    monkeypatch.delenv("SYSLAB_DATA")
    assert data_dir() == Path(__file__).resolve().parents[2].parent / "shared" / "data"


# ----------------------------------------------------------------------------- openb, hand-written

POD_HEADER = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
)


def test_openb_pods_become_jobs_in_creation_order(tmp_path):
    pods = (
        POD_HEADER
        + "\n".join(
            [
                "p0,4000,8192,1,500,,LS,Running,100,160,100",
                "p1,2000,1024,0,0,,BE,Failed,50,70,",
                "p2,8000,4096,4,1000,V100M32,Burstable,Running,100,400,101",
                "p3,1000,1024,1,1000,V100M16|V100M32,LS,Running,10,20,10",
            ]
        )
        + "\n"
    )
    jobs = load_openb(write(tmp_path, pods)).jobs
    assert [j.name for j in jobs] == ["p3", "p1", "p0", "p2"]
    p3, p1, p0, p2 = jobs
    assert (p0.id, p0.submit, p0.duration, p0.num_gpus, p0.gpu_milli) == (0, 100.0, 60.0, 1, 500)
    assert (p0.cpu_milli, p0.memory_mib, p0.tenant, p0.gpu_type) == (4000, 8192, "LS", None)
    assert (p1.num_gpus, p1.gpu_milli, p1.tenant) == (0, 0, "BE")
    assert (p2.gpu_type, p2.num_gpus, p2.duration) == ("V100M32", 4, 300.0)
    assert p3.gpu_type is None  # several models accepted: no single type to require


def test_openb_bad_pods(tmp_path):
    pods = (
        POD_HEADER
        + "\n".join(
            [
                "ok,1000,1024,1,1000,,LS,Running,0,10,0",
                "zero,1000,1024,1,1000,,LS,Pending,5,5,",
                "back,1000,1024,1,1000,,LS,Running,9,3,",
                "share,1000,1024,2,500,,LS,Running,1,3,",
                "blank,,1024,1,1000,,LS,Running,1,3,",
            ]
        )
        + "\n"
    )
    path = write(tmp_path, pods)
    with pytest.raises(TraceError, match=r"row 2: lives 0 s \(deletion_time 5 <= creation_time 5\)"):
        load_openb(path)
    load = load_openb(path, skip_bad=True)
    assert [j.name for j in load.jobs] == ["ok"]
    assert [m.split(":")[0] for m in load.skipped] == ["row 2", "row 3", "row 4", "row 5"]
    assert "cpu_milli is missing" in load.skipped[3]
    with pytest.raises(TraceError, match="missing required column deletion_time"):
        load_openb(write(tmp_path, "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,creation_time\n", "p.csv"))


def test_openb_cluster_from_a_node_list(tmp_path):
    rows = [f"n{i},{32000 + i},{65536},{8 if i % 2 else 2},{'G2' if i % 2 else 'T4'}" for i in range(35)]
    rows.append("cpu,96000,131072,0,")
    cluster = openb_cluster(write(tmp_path, "sn,cpu_milli,memory_mib,gpu,model\n" + "\n".join(rows) + "\n"))
    assert cluster.num_nodes == 36 and cluster.total_gpus == 17 * 8 + 18 * 2
    assert cluster.rack.tolist() == [i // 16 for i in range(36)]
    assert cluster.nodes[1].gpu_type == "G2" and cluster.nodes[1].nvlink_domain == 8 and cluster.nodes[0].gpus == 2
    assert cluster.cpu_total[3] == 32003
    assert cluster.gpu_count[35] == 0 and not cluster.exists[35].any()
    cpu_pod = Job(id=0, submit=0, duration=1, num_gpus=0, cpu_milli=90000)
    assert best_fit(cluster, cpu_pod) == ((35, -1, 0),)
    assert (
        openb_cluster(
            write(tmp_path, "sn,cpu_milli,memory_mib,gpu,model\n" + "\n".join(rows) + "\n", "n.csv"), nodes_per_rack=4
        ).rack.max()
        == 8
    )


def test_openb_cluster_rejects_bad_node_lists(tmp_path):
    with pytest.raises(TraceError, match="missing required column model"):
        openb_cluster(write(tmp_path, "sn,cpu_milli,memory_mib,gpu\nn0,1,1,1\n"))
    with pytest.raises(TraceError, match="row 2: gpu is not a number"):
        openb_cluster(write(tmp_path, "sn,cpu_milli,memory_mib,gpu,model\nn0,1,1,1,T4\nn1,1,1,x,T4\n", "b.csv"))
    with pytest.raises(TraceError, match="row 1: model is missing"):
        openb_cluster(write(tmp_path, "sn,cpu_milli,memory_mib,gpu,model\nn0,1,1,4,\n", "c.csv"))
    with pytest.raises(TraceError, match="no nodes"):
        openb_cluster(write(tmp_path, "sn,cpu_milli,memory_mib,gpu,model\n", "d.csv"))


# ----------------------------------------------------------------------------- openb, the real trace


def test_real_openb_trace(shared_data):
    folder = shared_data / "openb"
    cluster = openb_cluster(folder / "openb_node_list_gpu_node.csv")
    assert cluster.num_nodes == 1213 and cluster.total_gpus == 6212
    assert set(cluster.gpu_type.tolist()) == {"G2", "T4", "P100", "V100M16", "G3", "V100M32", "A10"}
    path = folder / "openb_pod_list_default.csv"
    with pytest.raises(TraceError, match="row 7286: lives 0 s"):
        load_openb(path)  # one pod was deleted the second it was created
    load = load_openb(path, skip_bad=True)
    assert len(load.jobs) + len(load.skipped) == 8152
    assert len(load.jobs) == 8151 and load.skipped[0].startswith("row 7286:")
    jobs = load.jobs
    assert [j.submit for j in jobs] == sorted(j.submit for j in jobs)
    assert all(j.gpu_milli == 1000 for j in jobs if j.num_gpus > 1)
    assert sum(j.num_gpus == 0 for j in jobs) == 1088  # the skipped pod asked for a GPU
    workload = Workload.from_jobs(jobs)
    assert workload.popularity.sum() == pytest.approx(1.0)
    # The whole trace fits on the cluster's GPUs only barely: that is what makes it a fragmentation test.
    assert 0.9 < sum(j.gpus for j in jobs) / cluster.total_gpus < 1.0
    first = jobs[0]
    placement = FGD(workload)(cluster, first)
    cluster.allocate(first, placement)
    assert cluster.invariant_errors() == []


def test_real_openb_variant_with_gpu_specs(shared_data):
    load = load_openb(shared_data / "openb" / "openb_pod_list_gpuspec33.csv", skip_bad=True)
    types = {j.gpu_type for j in load.jobs}
    assert {"T4", "G2", "P100"} <= types and None in types
    assert not any(t and "|" in t for t in types)
