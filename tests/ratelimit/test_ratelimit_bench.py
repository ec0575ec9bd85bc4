"""Lab 01's benchmark, quick: `syslab bench ratelimit --quick` writes the documented record and table."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_bench_record, assert_bench_table, need
from lab_core.ratelimit import REDIS_ALGORITHMS

SYSLAB = str(Path(sys.executable).with_name("syslab"))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    need("redis-server", "the rate-limiter benchmark measures against a real redis-server")
    out = tmp_path_factory.mktemp("bench-results")
    env = {**os.environ, "SYSLAB_BENCH_RESULTS": str(out)}
    proc = subprocess.run(
        [SYSLAB, "bench", "ratelimit", "--quick"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads((out / "ratelimit.json").read_text())


@pytest.mark.slow
@pytest.mark.redis_server
def test_quick_run_writes_the_documented_schema(quick_run):
    _, record = quick_run
    assert_bench_record(record, "ratelimit")


@pytest.mark.slow
@pytest.mark.redis_server
def test_quick_run_covers_every_algorithm_against_limits(quick_run):
    _, record = quick_run
    figures = record["figures"]
    throughput = [f for f in figures if f["unit"] == "decisions/s"]
    pairs = {
        "fixed_window": "FixedWindow",
        "sliding_window_log": "MovingWindow",
        "sliding_window_counter": "SlidingWindowCounter",
    }
    for algorithm in REDIS_ALGORITHMS:
        mine = [f for f in throughput if f["name"].startswith(f"{algorithm} ")]
        with_headers = [f for f in mine if "with header data" in f["name"]]
        # one hot key and many keys; the three with a limits equivalent also against hit + get_window_stats
        assert len(mine) == (4 if algorithm in pairs else 2), (algorithm, [f["name"] for f in mine])
        assert len(with_headers) == (2 if algorithm in pairs else 0), (algorithm, [f["name"] for f in mine])
        assert all(f["baseline"].endswith("get_window_stats") for f in with_headers)
        assert all(f["baseline"].startswith("limits ") for f in mine)
        # the target (ratio >= 1.0) applies where limits has the same algorithm
        assert all((f["target"] == "ratio >= 1") == (algorithm in pairs) for f in mine), mine
    for ours, theirs in pairs.items():
        assert all(theirs in f["baseline"] for f in throughput if f["name"].startswith(f"{ours} "))
    error = [f for f in figures if f["unit"] == "% of requests"]
    assert {("allowed" in f["name"], "Cloudflare" in f["name"]) for f in error} == {
        (True, True),
        (False, True),
        (True, False),
        (False, False),
    }
    latency = [f for f in figures if f["unit"] == "us"]
    assert len(latency) == 4 and {f["name"].split(",")[0] for f in latency} == {
        "middleware added p50",
        "middleware added p99",
    }
    assert all(f["baseline_value"] > 0 and math.isfinite(f["value"]) for f in latency), latency


@pytest.mark.slow
@pytest.mark.redis_server
def test_quick_run_prints_the_table(quick_run):
    proc, record = quick_run
    assert_bench_table(proc.stdout, record, "ratelimit")
