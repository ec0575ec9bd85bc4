"""Lab 07 figures: continuous batching against one-at-a-time and static batching, latency at a fixed
rate, gateway overhead, simulator speed and accuracy, prefix caching, disaggregation's KV transfer.

``syslab bench serving [--quick]`` runs ``run(quick)``. Every engine figure runs the real engine on
this CPU with ``torch.set_num_threads(1)`` (the engine and both baselines alike, so no contender
gets more cores than another; on a shared 2-core machine a second thread mostly adds stalls).

1. **Continuous batching** (the "small" preset, ~3M parameters): 64 requests with the same
   random prompts (32-96 tokens), greedy, ``ignore_eos``, a fixed answer length, all submitted
   at once to ``LLMEngine``; output tokens/s against ``generate_sequential`` (one request at a
   time, plain contiguous KV cache; target ratio >= 5) and ``generate_static`` (batches of 8 in
   lockstep). The baselines serve a prefix of the same prompt list (named in the figure): their
   tokens/s does not depend on how many requests follow. Contenders alternate over rounds; medians.
2. **Latency at a fixed rate**: ``calibrate.run_engine_workload`` (the "small" engine in real
   time, Poisson arrivals, lognormal lengths): TTFT and TPOT p50 / p99.
3. **Gateway overhead**: the same ``max_tokens=1`` request through the real gateway app
   (``create_gateway`` over one ``AsyncEngine``, in process via ``httpx.ASGITransport``, rate
   limits raised out of the way) and straight to ``AsyncEngine.stream``, alternating; overhead =
   difference of the medians (target < 2 ms).
4. **Simulator speed**: wall seconds to simulate 10,000 closed-loop users for 60 s on 200 H100s
   (8B model, colocated) - target < 20 s; the baseline is the simulated time (60 s), so the ratio
   is wall time per simulated second. Quick: 1,000 users on 20 GPUs (target scaled to 2 s).
5. **Simulator vs engine** (``calibrate.validate``, tiny model): the step-time model is fitted on
   this machine right before; engine and simulator serve the same requests. |relative error| of
   throughput, TTFT p50, TPOT p50 (target <= 20 %).
6. **Prefix caching**: requests sharing a 384-token system prompt (then 16 own tokens), one at a
   time after a warm-up request; prefill tokens computed and TTFT p50 with prefix caching on,
   against off.
7. **Disaggregation** (full mode only: it starts two worker processes): KV bytes moved per request
   from the prefill to the decode worker (``DisaggregatedEngine.transfer_stats``) against the
   model's KV bytes per token times the prompt length (ratio 1 = nothing but the KV moves), and
   the median transfer time.
8. **GPU roofline** (only when CUDA is available): decode tokens/s of the engine at batch 64 as a
   fraction of the HBM roofline (weights + KV read once per step at the device's peak bandwidth).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import sys
import time

import numpy as np
import torch

from lab_core.bench import Figure, machine_note
from lab_core.serving import AsyncEngine, EngineConfig, LLMEngine, SamplingParams, generate_sequential, generate_static
from lab_core.serving.calibrate import engine_model_spec, run_engine_workload, validate
from lab_core.serving.fleet import FleetConfig, Workload, simulate
from lab_core.sim.rng import rng


def _say(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


def _prompts(n: int, low: int, high: int, seed: int) -> list[list[int]]:
    g = rng(seed)
    return [g.integers(0, 256, size=int(g.integers(low, high + 1))).tolist() for _ in range(n)]


# ----------------------------------------------------------------------------- 1. continuous batching


def _batching(quick: bool) -> list[Figure]:
    n, max_tokens = 64, (24 if quick else 64)
    n_seq, n_static = (6, 16) if quick else (16, 32)
    rounds = 1 if quick else 2
    prompts = _prompts(n, 32, 96, seed=1)
    cfg = EngineConfig(model="small", max_seqs=64, token_budget=256, num_blocks=1024)
    model = LLMEngine(cfg).model
    params = SamplingParams(max_tokens=max_tokens, ignore_eos=True)

    def engine() -> float:
        eng = LLMEngine(cfg, model=model)
        t0 = time.perf_counter()
        out = eng.generate(prompts, params)
        return sum(len(c.token_ids) for c in out) / (time.perf_counter() - t0)

    def sequential() -> float:
        t0 = time.perf_counter()
        out = generate_sequential(model, prompts[:n_seq], max_tokens, ignore_eos=True)
        return sum(len(o) for o, _, _ in out) / (time.perf_counter() - t0)

    def static() -> float:
        t0 = time.perf_counter()
        out = generate_static(model, prompts[:n_static], max_tokens, batch_size=8, ignore_eos=True)
        return sum(len(o) for o, _, _ in out) / (time.perf_counter() - t0)

    contenders = {"engine": engine, "sequential": sequential, "static": static}
    got: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(rounds):
        for name in list(contenders) if r % 2 == 0 else reversed(list(contenders)):
            got[name].append(contenders[name]())
            _say(f"batching round {r + 1}: {name} {got[name][-1]:.0f} tok/s")
    med = {k: statistics.median(v) for k, v in got.items()}
    what = f"small model, 64 concurrent requests x {max_tokens} tokens"
    return [
        Figure(
            f"engine output tokens/s vs one at a time ({what}; baseline: first {n_seq} prompts)",
            med["engine"],
            "tok/s",
            baseline="generate_sequential (plain KV cache)",
            baseline_value=med["sequential"],
            target=">= 5",
        ),
        Figure(
            f"engine output tokens/s vs static batching ({what}; baseline: first {n_static} prompts, batches of 8)",
            med["engine"],
            "tok/s",
            baseline="generate_static (batch 8, lockstep)",
            baseline_value=med["static"],
        ),
    ]


# ----------------------------------------------------------------------------- 2. latency at a fixed rate


def _latency(quick: bool) -> list[Figure]:
    rate, duration = 6.0, (3.0 if quick else 15.0)
    wl = Workload(
        rate=rate,
        duration=duration,
        prompt_median=64,
        prompt_sigma=0.5,
        output_median=32,
        output_sigma=0.5,
        max_prompt=256,
        max_output=128,
        seed=11,
    )
    df = run_engine_workload(EngineConfig(model="small"), wl)
    what = f"small model, {rate:g} req/s Poisson for {duration:g} s, {len(df)} requests"
    machine_note(
        "serving_latency",
        {
            "requests": len(df),
            "busy_fraction": round(df.attrs["busy_fraction"], 3),
            "throughput_tok_s": round(df.attrs["throughput"], 1),
        },
    )
    out = []
    for metric in ("ttft", "tpot"):
        for q in (50, 99):
            v = float(np.nanpercentile(df[metric].to_numpy(dtype=float), q)) * 1e3
            out.append(Figure(f"{metric.upper()} p{q} ({what})", v, "ms"))
    return out


# ----------------------------------------------------------------------------- 3. gateway overhead


def _gateway(quick: bool) -> list[Figure]:
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from lab_core.serving.gateway import DEFAULT_KEYS, Router, TierLimits, create_gateway

    n = 100 if quick else 400
    big = TierLimits(10**9, 10**12, 10**9, 10**12)
    engine = AsyncEngine(EngineConfig(model="tiny"), model_name="tiny")
    gateway = create_gateway(Router({"tiny": [engine]}), DEFAULT_KEYS, limits={"paid": big, "free": big})

    async def bare(request: Request) -> JSONResponse:
        # The baseline: the same HTTP round trip and engine call, with none of the gateway's work
        # (auth, validation, limits, queue, routing, metrics).
        body = await request.json()
        text = "".join(
            [
                e.text
                async for e in engine.stream(
                    engine.tokenize(body["prompt"]),
                    SamplingParams(max_tokens=body["max_tokens"]),
                    request_id=f"bare-{next(ids)}",
                )
            ]
        )
        return JSONResponse({"choices": [{"text": text}]})

    ids = itertools.count()
    baseline = Starlette(routes=[Route("/v1/completions", bare, methods=["POST"])])
    body = {"model": "tiny", "prompt": "Hello", "max_tokens": 1}
    headers = {"Authorization": "Bearer sk-paid-demo"}

    async def main() -> tuple[list[float], list[float]]:
        via: list[float] = []
        direct: list[float] = []
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as gw,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=baseline), base_url="http://bare") as plain,
        ):

            async def call(client: httpx.AsyncClient) -> None:
                r = await client.post("/v1/completions", json=body, headers=headers)
                r.raise_for_status()

            for _ in range(10):  # warm-up
                await call(gw)
                await call(plain)
            for k in range(n):
                pair = [(via, gw), (direct, plain)]
                for out, client in pair if k % 2 == 0 else pair[::-1]:
                    t0 = time.perf_counter()
                    await call(client)
                    out.append(time.perf_counter() - t0)
        return via, direct

    try:
        via, direct = asyncio.run(main())
    finally:
        engine.close()
    g, d = statistics.median(via) * 1e3, statistics.median(direct) * 1e3
    machine_note("serving_gateway_ms", {"gateway_p50": round(g, 3), "bare_app_p50": round(d, 3), "requests": n})
    return [
        Figure(
            f"gateway overhead per request, p50 ({n} max_tokens=1 requests through the gateway vs a bare "
            f"endpoint calling the same engine, both in process over httpx)",
            g - d,
            "ms",
            target="value < 2",
        )
    ]


# ----------------------------------------------------------------------------- 4. simulator speed


def _sim_speed(quick: bool) -> list[Figure]:
    users, gpus, limit = (1000, 20, 2) if quick else (10_000, 200, 20)
    wl = Workload(concurrency=users, duration=60.0, drain=0.0, seed=3)
    cfg = FleetConfig(model="8B", gpu="H100-SXM", decode_gpus=gpus)
    t0 = time.perf_counter()
    res = simulate(cfg, wl)
    wall = time.perf_counter() - t0
    machine_note(
        "serving_sim_speed",
        {"requests": int(res.summary["requests"]), "output_tokens": int(res.summary["output_tokens"])},
    )
    return [
        Figure(
            f"simulator wall time: {users:,} closed-loop users for 60 s on {gpus} H100s (8B, colocated)",
            wall,
            "s",
            baseline="simulated time",
            baseline_value=60.0,
            target=f"value < {limit}",
        )
    ]


# ----------------------------------------------------------------------------- 5. simulator vs engine


def _validation(quick: bool) -> list[Figure]:
    wl = Workload(
        rate=20.0,
        duration=3.0 if quick else 10.0,
        prompt_median=64,
        prompt_sigma=0.6,
        output_median=32,
        output_sigma=0.6,
        max_prompt=256,
        max_output=128,
        seed=7,
    )
    table = validate(EngineConfig(model="tiny"), wl)
    machine_note(
        "serving_validation",
        {
            f"{r.metric} ({r.unit})": {"engine": round(r.measured, 6), "simulator": round(r.predicted, 6)}
            for r in table.itertuples()
        },
    )
    n = len(table.attrs["engine"])
    return [
        Figure(
            f"simulator vs real engine: |error| of {r.metric} (tiny model, {wl.rate:g} req/s, {n} requests)",
            abs(float(r.rel_error)) * 100,
            "%",
            target="value <= 20",
        )
        for r in table.itertuples()
    ]


# ----------------------------------------------------------------------------- 6. prefix caching


def _prefix(quick: bool) -> list[Figure]:
    n = 8 if quick else 24
    system = _prompts(1, 384, 384, seed=5)[0]
    users = _prompts(n + 1, 16, 16, seed=6)
    params = SamplingParams(max_tokens=4, ignore_eos=True)
    model = LLMEngine(EngineConfig(model="small")).model

    def serve(caching: bool) -> tuple[int, float]:
        eng = LLMEngine(EngineConfig(model="small", prefix_caching=caching), model=model)
        eng.generate([system + users[-1]], params)  # warm-up: computes (and caches) the system prompt
        start = len(eng.step_log)
        ttft = []
        for u in users[:n]:
            rid = eng.add_request(system + u, params)
            while eng.has_work():
                eng.step()
            ttft.append(eng.completion(rid).ttft)
        return sum(s.prefill_tokens for s in eng.step_log[start:]), statistics.median(ttft)

    on, off = [], []
    for r in range(1 if quick else 3):
        for caching in (True, False) if r % 2 == 0 else (False, True):
            (on if caching else off).append(serve(caching))
    tok_on, tok_off = on[0][0], off[0][0]
    t_on, t_off = statistics.median(x[1] for x in on) * 1e3, statistics.median(x[1] for x in off) * 1e3
    what = f"small model, {n} requests sharing a 384-token system prompt + 16 own tokens"
    return [
        Figure(
            f"prefill tokens computed, prefix caching on ({what})",
            tok_on,
            "tokens",
            baseline="prefix caching off",
            baseline_value=tok_off,
            target="<= 0.2",
        ),
        Figure(
            f"TTFT p50, prefix caching on ({what})",
            t_on,
            "ms",
            baseline="prefix caching off",
            baseline_value=t_off,
            target="< 1",
        ),
    ]


# ----------------------------------------------------------------------------- 7. disaggregation


def _disagg() -> list[Figure]:
    from lab_core.serving.disagg import DisaggregatedEngine

    cfg = EngineConfig(model="tiny")
    n = 16
    prompts = _prompts(n, 48, 144, seed=9)
    engine = DisaggregatedEngine(cfg, model_name="tiny")
    try:

        async def main() -> None:
            async def one(k: int) -> None:
                async for _ in engine.stream(
                    prompts[k], SamplingParams(max_tokens=8, ignore_eos=True), request_id=f"d-{k}"
                ):
                    pass

            await asyncio.gather(*(one(k) for k in range(n)))

        asyncio.run(main())
        stats = engine.transfer_stats()
    finally:
        engine.close()
    kv = engine_model_spec(cfg).kv_bytes_per_token
    mean_prompt = stats.tokens / stats.count if stats.count else float("nan")
    machine_note("serving_disagg", {"transfers": stats.count, "bytes": stats.bytes, "tokens": stats.tokens})
    what = f"tiny model, {n} requests, prompts 48-144 tokens"
    return [
        Figure(
            f"disaggregated: KV bytes moved per request ({what})",
            stats.bytes / max(stats.count, 1),
            "bytes",
            baseline="KV bytes per token x prompt tokens",
            baseline_value=kv * mean_prompt,
        ),
        Figure(f"disaggregated: KV transfer time p50 per request ({what})", stats.p50_seconds * 1e3, "ms"),
    ]


# ----------------------------------------------------------------------------- 8. GPU roofline

_HBM = {"H100": 3.35e12, "H200": 4.8e12, "A100": 2.039e12, "L4": 0.3e12, "A10": 0.6e12}


def _gpu() -> list[Figure]:
    name = torch.cuda.get_device_name(0)
    bandwidth = next((bw for key, bw in _HBM.items() if key in name), None)
    if bandwidth is None:
        machine_note("serving_gpu", f"{name}: peak bandwidth unknown, roofline figure skipped")
        return []
    batch, ctx, steps = 64, 256, 32
    cfg = EngineConfig(model="small", device="cuda", max_seqs=batch, token_budget=batch * ctx, num_blocks=4096)
    eng = LLMEngine(cfg)
    params = SamplingParams(max_tokens=steps + 8, ignore_eos=True)
    for p in _prompts(batch, ctx, ctx, seed=2):
        eng.add_request(p, params)
    while any(s.in_prefill for s in eng.scheduler.running + eng.scheduler.waiting):
        eng.step()
    for _ in range(4):
        eng.step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        eng.step()  # sampling reads the logits back to the host, so each step waits for the GPU
    torch.cuda.synchronize()
    rate = batch * steps / (time.perf_counter() - t0)
    spec = engine_model_spec(cfg)
    bound = batch / ((spec.weight_bytes + batch * (ctx + steps) * spec.kv_bytes_per_token) / bandwidth)
    return [
        Figure(
            f"GPU decode tokens/s at batch {batch}, context ~{ctx} (small model, {name}) vs HBM roofline",
            rate,
            "tok/s",
            baseline="HBM roofline (peak bandwidth)",
            baseline_value=bound,
        )
    ]


# ----------------------------------------------------------------------------- run


def run(quick: bool) -> list[Figure]:
    """The figures; quick mode shrinks every part and leaves out disaggregation."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    machine_note("serving_torch_threads", 1)
    try:
        figures: list[Figure] = []
        for label, part in (
            ("continuous batching", _batching),
            ("latency at a fixed rate", _latency),
            ("gateway overhead", _gateway),
            ("simulator speed", _sim_speed),
            ("simulator vs engine", _validation),
            ("prefix caching", _prefix),
        ):
            t0 = time.perf_counter()
            figures += part(quick)
            _say(f"{label}: {time.perf_counter() - t0:.1f} s")
        if quick:
            machine_note("serving_disagg", "skipped in quick mode (starts worker processes)")
        else:
            figures += _disagg()
        if torch.cuda.is_available():
            figures += _gpu()
        else:
            machine_note("serving_gpu", "no CUDA device: the HBM-roofline figure is left out")
        return figures
    finally:
        torch.set_num_threads(saved)
