"""`syslab bench cluster --quick`: the documented JSON schema, every part present with its baseline and target.

The run goes to a temporary folder (``SYSLAB_BENCH_RESULTS``) so the committed results are never
overwritten. Until ``cluster`` is registered in ``lab_core.labs`` the benchmark is run through
``run_benchmark`` with the lab's catalogue entry spelled out here. The openb part reads the
shared data folder, so the run skips without it (and fails under ``CI=true``, like every
``shared_data`` test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, assert_bench_record, assert_bench_table

RUN = (
    "import sys\n"
    "from lab_core.bench import run_benchmark\n"
    "from lab_core.labs import LABS, Lab\n"
    "lab = LABS.get('cluster') or Lab('cluster', '09_gpu_scheduler', 'gpu_scheduler.ipynb', 'GPU cluster scheduler')\n"
    "sys.exit(run_benchmark(lab, quick=True))\n"
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, shared_data) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path_factory.mktemp("bench-results")
    env = {**os.environ, "SYSLAB_BENCH_RESULTS": str(out), "SYSLAB_DATA": str(shared_data)}
    proc = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, env=env, cwd=ROOT, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads((out / "cluster.json").read_text())


def _named(record: dict, *words: str) -> list[dict]:
    return [f for f in record["figures"] if all(w in f["name"] for w in words)]


@pytest.mark.slow
def test_quick_run_writes_the_documented_schema(quick_run):
    _, record = quick_run
    assert_bench_record(record, "cluster", redis_server=False)


@pytest.mark.slow
def test_quick_run_has_the_openb_placement_figures(quick_run):
    _, record = quick_run
    openb = _named(record, "openb pods", "1-in-4 sample")
    fgd = [f for f in openb if f["name"].startswith("FGD")]
    assert len(fgd) == 6
    unallocated = [f for f in fgd if f["unit"] == "% of GPUs"]
    assert len(unallocated) == 2 and all(f["target"] == "ratio <= 1" for f in unallocated)
    assert all(f["baseline"].split()[0] in ("first_fit", "best_fit") for f in fgd)
    assert all(0 <= f["value"] <= 100 and 0 <= f["baseline_value"] <= 100 for f in unallocated)
    assert any("Weng et al. ATC'23" in f["name"] for f in fgd)
    frag = [f for f in fgd if f["unit"] == "fragment / free"]
    assert len(frag) == 2 and all(0 <= f["value"] <= 1 for f in frag)
    placed = _named(record, "FGD pods placed before the first pod with no place")
    assert len(placed) == 1 and placed[0]["value"] > 0
    machine = record["machine"]["cluster_openb"]
    assert machine["skipped_pods"] and machine["skipped_pods"][0].startswith("row 7286")
    assert len(_named(record, "best_fit", "openb pods")) == 3


@pytest.mark.slow
def test_quick_run_has_the_queue_policy_figures(quick_run):
    _, record = quick_run
    heavy = _named(record, "heavy8 jobs")
    assert {f["name"].split()[0] for f in heavy} == {"reservation", "easy_backfill", "defrag"}
    assert len(heavy) == 9 and all(f["baseline"] == "fifo" for f in heavy)
    assert all(f["baseline_value"] > 0 for f in heavy if f["unit"] in ("h", "%"))
    targeted = [(f["name"].split(" (")[0], f["target"]) for f in heavy if f["target"] is not None]
    assert targeted == [("easy_backfill mean JCT", "ratio <= 1")]
    assert all(0 < f["value"] <= 100 for f in heavy if f["unit"] == "%")
    assert record["machine"]["cluster_heavy8"]["defrag"]["migrations"] > 0


@pytest.mark.slow
def test_quick_run_has_the_simulator_speed_figures(quick_run):
    _, record = quick_run
    speed = _named(record, "8,000-job synthetic trace")
    wall = [f for f in speed if f["unit"] == "s"]
    assert len(wall) == 2 and {f["name"].split(", ")[-2] for f in wall} == {"~70 % load", "~95 % load"}
    assert all(f["target"] == "value <= 6" and f["baseline"].startswith("fifo + first_fit") for f in wall)
    rate = [f for f in speed if f["unit"] == "jobs/s"]
    assert len(rate) == 2
    for w, r in zip(wall, rate):
        assert r["value"] == pytest.approx(8000 / w["value"])
        assert r["baseline_value"] == pytest.approx(8000 / w["baseline_value"])


@pytest.mark.slow
def test_quick_run_prints_the_table(quick_run):
    proc, record = quick_run
    assert_bench_table(proc.stdout, record, "cluster")


@pytest.mark.slow
def test_quick_run_has_the_calibrated_migration_figures(quick_run):
    _, record = quick_run
    migration = _named(record, "migration of a", "measured checkpoint")
    assert len(migration) == 2 and all(f["unit"] == "s" and f["value"] > 30 for f in migration)  # at least the restart
    assert all(
        f["baseline"].startswith("SimConfig.migration_seconds") and f["baseline_value"] == 120 for f in migration
    )
    assert record["machine"]["cluster_checkpoint"]["write_MBps"] > 0
