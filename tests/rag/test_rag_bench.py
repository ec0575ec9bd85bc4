"""`syslab bench rag --quick`: the documented JSON schema, every part present with its baseline and target.

The run writes to a temporary folder (``SYSLAB_BENCH_RESULTS``) and a temporary embedding cache
(``SYSLAB_CACHE``), so neither the committed results nor a developer's cache are touched. SciFact
comes from the shared data folder: without it the run skips (and fails under ``CI=true``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, assert_bench_record, assert_bench_table, need

SYSLAB = str(Path(sys.executable).with_name("syslab"))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, shared_data) -> tuple[subprocess.CompletedProcess, dict]:
    need("tesseract", "the demo corpus has an image to OCR")
    out = tmp_path_factory.mktemp("bench-results")
    env = {
        **os.environ,
        "SYSLAB_BENCH_RESULTS": str(out),
        "SYSLAB_DATA": str(shared_data),
        "SYSLAB_CACHE": str(out / "cache"),
    }
    proc = subprocess.run(
        [SYSLAB, "bench", "rag", "--quick"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=500
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return proc, json.loads((out / "rag.json").read_text())


def _named(record: dict, *words: str) -> list[dict]:
    return [f for f in record["figures"] if all(w in f["name"] for w in words)]


@pytest.mark.slow
def test_quick_run_writes_the_documented_schema_and_table(quick_run):
    proc, record = quick_run
    assert_bench_record(record, "rag", redis_server=False)
    assert_bench_table(proc.stdout, record, "rag")
    assert "SciFact" in record["machine"]["data"] and "30 queries" in record["machine"]["data"]


@pytest.mark.slow
def test_quick_run_has_quality_figures_against_their_baselines(quick_run):
    _, record = quick_run
    ndcg = {f["name"]: f for f in _named(record, "SciFact nDCG@10")}
    assert len(ndcg) == 6 and all(0 < f["value"] <= 1 for f in ndcg.values())
    hybrid = ndcg["SciFact nDCG@10, hybrid (RRF)"]
    assert hybrid["baseline"].startswith("best single retriever") and hybrid["target"] == "ratio >= 1"
    assert hybrid["baseline_value"] == max(
        ndcg["SciFact nDCG@10, BM25"]["value"], ndcg["SciFact nDCG@10, dense (MiniLM)"]["value"]
    )
    rerank = ndcg["SciFact nDCG@10, hybrid + rerank (5-fold CV)"]
    assert rerank["baseline_value"] == hybrid["value"] and rerank["target"] == "ratio >= 1"
    assert len(_named(record, "SciFact Recall@100")) == 3


@pytest.mark.slow
def test_quick_run_has_latency_ann_ingestion_and_answer_figures(quick_run):
    _, record = quick_run
    p50 = _named(record, "hybrid retrieval p50")[0]
    assert p50["unit"] == "ms" and p50["value"] > 0 and p50["target"] == "value < 50"
    stages = {f["name"].split()[1] for f in _named(record, "stage ")}
    assert stages == {"embed", "bm25", "dense", "fuse", "rerank"}
    recalls = _named(record, "recall@10 vs exact")
    assert len(recalls) == 5 and all(0 <= f["value"] <= 1 for f in recalls)
    assert [f["target"] for f in recalls if f["target"]] == ["value >= 0.95", "value >= 0.95"]
    cache = _named(record, "re-ingestion through the content-hash cache")[0]
    assert cache["baseline"] == "MiniLM forward pass" and cache["ratio"] > 1
    support = _named(record, "citation support rate")[0]
    assert support["value"] == 1.0 and support["met"]
