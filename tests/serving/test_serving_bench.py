"""`syslab bench serving --quick`: the documented JSON schema, every part present with its baseline and target.

The run goes to a temporary folder (``SYSLAB_BENCH_RESULTS``) so the committed results are never
overwritten. Until ``serving`` is registered in ``lab_core.labs`` the benchmark is run through
``run_benchmark`` with the lab's catalogue entry spelled out here. Only the shape of the record
is checked: targets met or missed are results, and timings are never asserted on.
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
    "lab = LABS.get('serving') or Lab('serving', '07_llm_serving', 'llm_serving.ipynb', 'LLM inference serving')\n"
    "sys.exit(run_benchmark(lab, quick=True))\n"
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path_factory.mktemp("bench-results")
    env = {**os.environ, "SYSLAB_BENCH_RESULTS": str(out)}
    proc = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, env=env, cwd=ROOT, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads((out / "serving.json").read_text())


def _named(record: dict, *words: str) -> list[dict]:
    return [f for f in record["figures"] if all(w in f["name"] for w in words)]


@pytest.mark.slow
def test_quick_run_writes_the_documented_schema(quick_run):
    _, record = quick_run
    assert_bench_record(record, "serving", redis_server=False)
    assert record["machine"]["serving_torch_threads"] == 1


@pytest.mark.slow
def test_quick_run_prints_the_table(quick_run):
    proc, record = quick_run
    assert_bench_table(proc.stdout, record, "serving")


@pytest.mark.slow
def test_quick_run_has_the_batching_figures(quick_run):
    _, record = quick_run
    seq = _named(record, "engine output tokens/s vs one at a time")
    assert len(seq) == 1 and seq[0]["target"] == "ratio >= 5" and seq[0]["baseline"].startswith("generate_sequential")
    static = _named(record, "engine output tokens/s vs static batching")
    assert len(static) == 1 and static[0]["baseline"].startswith("generate_static")
    assert all(f["value"] > 0 and f["baseline_value"] > 0 for f in seq + static)


@pytest.mark.slow
def test_quick_run_has_latency_gateway_and_simulator_figures(quick_run):
    _, record = quick_run
    latency = [f["name"].split(" (")[0] for f in _named(record, "req/s Poisson")]
    assert latency == ["TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99"]
    gateway = _named(record, "gateway overhead per request")
    assert len(gateway) == 1 and gateway[0]["unit"] == "ms" and gateway[0]["target"] == "value < 2"
    speed = _named(record, "simulator wall time")
    assert len(speed) == 1 and speed[0]["baseline_value"] == 60 and speed[0]["value"] > 0
    errors = _named(record, "simulator vs real engine")
    assert [f["name"].split("|error| of ")[1].split(" (")[0] for f in errors] == ["throughput", "TTFT p50", "TPOT p50"]
    assert all(f["target"] == "value <= 20" and f["value"] >= 0 for f in errors)
    assert set(record["machine"]["serving_validation"]) == {"throughput (tok/s)", "TTFT p50 (s)", "TPOT p50 (s)"}


@pytest.mark.slow
def test_quick_run_has_the_prefix_caching_figures_and_skips_disaggregation(quick_run):
    _, record = quick_run
    prefix = _named(record, "prefix caching on")
    assert len(prefix) == 2 and all(f["baseline"] == "prefix caching off" for f in prefix)
    tokens = next(f for f in prefix if f["unit"] == "tokens")
    assert tokens["value"] < tokens["baseline_value"]  # a count, not a timing
    assert not _named(record, "disaggregated")
    assert "skipped" in record["machine"]["serving_disagg"]
