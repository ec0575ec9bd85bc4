"""`syslab bench feed --quick`: the documented JSON schema, ratios that are value / baseline, every part present.

The run goes to a temporary folder (``SYSLAB_BENCH_RESULTS``) so the committed results are never
overwritten. Until ``feed`` is registered in ``lab_core.labs`` the benchmark is run through
``run_benchmark`` with the lab's catalogue entry spelled out here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, assert_bench_record, assert_bench_table, need

RUN = (
    "import sys\n"
    "from lab_core.bench import run_benchmark\n"
    "from lab_core.labs import LABS, Lab\n"
    "lab = LABS.get('feed') or Lab('feed', '03_feed', 'feed.ipynb', 'News feed')\n"
    "sys.exit(run_benchmark(lab, quick=True))\n"
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    need("redis-server", "the feed benchmark calibrates against a real redis-server")
    out = tmp_path_factory.mktemp("bench-results")
    env = {**os.environ, "SYSLAB_BENCH_RESULTS": str(out)}
    env.pop("REDIS_URL", None)
    proc = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads((out / "feed.json").read_text())


@pytest.mark.slow
@pytest.mark.redis_server
def test_quick_run_writes_the_documented_schema(quick_run):
    _, record = quick_run
    assert_bench_record(record, "feed")


def _named(record: dict, *words: str) -> list[dict]:
    return [f for f in record["figures"] if all(w in f["name"] for w in words)]


@pytest.mark.slow
@pytest.mark.redis_server
def test_quick_run_has_every_part_of_issue_7(quick_run):
    _, record = quick_run
    # (1) strategies at scale, from the simulator, with the issue's targets
    sim = _named(record, "simulated", "celebrity-heavy", "50:1")
    writes = [f for f in sim if f["name"].startswith("hybrid") and f["unit"] == "writes/post"]
    p99 = [f for f in sim if f["name"].startswith("hybrid read p99")]
    assert len(writes) == 1 and writes[0]["target"] == "ratio <= 0.1" and writes[0]["baseline"].startswith("push")
    assert len(p99) == 1 and p99[0]["target"] == "ratio <= 2" and p99[0]["baseline"] == "push read p99"
    assert len([f for f in sim if f["name"].startswith("pull")]) == 2
    assert _named(record, "pull fan-out writes")[0]["value"] == 0
    # (2) HTTP reads against the direct service call, on both stores
    http = [f for f in record["figures"] if f["unit"] == "reads/s"]
    assert {f["name"].rsplit(", ", 1)[1] for f in http} == {"real Redis", "fakeredis"}
    assert all(f["baseline"].startswith("FeedService.read directly") and f["value"] > 0 for f in http)
    # (3) ranker quality against recency
    ranker = _named(record, "ranker")
    assert {f["unit"] for f in ranker} == {"AUC", "NDCG@10"}
    assert all(f["target"] == "ratio >= 1" and f["baseline"].startswith("recency") for f in ranker)
    # (4) calibration next to the assumed defaults, and the simulator checked against the real system
    calibrated = _named(record, "calibrated:")
    assert len(calibrated) == 5 and all(f["baseline"].startswith("CostModel default") for f in calibrated)
    assert all(f["value"] > 0 for f in calibrated if "per-celebrity" not in f["name"])
    count = _named(record, "fan-out writes per post vs real system")
    assert len(count) == 1 and count[0]["value"] == count[0]["baseline_value"]  # a count: exact
    errors = [f for f in record["figures"] if f["unit"] == "%"]
    assert len(errors) == 2 and all(f["target"] == "value <= 50" for f in errors)


@pytest.mark.slow
@pytest.mark.redis_server
def test_quick_run_prints_the_table(quick_run):
    proc, record = quick_run
    assert_bench_table(proc.stdout, record, "feed")
