"""The training calculators against values worked out by hand from the papers' formulas, and their refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab_core.llm.config import ARCHITECTURES, get_config
from lab_core.training.calculators import (
    GB,
    STRATEGIES,
    MeshError,
    activation_bytes_per_layer,
    checkpoint_bytes,
    checkpoint_ratio,
    expected_overhead,
    interval_tradeoff,
    job_mtbf,
    memory_per_gpu,
    mesh_layout,
    validate_mesh,
    young_daly_interval,
    zero_memory,
)

PSI = 7_500_000_000  # the ZeRO paper's running example: 7.5B parameters, 64 GPUs, K = 12
LLAMA8B = ARCHITECTURES["8B"]


def test_zero_memory_reproduces_the_papers_7_5b_example() -> None:
    # Figure 1 of Rajbhandari et al.: 120 GB, 31.4 GB, 16.6 GB, 1.9 GB per GPU at Nd = 64.
    expected = [120.0, 31.4, 16.6, 1.9]
    got = [zero_memory(PSI, stage, 64) / GB for stage in range(4)]
    assert got == pytest.approx(expected, abs=0.06)
    assert zero_memory(PSI, 0, 64) == 16 * PSI
    assert zero_memory(PSI, 3, 64, k=8) == 12 * PSI / 64


def test_memory_per_gpu_matches_zero_for_the_data_parallel_strategies() -> None:
    for strategy, stage in (("ddp", 0), ("zero1", 1), ("zero2", 2), ("zero3", 3), ("fsdp", 3)):
        m = memory_per_gpu(PSI, strategy, dp=64)
        assert m.params + m.grads + m.optimizer == pytest.approx(zero_memory(PSI, stage, 64)), strategy
        assert m.activations == 0, "a bare parameter count has no shape for activations"
    m = memory_per_gpu(PSI, "fsdp+tp", dp=8, tp=8)
    assert m.total == pytest.approx(16 * PSI / 64)
    fp32 = memory_per_gpu(1000, "ddp", precision="fp32")
    assert (fp32.params, fp32.grads, fp32.optimizer) == (4000, 4000, 8000)


def test_the_parameter_split_counts_every_weight_once() -> None:
    cfg = get_config("1b")
    n = cfg.num_params()
    one = memory_per_gpu(cfg, "ddp", precision="fp32")
    assert one.params == 4 * n
    # Two stages of 11 layers; stage 0 also holds the embedding, stage 1 the head and final norm (the same size
    # plus dim). With equal activations on both (one micro-batch each) the last stage is the busiest.
    per_layer = (n - 2 * cfg.vocab_size * cfg.dim - cfg.dim) / cfg.n_layers
    pp = memory_per_gpu(cfg, "pp", pp=2, precision="fp32", microbatches_in_flight=1)
    assert pp.params == pytest.approx(4 * (11 * per_layer + cfg.vocab_size * cfg.dim + cfg.dim))
    # TP shards everything but the RMSNorm weights (2 per layer plus the final one), which stay whole.
    norms = (2 * cfg.n_layers + 1) * cfg.dim
    tp = memory_per_gpu(cfg, "tp", tp=4, precision="fp32")
    assert tp.params == pytest.approx(4 * ((n - norms) / 4 + norms))


def test_activations_follow_korthikanti() -> None:
    cfg = LLAMA8B
    s, b, h, a, layers = 4096, 2, 4096, 32, 32
    per_layer = s * b * h * (34 + 5 * a * s / h)
    assert activation_bytes_per_layer(cfg, micro_batch=b, seq_len=s) == per_layer
    assert activation_bytes_per_layer(cfg, micro_batch=b, seq_len=s, flash_attention=True) == s * b * h * 34
    assert activation_bytes_per_layer(cfg, micro_batch=b, seq_len=s, precision="fp32") == 2 * per_layer
    m = memory_per_gpu(cfg, "ddp", micro_batch=b, seq_len=s)
    assert m.activations == layers * per_layer
    # Full recompute keeps each layer's input, plus one layer's activations rebuilt during backward.
    ckpt = memory_per_gpu(cfg, "ddp", micro_batch=b, seq_len=s, activation_checkpointing=True)
    assert ckpt.activations == layers * 2 * s * b * h + per_layer
    assert memory_per_gpu(cfg, "tp", tp=8, micro_batch=b, seq_len=s).activations == layers * per_layer / 8
    # Sharding model state over dp leaves activations alone.
    assert memory_per_gpu(cfg, "fsdp", dp=64, micro_batch=b, seq_len=s).activations == m.activations


def test_pipeline_stages_hold_micro_batches_in_flight() -> None:
    cfg, s = LLAMA8B, 2048
    per_layer = activation_bytes_per_layer(cfg, micro_batch=1, seq_len=s)
    # 1F1B: the first stage (8 of 32 layers) holds pp = 4 micro-batches, as many as the whole model holds for one.
    one_f_one_b = memory_per_gpu(cfg, "pp", pp=4, seq_len=s)
    assert one_f_one_b.activations == 8 * 4 * per_layer
    gpipe = memory_per_gpu(cfg, "pp", pp=4, seq_len=s, microbatches_in_flight=16)
    assert gpipe.activations == 8 * 16 * per_layer
    # 1F1B's busiest GPU is the first stage (most activations); GPipe's the last (its final norm: dim bf16 weights).
    assert gpipe.params - one_f_one_b.params == 2 * cfg.dim


def test_the_8b_model_does_not_fit_ddp_on_an_h100_but_fits_fsdp_with_tp() -> None:
    kw = dict(seq_len=8192, activation_checkpointing=True)
    assert memory_per_gpu(LLAMA8B, "ddp", dp=8, **kw).total > 80 * GB
    assert memory_per_gpu(LLAMA8B, "fsdp+tp", dp=8, tp=2, **kw).total < 80 * GB
    totals = [memory_per_gpu(LLAMA8B, s, dp=8, **kw).total for s in ("ddp", "zero1", "zero2", "zero3")]
    assert totals == sorted(totals, reverse=True) and len(set(totals)) == 4


def test_memory_per_gpu_refuses_bad_settings_by_name() -> None:
    cfg = get_config("tiny")
    cases = [
        (dict(strategy="megatron"), "strategy"),
        (dict(strategy="ddp", tp=2), "tp must be 1"),
        (dict(strategy="fsdp", pp=2), "pp must be 1"),
        (dict(strategy="ddp", dp=0), "dp"),
        (dict(strategy="ddp", seq_len=0), "seq_len"),
        (dict(strategy="ddp", micro_batch=1.5), "micro_batch"),
        (dict(strategy="ddp", precision="fp8"), "precision"),
        (dict(strategy="tp", tp=4), "n_kv_heads 2"),
        (dict(strategy="pp", pp=3), "n_layers 2"),
        (dict(strategy="ddp", microbatches_in_flight=4), "microbatches_in_flight"),
    ]
    for kwargs, words in cases:
        strategy = kwargs.pop("strategy")
        with pytest.raises(ValueError, match=words):
            memory_per_gpu(cfg, strategy, **kwargs)
    with pytest.raises(ValueError, match="model"):
        memory_per_gpu(-5, "ddp")
    assert set(STRATEGIES) == {"ddp", "zero1", "zero2", "zero3", "fsdp", "tp", "pp", "fsdp+tp"}
    with pytest.raises(ValueError, match="stage"):
        zero_memory(PSI, 4, 8)


def test_checkpoint_size_is_three_times_the_fp32_model_for_adamw() -> None:
    cfg = get_config("100m")
    n = cfg.num_params()
    assert checkpoint_bytes(cfg) == 12 * n
    assert checkpoint_bytes(n, optimizer="sgd-momentum", param_bytes=2) == 4 * n
    assert checkpoint_ratio() == 3.0 and checkpoint_ratio(weights_bytes=2) == 6.0
    assert checkpoint_ratio(optimizer="none") == 1.0
    with pytest.raises(ValueError, match="optimizer"):
        checkpoint_bytes(cfg, optimizer="lion")


def test_young_daly_optimum_minimises_the_first_order_overhead() -> None:
    c, m = 60.0, 24 * 3600.0
    best = young_daly_interval(c, m)
    assert best == math.sqrt(2 * c * m)  # ~3220 s, 54 minutes
    # At the optimum the two losses are equal: C/tau = tau/(2M).
    assert expected_overhead(best, c, m) == pytest.approx(2 * c / best)
    table = interval_tradeoff(c, m, restart_s=300)
    assert list(table.columns) == ["interval_s", "checkpoint_overhead", "lost_work", "total"]
    i = int(table["total"].idxmin())
    assert table["interval_s"].iloc[i] == pytest.approx(best, rel=0.1), "restart time shifts nothing"
    assert np.allclose(table["total"], table["checkpoint_overhead"] + table["lost_work"])
    assert expected_overhead(100, c, m, restart_s=300) == pytest.approx(c / 100 + (50 + 300) / m)
    given = interval_tradeoff(c, m, intervals=[600, 3600])
    assert given["checkpoint_overhead"].tolist() == [0.1, c / 3600]


def test_a_bigger_job_fails_more_often_and_checkpoints_more_often() -> None:
    gpu = 5 * 365 * 24 * 3600.0  # a GPU failing once in five years
    job = job_mtbf(gpu, 16384)
    assert job == pytest.approx(gpu / 16384) and job < 3 * 3600, "a 16k-GPU job fails every couple of hours"
    assert young_daly_interval(60, job) < young_daly_interval(60, job_mtbf(gpu, 1024))
    for call, name in (
        (lambda: job_mtbf(gpu, 0), "n_gpus"),
        (lambda: young_daly_interval(0, 10), "checkpoint_s"),
        (lambda: expected_overhead(10, 1, -1), "mtbf_s"),
        (lambda: interval_tradeoff(1, 10, intervals=[0, 1]), "intervals"),
    ):
        with pytest.raises(ValueError, match=name):
            call()


def test_mesh_layout_puts_tp_innermost_and_pp_outermost() -> None:
    mesh = mesh_layout(dp=2, tp=4, pp=2, gpus_per_node=8)
    assert len(mesh) == 16 and list(mesh.columns) == ["rank", "dp", "tp", "pp", "node", "local"]
    # The same order as torch's init_device_mesh(..., (pp, dp, tp)): rank = (pp * dp_size + dp) * tp_size + tp.
    assert (mesh["rank"] == (mesh["pp"] * 2 + mesh["dp"]) * 4 + mesh["tp"]).all()
    assert mesh.groupby(["pp", "dp"])["node"].nunique().eq(1).all(), "each TP group sits on one node"
    assert mesh.groupby("pp")["node"].unique().map(list).tolist() == [[0], [1]]
    assert mesh.set_index("rank").loc[13, ["dp", "tp", "pp", "node", "local"]].tolist() == [1, 1, 1, 1, 5]


def test_validate_mesh_names_every_problem() -> None:
    validate_mesh(64, 4, 8, 2, n_heads=32, n_kv_heads=8, n_layers=32, gpus_per_node=8)
    with pytest.raises(MeshError) as err:
        validate_mesh(16, 2, 16, 1, n_heads=12, n_kv_heads=4, n_layers=12, gpus_per_node=8)
    text = str(err.value)
    assert "world_size 16" in text and "n_heads 12" in text and "n_kv_heads 4" in text
    assert "within a node" in text and len(err.value.problems) == 4
    with pytest.raises(ValueError, match="n_layers 2"):
        validate_mesh(4, 1, 1, 4, n_layers=2)
    with pytest.raises(ValueError, match="gpus_per_node 6"):
        validate_mesh(4, 1, 4, 1, gpus_per_node=6)
    with pytest.raises(ValueError, match="dp must be a positive integer"):
        validate_mesh(4, 0, 4, 1)
    with pytest.raises(ValueError, match="gpus_per_node"):
        mesh_layout(1, 1, 1, gpus_per_node=0)
