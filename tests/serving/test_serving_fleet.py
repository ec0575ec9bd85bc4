"""Fleet simulator and capacity planner of Lab 07: rooflines by hand, exact step semantics on tiny
runs, conservation and policy effects on small ones, and the planner's minimality."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab_core.serving.fleet import (
    GPUS,
    MODELS,
    SLA,
    FleetConfig,
    StepTimeModel,
    Workload,
    brief_check,
    decode_tokens_per_s_bound,
    fit_step_model,
    fleet_vs_load,
    kv_capacity_tokens,
    plan_capacity,
    roofline_step_model,
    simulate,
)

H100, M8B, M70B = GPUS["H100-SXM"], MODELS["8B"], MODELS["70B"]
FIXED = dict(prompt_sigma=0.0, output_sigma=0.0)  # every request the same size


# ---- rooflines and step-time models


def test_model_specs_by_hand():
    assert M8B.weight_bytes == pytest.approx(16.06e9)
    assert M8B.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2 == 131072
    assert M70B.kv_bytes_per_token == 2 * 80 * 8 * 128 * 2
    assert kv_capacity_tokens(H100, M8B) == int((80e9 * 0.9 - 16.06e9) // 131072) == 426788


def test_decode_bound_by_hand():
    # Batch 1, empty context: one step reads the weights, 16.06e9 / 3.35e12 = 4.79 ms.
    step = 16.06e9 / 3.35e12
    assert step == pytest.approx(4.794e-3, rel=1e-3)
    assert decode_tokens_per_s_bound(H100, M8B, 1, 0) == pytest.approx(1 / step)
    # With context the KV reads add to the weights.
    kv = 64 * 2048 * 131072
    assert decode_tokens_per_s_bound(H100, M8B, 64, 2048) == pytest.approx(64 / ((16.06e9 + kv) / 3.35e12))
    # A huge batch with no context turns compute-bound: peak / (2 * params).
    assert decode_tokens_per_s_bound(H100, M8B, 4096, 0) == pytest.approx(989e12 / (2 * 8.03e9))
    assert decode_tokens_per_s_bound(H100, M70B, 1, 0, tp=2) == pytest.approx(2 * 3.35e12 / 141.2e9)


def test_roofline_step_model_coefficients():
    m = roofline_step_model(H100, M8B)
    assert m.decode_a == pytest.approx(2e-3 + 16.06e9 / (3.35e12 * 0.8))
    assert m.decode_b == pytest.approx(131072 / (3.35e12 * 0.8))
    assert m.prefill_b == pytest.approx(2 * 8.03e9 / (989e12 * 0.5))
    assert m.prefill_c == pytest.approx(4 * 32 * 4096 / (989e12 * 0.5))
    half = roofline_step_model(H100, M8B, tp=2)
    assert half.decode_b == pytest.approx(m.decode_b / 2)
    assert half.prefill_b == pytest.approx(m.prefill_b / 2)


def test_mixed_step_time_shares_one_overhead_and_vectorises():
    m = StepTimeModel(0.01, 1e-4, 1e-8, 0.005, 1e-7, 1e-4)
    assert m.mixed_step_time(100, 0, 0) == pytest.approx(m.prefill_time(100))
    assert m.mixed_step_time(0, 4, 1000) == pytest.approx(m.decode_time(1000, 4))
    assert m.mixed_step_time(100, 4, 1000) == pytest.approx(m.prefill_time(100) + m.decode_time(1000, 4) - 0.005)
    p, b, s = np.array([100, 0, 100]), np.array([0, 4, 4]), np.array([0, 1000, 1000])
    expect = [m.mixed_step_time(int(x), int(y), int(z)) for x, y, z in zip(p, b, s)]
    assert np.allclose(m.mixed_step_time(p, b, s), expect)


@settings(max_examples=25, deadline=None)
@given(
    coef=st.tuples(*[st.floats(0.0, 1.0) for _ in range(6)]),
    seed=st.integers(0, 2**16),
)
def test_fit_step_model_recovers_coefficients(coef, seed):
    true = StepTimeModel(
        prefill_a=0.002 + 0.01 * coef[0],
        prefill_b=1e-5 * coef[1],
        prefill_c=1e-9 * coef[2],
        decode_a=0.001 + 0.01 * coef[3],
        decode_b=1e-7 * coef[4],
        decode_c=1e-4 * coef[5],
    )
    g = np.random.default_rng(seed)
    tokens = g.integers(1, 4096, 400)
    batch = g.integers(1, 128, 400)
    ctx = batch * g.integers(16, 2048, 400)

    def noise(n: int) -> np.ndarray:
        return g.normal(0, 1e-5, n)  # 10 us of timer jitter

    fit = fit_step_model(
        np.column_stack([tokens, true.prefill_time(tokens) + noise(400)]),
        np.column_stack([ctx, batch, true.decode_time(ctx, batch) + noise(400)]),
    )
    for name in ("prefill_a", "prefill_b", "prefill_c", "decode_a", "decode_b", "decode_c"):
        assert getattr(fit, name) >= 0
    probe_t, probe_s, probe_b = np.array([64, 1024, 4000]), np.array([1000, 50_000, 200_000]), np.array([1, 32, 127])
    assert np.allclose(fit.prefill_time(probe_t), true.prefill_time(probe_t), rtol=0.02, atol=2e-5)
    assert np.allclose(fit.decode_time(probe_s, probe_b), true.decode_time(probe_s, probe_b), rtol=0.02, atol=2e-5)


def test_fit_step_model_clips_negative_coefficients():
    tokens = np.arange(1, 200)
    fit = fit_step_model(
        np.column_stack([tokens, 0.01 + 1e-4 * tokens]), [(10, 1, 0.004), (20, 2, 0.004), (30, 3, 0.004)]
    )
    assert fit.prefill_a == pytest.approx(0.01) and fit.prefill_b == pytest.approx(1e-4)
    assert fit.prefill_c == pytest.approx(0, abs=1e-12)
    assert fit.decode_a == pytest.approx(0.004)


@pytest.mark.parametrize(
    "call, word",
    [
        (lambda: fit_step_model([(1, 2)], [(1, 1, 1)] * 3), "prefill_samples"),
        (lambda: fit_step_model([(1, 2)] * 3, [(1, 1)] * 3), "decode_samples"),
        (lambda: StepTimeModel(-1, 0, 0, 0, 0, 0), "prefill_a"),
        (lambda: decode_tokens_per_s_bound(H100, M8B, 0, 10), "batch"),
        (lambda: kv_capacity_tokens(H100, M70B), "tp"),
        (lambda: kv_capacity_tokens(H100, M8B, reserve=1.5), "reserve"),
    ],
)
def test_bad_model_inputs_name_the_field(call, word):
    with pytest.raises(ValueError, match=word):
        call()


# ---- exact step semantics (the small-scale validation hook)

CPU = StepTimeModel(prefill_a=0.01, prefill_b=2e-4, prefill_c=1e-8, decode_a=0.02, decode_b=1e-6, decode_c=1e-3)


def one_burst(n: int, prompt: int, output: int) -> Workload:
    # n users at t=0 whose next requests would come after the (tiny) duration: exactly n requests.
    return Workload(concurrency=n, duration=1e-6, drain=100.0, prompt_median=prompt, output_median=output, **FIXED)


def test_single_request_colocated_timeline_is_exact():
    r = simulate(FleetConfig(gpu=CPU, kv_tokens=8192), one_burst(1, 300, 5)).requests
    assert len(r) == 1
    row = r.iloc[0]
    assert row.ttft == pytest.approx(CPU.prefill_time(300))
    # Four decode steps follow, over 300, 301, 302, 303 cached tokens.
    decode = sum(CPU.decode_time(300 + k, 1) for k in range(4))
    assert row.finish - row.first_token == pytest.approx(decode)
    assert row.tpot == pytest.approx(decode / 4)


def test_chunked_prefill_mixes_decodes_with_the_next_chunk():
    r = simulate(FleetConfig(gpu=CPU, kv_tokens=8192, token_budget=1000), one_burst(2, 600, 3)).requests
    first = CPU.prefill_time(1000)  # all of request 0, 400 tokens of request 1
    second = CPU.mixed_step_time(200, 1, 600)  # request 0 decodes (1 budget token), request 1 finishes prefill
    assert r.first_token.tolist() == pytest.approx([first, first + second])
    third = CPU.decode_time(601 + 600, 2)  # both decode
    assert r.finish.iloc[0] == pytest.approx(first + second + third)


def test_unchunked_prefill_step_makes_decodes_wait():
    cfg = FleetConfig(gpu=CPU, kv_tokens=8192, token_budget=1000, chunked_prefill=False)
    r = simulate(cfg, one_burst(2, 600, 3)).requests
    t1 = CPU.prefill_time(600)  # whole prompts only: the second no longer fits the budget
    t2 = CPU.prefill_time(600)  # prefill has priority; request 0 waits to decode
    assert r.first_token.tolist() == pytest.approx([t1, t1 + t2])


def test_disaggregation_adds_kv_transfer_to_ttft():
    wl = one_burst(1, 1000, 4)
    colocated = simulate(FleetConfig(model="8B", gpu="H100-SXM"), wl).requests.ttft.iloc[0]
    disagg = simulate(FleetConfig(prefill_gpus=1, decode_gpus=1, kv_transfer_bandwidth=10e9), wl).requests.ttft.iloc[0]
    transfer = 1000 * M8B.kv_bytes_per_token / 10e9
    assert colocated == pytest.approx(roofline_step_model(H100, M8B).prefill_time(1000))
    assert disagg == pytest.approx(colocated + transfer)


# ---- small runs: conservation, load, policies


def small(**kw) -> Workload:
    return Workload(**{"rate": 20, "duration": 3, "seed": 7, "max_prompt": 2048, "max_output": 512, **kw})


def check_conservation(result, wl: Workload) -> None:
    r, s = result.requests, result.summary
    done = r.finish.notna()
    # Unfinished requests are only those still in flight when the drain ran out.
    assert done.all() or (wl.drain is not None and s["end_time"] == pytest.approx(wl.duration + wl.drain))
    assert (r.ttft.dropna() > 0).all() and (r.finish[done] >= r.first_token[done]).all()
    assert r.first_token.notna()[done].all()
    # Every token is counted once: finished requests emitted all theirs, others at most theirs.
    assert r.output_len[done].sum() <= s["output_tokens"] <= r.output_len.sum()
    if done.all():
        assert s["output_tokens"] == r.output_len.sum()
    ts = result.timeseries
    assert ((ts.kv_utilization >= 0) & (ts.kv_utilization <= 1)).all()


@settings(max_examples=30, deadline=None)
@given(
    prefill=st.sampled_from([0, 1]),
    chunked=st.booleans(),
    policy=st.sampled_from(["fcfs", "priority"]),
    kv_tokens=st.sampled_from([None, 3000]),
    budget=st.sampled_from([512, 8192]),
    seed=st.integers(0, 1000),
    drain=st.sampled_from([None, 0.5]),
)
def test_conservation_across_modes_and_memory_pressure(prefill, chunked, policy, kv_tokens, budget, seed, drain):
    cfg = FleetConfig(
        prefill_gpus=prefill,
        decode_gpus=1,
        chunked_prefill=chunked,
        policy=policy,
        kv_tokens=kv_tokens,
        token_budget=budget,
        max_batch=64,
    )
    wl = small(rate=15, duration=3, seed=seed, max_prompt=1024, max_output=512, output_median=200, drain=drain)
    check_conservation(simulate(cfg, wl), wl)


@pytest.mark.parametrize("prefill_gpus", [0, 1])
def test_kv_pressure_preempts_and_still_conserves(prefill_gpus):
    # Colocated engines recompute in place; decode instances send the victim back to the prefill pool.
    cfg = FleetConfig(prefill_gpus=prefill_gpus, kv_tokens=2048, block_size=16)
    wl = small(rate=30, max_prompt=1024, max_output=512, output_median=256, prompt_median=256)
    res = simulate(cfg, wl)
    assert res.summary["preemptions"] > 0
    check_conservation(res, wl)
    assert res.requests.finish.notna().all()


def test_more_load_raises_ttft_p99():
    cfg = FleetConfig(token_budget=2048)
    light = simulate(cfg, small(rate=5)).summary["ttft_p99"]
    heavy = simulate(cfg, small(rate=60)).summary["ttft_p99"]
    assert heavy > 2 * light


def test_chunked_prefill_lowers_tpot_p99_under_long_prompts():
    wl = small(rate=6, prompt_median=4000, prompt_sigma=0.2, max_prompt=8000, output_median=100)
    chunked = simulate(FleetConfig(token_budget=1024, chunked_prefill=True), wl).summary["tpot_p99"]
    whole = simulate(FleetConfig(token_budget=1024, chunked_prefill=False), wl).summary["tpot_p99"]
    assert chunked < 0.7 * whole


def test_priority_serves_paid_first_under_overload():
    wl = small(rate=60, duration=3, paid_fraction=0.5)
    r = simulate(FleetConfig(policy="priority", aging=10.0, token_budget=2048), wl).requests
    paid, free = r.ttft[r.tier == "paid"].median(), r.ttft[r.tier == "free"].median()
    assert paid < 0.5 * free
    fcfs = simulate(FleetConfig(policy="fcfs", token_budget=2048), wl).requests
    assert fcfs.ttft[fcfs.tier == "paid"].median() == pytest.approx(fcfs.ttft[fcfs.tier == "free"].median(), rel=0.5)


def test_closed_loop_never_exceeds_its_users():
    res = simulate(FleetConfig(prefill_gpus=1, decode_gpus=2), Workload(concurrency=40, duration=4, seed=1))
    r = res.requests
    assert len(r) > 40
    events = np.concatenate(
        [np.c_[r.arrival, np.ones(len(r))], np.c_[r.finish.dropna(), -np.ones(r.finish.notna().sum())]]
    )
    order = np.lexsort((events[:, 1], events[:, 0]))  # a finish and its follow-up share a time
    assert np.cumsum(events[order, 1]).max() <= 40
    assert (res.timeseries.running <= 40).all()


def test_seeded_runs_are_deterministic():
    cfg = FleetConfig(prefill_gpus=1, decode_gpus=2)
    a, b = simulate(cfg, small(seed=3)), simulate(cfg, small(seed=3))
    assert a.requests.equals(b.requests) and a.summary == b.summary
    assert not a.requests.equals(simulate(cfg, small(seed=4)).requests)


def test_summary_metrics_and_progress():
    seen: list[float] = []
    res = simulate(FleetConfig(decode_gpus=2), small(), sla=SLA(ttft=0.5, tpot=0.05), progress=seen.append)
    s = res.summary
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    assert s["ttft_p50"] <= s["ttft_p90"] <= s["ttft_p99"]
    assert res.goodput_fraction == pytest.approx(s["goodput"] * 3 / s["requests"])
    assert res.tokens_per_s_per_gpu == pytest.approx(s["throughput"] / 2)
    r = res.requests
    met = (r.ttft <= 0.5) & ~(r.tpot > 0.05) & r.finish.notna()
    assert s["goodput_fraction"] == pytest.approx(met.mean())
    assert 0 < s["peak_kv_bytes_per_gpu"] <= kv_capacity_tokens(H100, M8B) * M8B.kv_bytes_per_token
    assert list(res.timeseries.columns) == ["t", "queue_depth", "running", "kv_utilization", "tokens_per_s"]


@pytest.mark.parametrize(
    "make, word",
    [
        (lambda: FleetConfig(decode_gpus=0), "decode_gpus"),
        (lambda: FleetConfig(prefill_gpus=-1), "prefill_gpus"),
        (lambda: FleetConfig(model="70B", tp=2, decode_gpus=3), "decode_gpus"),
        (lambda: FleetConfig(tp=0), "tp"),
        (lambda: FleetConfig(model="70B"), "tp"),
        (lambda: FleetConfig(policy="lifo"), "policy"),
        (lambda: FleetConfig(block_size=0), "block_size"),
        (lambda: FleetConfig(token_budget=2.5), "token_budget"),
        (lambda: FleetConfig(gpu="Z100"), "gpu"),
        (lambda: FleetConfig(model="1T"), "model"),
        (lambda: FleetConfig(kv_transfer_bandwidth=0), "kv_transfer_bandwidth"),
        (lambda: FleetConfig(gpu=CPU), "kv_tokens"),
        (lambda: Workload(rate=-1), "rate"),
        (lambda: Workload(paid_fraction=2), "paid_fraction"),
        (lambda: Workload(concurrency=0), "concurrency"),
        (lambda: simulate(FleetConfig(gpu=CPU, kv_tokens=1000), Workload()), "kv_tokens"),
    ],
)
def test_bad_config_names_the_field(make, word):
    with pytest.raises(ValueError, match=word):
        make()


# ---- planner


def test_plan_meets_sla_and_one_gpu_fewer_does_not():
    wl = small(rate=40, duration=4, seed=3)
    plan = plan_capacity("8B", "H100-SXM", wl, SLA(), max_gpus=16, target_goodput_fraction=0.9)
    assert plan.config is not None and plan.summary["goodput_fraction"] >= 0.9
    n = plan.total_gpus
    assert n >= 2
    c = plan.candidates
    assert c[(c.total == n) & c.meets].shape[0] >= 1
    smaller = c[c.total == n - 1]
    assert len(smaller) >= 1 and not smaller.meets.any()
    again = simulate(plan.config, wl).summary["goodput_fraction"]
    assert again == plan.summary["goodput_fraction"]


def test_plan_reports_no_fleet_when_max_gpus_is_too_small():
    plan = plan_capacity("8B", "H100-SXM", small(rate=200, duration=2), max_gpus=2)
    assert plan.config is None and plan.total_gpus is None and not plan.candidates.meets.any()


def test_fleet_grows_with_load():
    df = fleet_vs_load("8B", "H100-SXM", [10, 80], workload=small(duration=2), max_gpus=32, modes=("colocated",))
    assert df.total_gpus.tolist()[0] < df.total_gpus.tolist()[1]


def test_brief_check_rows():
    df = brief_check(workload=small(rate=20, duration=2), max_gpus=8)
    assert list(df.columns) == ["claim", "conditions", "value", "holds", "explanation"]
    assert set(df.holds) <= {"yes", "no"} and df.explanation.str.len().min() > 20
    bound = df.value.iloc[0]
    batch = kv_capacity_tokens(H100, M8B) // 1024
    assert bound == pytest.approx(decode_tokens_per_s_bound(H100, M8B, batch, 1024))
    # 8B at 1K context is memory-bound near 19K tokens/s: the brief's 50K needs shorter contexts.
    assert df.holds.iloc[0] == "no" and math.isfinite(df.value.iloc[-1])


def test_mix_overhead_is_fitted_from_mixed_steps_and_defaults_to_one_shared_overhead():
    from lab_core.serving.fleet import StepTimeModel, fit_step_model

    true = StepTimeModel(2e-3, 1e-5, 0.0, 3e-3, 1e-7, 2e-5, mix_overhead=1e-3)
    p = [(t, true.prefill_time(t)) for t in (8, 64, 256, 512)]
    d = [(s, b, true.decode_time(s, b)) for s, b in ((100, 1), (800, 8), (4000, 32), (9000, 64))]
    m = [(k, b, s, true.mixed_step_time(k, b, s)) for k, b, s in ((32, 4, 400), (128, 16, 2000))]
    fitted = fit_step_model(p, d, m)
    assert fitted.mix_overhead == pytest.approx(1e-3, abs=1e-6)
    assert fitted.mixed_step_time(32, 4, 400) == pytest.approx(true.mixed_step_time(32, 4, 400), rel=1e-6)
    plain = StepTimeModel(2e-3, 0, 0, 3e-3, 0, 0)
    assert plain.mixed_step_time(10, 1, 10) == pytest.approx(3e-3)  # the 2 ms overhead paid once
    with pytest.raises(ValueError, match="mix_overhead"):
        StepTimeModel(2e-3, 0, 0, 3e-3, 0, 0, mix_overhead=-5e-3)
