"""`syslab bench training --quick`: the documented JSON schema, every part present, and the two figures that
are correctness, not timing (fp32 gradient parity, resume exactness), met.

The run goes to a temporary folder (``SYSLAB_BENCH_RESULTS``) so the committed results are never
overwritten. Timings are never asserted on: the async-checkpoint and throughput figures are checked for
shape only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, assert_bench_record, assert_bench_table

RUN = (
    "import sys\n"
    "from lab_core.bench import run_benchmark\n"
    "from lab_core.labs import get_lab\n"
    "sys.exit(run_benchmark(get_lab('training'), quick=True))\n"
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path_factory.mktemp("bench-results")
    env = {**os.environ, "SYSLAB_BENCH_RESULTS": str(out)}
    proc = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, env=env, cwd=ROOT, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads((out / "training.json").read_text())


def _named(record: dict, *words: str) -> list[dict]:
    return [f for f in record["figures"] if all(w in f["name"] for w in words)]


@pytest.mark.slow
def test_quick_run_writes_the_documented_schema_and_table(quick_run):
    proc, record = quick_run
    assert_bench_record(record, "training", redis_server=False)
    assert_bench_table(proc.stdout, record, "training")


@pytest.mark.slow
def test_fp32_gradient_parity_is_met_for_every_strategy(quick_run):
    _, record = quick_run
    parity = _named(record, "gradient parity")
    assert [f["name"].split()[2] for f in parity] == ["DDP", "FSDP2", "TP", "PP"]
    assert all("fp32" in f["name"] for f in parity), "quick mode measures fp32 only"
    for f in parity:
        assert f["target"] == "value <= 1e-05" and f["met"] is True, f
        assert f["baseline"].startswith("one process") and f["baseline_value"] is None
    assert set(record["machine"]["training_parity"]) == {"ddp", "fsdp", "tp", "pp"}


@pytest.mark.slow
def test_resume_after_a_crash_reproduces_the_uninterrupted_losses(quick_run):
    _, record = quick_run
    (resume,) = _named(record, "resume exactness")
    assert resume["target"] == "value <= 0" and resume["met"] is True and resume["value"] == 0
    note = record["machine"]["training_resume"]
    assert note["worker_failures_logged"] >= 1, "the injected crash must really have happened"
    assert note["loss_resumed"] == note["loss_uninterrupted"] and len(note["loss_resumed"]) >= 2


@pytest.mark.slow
def test_checkpoint_figures_have_their_baselines_and_sizes(quick_run):
    _, record = quick_run
    (blocked,) = _named(record, "training thread blocked per save, async")
    assert blocked["unit"] == "ms" and blocked["target"] == "ratio < 0.2"
    assert blocked["value"] > 0 and blocked["baseline"].startswith("synchronous save")
    (weights,) = _named(record, "checkpoint bytes on disk vs the fp32 weights")
    assert 2.95 <= weights["ratio"] <= 3.1, "weights + Adam m + v, plus small RNG and trainer files"
    (calc,) = _named(record, "checkpoint bytes on disk vs calculators.checkpoint_bytes")
    assert calc["ratio"] == pytest.approx(1.0, abs=0.03)


@pytest.mark.slow
def test_throughput_and_gpu_parts(quick_run):
    _, record = quick_run
    (ddp,) = _named(record, "training tokens/s, DDP on 2 CPU processes")
    assert ddp["value"] > 0 and ddp["baseline_value"] > 0 and "global batch 16" in ddp["name"]
    assert not _named(record, "FSDP2 on 2 CPU"), "quick mode leaves out FSDP/TP/PP throughput"
    if torch.cuda.is_available():
        assert _named(record, "GPU model FLOP/s") or "unknown" in record["machine"]["gpu_mfu"]
    else:
        assert not _named(record, "GPU") and "no CUDA" in record["machine"]["gpu_mfu"]
