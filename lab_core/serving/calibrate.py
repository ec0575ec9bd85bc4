"""Fit the fleet simulator's CPU step-time model from the real engine, and check the simulator
against the real engine on the same requests.

``profile_engine`` runs a designed sweep of pure-prefill steps (one prompt of several sizes) and
pure-decode steps (several batch sizes and contexts) through a real :class:`LLMEngine` and returns
the medians of repeated timings; ``calibrate`` fits :class:`StepTimeModel` to them with
``fit_step_model``. ``run_engine_workload`` drives the real engine in real time with the arrivals
and lengths of a fleet :class:`Workload`, and ``validate`` compares the engine's throughput and
TTFT/TPOT medians with what ``simulate`` predicts for one colocated instance charged the calibrated
step times.

A step is timed around the whole ``LLMEngine.step()`` call (scheduling, the forward pass, sampling
and bookkeeping), not only the forward pass ``StepRecord.seconds`` covers: on CPU the Python around
the model is a large share of a small model's step, and the simulator charges one number per step.

The engine and the simulator see the same requests: ``request_trace`` (the simulator's own
draws for a seeded, open-loop ``Workload``) is replayed on the engine and passed to ``simulate``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd

from lab_core.llm.config import get_config
from lab_core.serving.engine import EngineConfig, LLMEngine
from lab_core.serving.fleet import (
    FleetConfig,
    ModelSpec,
    StepTimeModel,
    Workload,
    fit_step_model,
    request_trace,
    simulate,
)
from lab_core.serving.protocol import SamplingParams
from lab_core.serving.timeline import request_table
from lab_core.sim.calibration import validation_table
from lab_core.sim.rng import rng

__all__ = [
    "calibrate",
    "engine_model_spec",
    "fit_run",
    "fleet_config_for",
    "profile_engine",
    "run_engine_workload",
    "validate",
]


def _ids(g: np.random.Generator, n: int) -> list[int]:
    # Byte ids 0..255: random prompts never share a block, so prefix caching cannot hit.
    return g.integers(0, 256, size=n).tolist()


def _settle(engine: LLMEngine) -> None:
    while engine.has_work():
        engine.step()


def _timed_step(engine: LLMEngine) -> float:
    t0 = time.perf_counter()
    engine.step()
    return time.perf_counter() - t0


def profile_engine(
    config: EngineConfig,
    *,
    seed: int = 0,
    repeats: int = 5,
    progress: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time the real engine on a designed sweep of steps; returns ``(prefill, decode, mixed)`` samples.

    ``prefill`` rows are ``(tokens, seconds)``: one prompt of ``tokens`` tokens prefilled in one
    step, for sizes from 8 up to the step budget (``config.token_budget``, the largest chunk a
    step can hold); ``decode`` rows are ``(sum_context, batch, seconds)``: a step that decodes one
    token for each of ``batch`` sequences, for batches up to ``config.max_seqs`` and contexts up
    to half the context length, within the KV cache; ``mixed`` rows are ``(prefill_tokens,
    decode_batch, sum_context, seconds)``: a new prompt's chunk prefilled in the same step as a
    decode batch (what ``fit_step_model`` needs for ``mix_overhead``). Each row is the median of ``repeats``
    timings taken in separate rounds; each round visits the shapes in a shuffled order, so a
    drift of a shared machine is spread over the shapes instead of bending the fitted model. The engine is ``config``'s model
    and cache with prefix caching on and room for the sweep (a decode batch shares one prompt, so
    only its first sequence pays the prefill). ``progress(fraction)`` is called as it goes.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    g = rng(seed)
    max_ctx = min(get_config(config.model).max_seq_len, config.num_blocks * config.block_size)
    budget = min(config.token_budget, max_ctx - 1)
    sizes = sorted({int(s) for s in np.geomspace(8, budget, 7).round()} | {budget})
    sizes = [s for s in sizes if s >= 2]  # one token would be a decode
    batches = sorted({b for b in (1, 2, 4, 8, 16, 32, 64, 128) if b <= config.max_seqs} | {config.max_seqs})
    steps = 4  # tokens per decode-sweep sequence: prefill, an untimed step, the timed one, a spare
    contexts = sorted({c for c in (16, max_ctx // 8, max_ctx // 4, max_ctx // 2) if 8 <= c <= max_ctx - steps - 2})
    bs = config.block_size
    decode_plan = [(b, c) for b in batches for c in contexts if b * -(-(c + steps + 2) // bs) <= config.num_blocks]
    mixed_plan = [
        (b, c, k)
        for b in batches[:3]
        for c in contexts[:2]
        for k in sorted({32, budget // 2})
        if b + k <= budget and 2 <= k and (b + 1) * -(-(c + steps + 2) // bs) + -(-k // bs) <= config.num_blocks
    ]
    prof = replace(
        config,
        prefix_caching=True,
        token_budget=max(config.token_budget, max(contexts, default=8) + 1),
        max_seqs=max(config.max_seqs, max(batches)),
    )
    engine = LLMEngine(prof)
    total = repeats * (len(sizes) + len(decode_plan) + len(mixed_plan))
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done / total)

    one = SamplingParams(max_tokens=1, ignore_eos=True)
    for _ in range(3):  # warm-up: first steps allocate
        engine.add_request(_ids(g, sizes[-1]), SamplingParams(max_tokens=4, ignore_eos=True))
        _settle(engine)

    prefill: dict[int, list[float]] = {s: [] for s in sizes}
    for _ in range(repeats):
        for s in g.permutation(sizes).tolist():
            engine.add_request(_ids(g, s), one)
            seconds = _timed_step(engine)
            rec = engine.step_log[-1]
            if rec.prefill_tokens != s or rec.decode_batch:
                raise AssertionError(f"profile: expected a pure {s}-token prefill step, got {rec}")
            prefill[s].append(seconds)
            _settle(engine)
            tick()

    decode: dict[tuple[int, int], list[tuple[int, float]]] = {bc: [] for bc in decode_plan}
    params = SamplingParams(max_tokens=steps, ignore_eos=True)
    for _ in range(repeats):
        for i in g.permutation(len(decode_plan)).tolist():
            batch, ctx = decode_plan[i]
            prompt = _ids(g, ctx)
            first = engine.add_request(prompt, params)
            while engine.sequences[first].in_prefill:
                engine.step()
            ids = [first] + [engine.add_request(prompt, params) for _ in range(batch - 1)]  # share its blocks
            while any(engine.sequences[r].in_prefill for r in ids):
                engine.step()
            engine.step()
            seconds = _timed_step(engine)
            rec = engine.step_log[-1]
            if rec.prefill_tokens or rec.decode_batch != batch:
                raise AssertionError(f"profile: expected a pure decode step of {batch}, got {rec}")
            decode[(batch, ctx)].append((rec.sum_context, seconds))
            for r in ids:
                engine.abort(r)
            tick()
    decode_rows = [
        (float(np.median([c for c, _ in v])), float(b), float(np.median([t for _, t in v])))
        for (b, _), v in decode.items()
    ]
    prefill_rows = [(float(s), float(np.median(t))) for s, t in prefill.items()]

    # Mixed steps: a batch decoding while one new prompt's chunk is prefilled in the same step.
    mixed: dict[tuple[int, int, int], list[tuple[int, float]]] = {plan: [] for plan in mixed_plan}
    for _ in range(repeats):
        for i in g.permutation(len(mixed_plan)).tolist():
            batch, ctx, chunk = mixed_plan[i]
            prompt = _ids(g, ctx)
            first = engine.add_request(prompt, params)
            while engine.sequences[first].in_prefill:
                engine.step()
            ids = [first] + [engine.add_request(prompt, params) for _ in range(batch - 1)]
            while any(engine.sequences[r].in_prefill for r in ids):
                engine.step()
            ids.append(engine.add_request(_ids(g, chunk), one))
            seconds = _timed_step(engine)
            rec = engine.step_log[-1]
            if rec.prefill_tokens != chunk or rec.decode_batch != batch:
                raise AssertionError(f"profile: expected {chunk} prefill tokens with {batch} decodes, got {rec}")
            mixed[(batch, ctx, chunk)].append((rec.sum_context, seconds))
            for r in ids:
                engine.abort(r)
            tick()
    mixed_rows = [
        (float(chunk), float(b), float(np.median([c for c, _ in v])), float(np.median([t for _, t in v])))
        for (b, _, chunk), v in mixed.items()
    ]
    return np.array(prefill_rows), np.array(sorted(decode_rows)), np.array(sorted(mixed_rows))


def calibrate(
    config: EngineConfig,
    *,
    seed: int = 0,
    repeats: int = 5,
    progress: Callable[[float], None] | None = None,
) -> StepTimeModel:
    """A :class:`StepTimeModel` of this machine running ``config``: ``profile_engine`` then ``fit_step_model``."""
    return fit_step_model(*profile_engine(config, seed=seed, repeats=repeats, progress=progress))


# ----------------------------------------------------------------------------- the same requests


def _check_workload(workload: Workload) -> None:
    if not isinstance(workload, Workload):
        raise ValueError(f"workload must be a fleet Workload, got {type(workload).__name__}")
    if workload.concurrency is not None:
        raise ValueError("workload.concurrency must be None: the engine is driven by an open-loop trace")
    if workload.seed is None:
        raise ValueError("workload.seed must be set so the engine and the simulator see the same requests")


def run_engine_workload(
    config: EngineConfig,
    workload: Workload,
    *,
    seed: int = 0,
    engine: LLMEngine | None = None,
    progress: Callable[[float], None] | None = None,
) -> pd.DataFrame:
    """Serve ``request_trace(workload)`` on the real engine in real time, in the calling thread.

    Requests (random byte prompts of the trace's lengths, greedy, ``ignore_eos``, ``max_tokens``
    = the output length) are added once their arrival time has passed; the engine steps back to
    back while it has work and sleeps until the next arrival when it has none. A request's arrival
    is its scheduled time, so a late loop counts against TTFT as it would for a real client.

    Returns :func:`~lab_core.serving.timeline.request_table` rows (times in seconds from the start:
    ``arrival``, ``first_token``, ``finish``, ``ttft``, ``tpot`` (NaN for one-token answers),
    ``e2e``; ``prompt_len``, ``output_len``, ``preemptions``, ...). ``attrs``: ``throughput`` (output tokens emitted during the arrival window
    per second of it, the simulator's definition), ``output_tokens``, ``wall_seconds``,
    ``steps``, ``busy_fraction`` (share of the wall time spent in steps), ``step_seconds`` (each
    step timed around ``LLMEngine.step()``, in ``engine.step_log``'s order from this run).
    """
    _check_workload(workload)
    trace = request_trace(workload)
    if engine is None:
        engine = LLMEngine(config)
    biggest = int((trace.prompt_len + trace.output_len).max()) if len(trace) else 0
    if biggest > engine.max_context:
        raise ValueError(
            f"a request of {biggest} tokens exceeds the engine's context length {engine.max_context}: "
            f"lower workload.max_prompt + max_output"
        )
    g = rng(seed)
    prompts = [_ids(g, n) for n in trace.prompt_len.tolist()]
    outputs = trace.output_len.tolist()
    times = trace.arrival.tolist()
    ids: list[str] = []
    n = len(times)
    log_start = len(engine.step_log)
    clock = engine.clock
    t0 = clock() + 0.01
    deadline = workload.duration + (workload.duration if workload.drain is None else workload.drain)
    nxt = 0
    step_seconds: list[float] = []
    while True:
        now = clock() - t0
        while nxt < n and times[nxt] <= now:
            ids.append(
                engine.add_request(
                    prompts[nxt], SamplingParams(max_tokens=outputs[nxt], ignore_eos=True), arrival=t0 + times[nxt]
                )
            )
            nxt += 1
            if progress is not None:
                progress(nxt / max(n, 1))
        if engine.has_work():
            before = len(engine.step_log)
            t_step = clock()
            engine.step()
            if len(engine.step_log) > before:
                step_seconds.append(clock() - t_step)
        elif nxt < n:
            time.sleep(max(0.0, times[nxt] - (clock() - t0)))
        else:
            break
        if now > deadline:
            for rid in ids:
                engine.abort(rid)
            break
    wall = clock() - t0
    window_tokens = sum(1 for rid in ids for t in engine.sequences[rid].token_times if t - t0 <= workload.duration)
    df = request_table(engine, t0, ids)
    steps = engine.step_log[log_start:]
    df.attrs.update(
        throughput=window_tokens / workload.duration,
        output_tokens=int(df.output_len.sum()),
        wall_seconds=wall,
        steps=len(steps),
        busy_fraction=sum(step_seconds) / wall if wall > 0 else math.nan,
        step_seconds=np.asarray(step_seconds),
    )
    return df


def fit_run(engine: LLMEngine, step_seconds: np.ndarray) -> StepTimeModel:
    """A :class:`StepTimeModel` fitted to the steps ``engine`` ran in ``run_engine_workload``
    (its last ``len(step_seconds)`` step-log entries, each timed around the whole ``step()``):
    pure prefill, pure decode and mixed steps as ``fit_step_model`` takes them."""
    log = engine.step_log[-len(step_seconds) :] if len(step_seconds) else []
    prefill = [(r.prefill_tokens, t) for r, t in zip(log, step_seconds) if r.prefill_tokens and not r.decode_batch]
    decode = [
        (r.sum_context, r.decode_batch, t) for r, t in zip(log, step_seconds) if r.decode_batch and not r.prefill_tokens
    ]
    mixed = [
        (r.prefill_tokens, r.decode_batch, r.sum_context, t)
        for r, t in zip(log, step_seconds)
        if r.decode_batch and r.prefill_tokens
    ]
    return fit_step_model(prefill, decode, mixed or None)


# ----------------------------------------------------------------------------- simulator vs engine


def engine_model_spec(config: EngineConfig) -> ModelSpec:
    """The engine's model as a fleet :class:`ModelSpec` (fp32 on CPU, bf16 on CUDA), for KV bytes."""
    cfg = get_config(config.model)
    name = config.model if isinstance(config.model, str) else "custom"
    return ModelSpec(
        f"engine-{name}",
        float(cfg.num_params()),
        cfg.n_layers,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.head_dim,
        bytes_per_param=2 if config.device.startswith("cuda") else 4,
    )


def fleet_config_for(config: EngineConfig, step_model: StepTimeModel) -> FleetConfig:
    """One colocated simulated instance shaped like the engine ``config`` (same token budget,
    max sequences, block size, chunked prefill, policy and KV capacity), charged ``step_model``."""
    return FleetConfig(
        model=engine_model_spec(config),
        gpu=step_model,
        prefill_gpus=0,
        decode_gpus=1,
        tp=1,
        token_budget=config.token_budget,
        max_batch=config.max_seqs,
        block_size=config.block_size,
        chunked_prefill=config.chunked_prefill,
        policy=config.policy,
        kv_tokens=config.num_blocks * config.block_size,
    )


def validate(
    config: EngineConfig,
    workload: Workload,
    *,
    seed: int = 0,
    step_model: StepTimeModel | None = None,
    calibration: str = "profile",
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """The real engine against the simulator's prediction, on the same requests.

    Unless ``step_model`` is given, ``calibration="profile"`` profiles ``config`` right before and
    right after the engine run and fits one model to both profiles (a shared machine's load
    drifts; the two bracket the run); ``calibration="run"`` fits it to the run's own steps
    (:func:`fit_run`), so the step costs and the latencies are measured under the same load and
    what is compared is the simulator's scheduling and queueing against the engine's. Runs ``run_engine_workload`` and ``simulate`` on :func:`fleet_config_for` with the same trace
    (``workload.seed``; ``seed`` when it is None). Returns a
    :func:`lab_core.sim.calibration.validation_table`: metrics ``throughput`` (tok/s), ``TTFT p50``
    and ``TPOT p50`` (s), ``measured`` by the engine, ``predicted`` by the simulator, ``rel_error``
    ((predicted - measured) / measured). ``attrs``: ``step_model``, ``engine`` (the per-request
    frame), ``simulator`` (the ``FleetResult``).
    """
    if calibration not in ("profile", "run"):
        raise ValueError(f"calibration must be 'profile' or 'run', got {calibration!r}")
    if workload.seed is None:
        workload = replace(workload, seed=seed)
    _check_workload(workload)
    samples = []
    if step_model is None and calibration == "profile":
        if progress is not None:
            progress("calibrating")
        samples.append(profile_engine(config, seed=seed))
    if progress is not None:
        progress("running the engine")
    engine = LLMEngine(config)
    measured = run_engine_workload(config, workload, seed=seed, engine=engine)
    if step_model is None and calibration == "run":
        step_model = fit_run(engine, measured.attrs["step_seconds"])
    if step_model is None:
        # Profile again after the run and fit both profiles together: on a shared machine the
        # load drifts, and samples from both sides of the run bracket what the run saw.
        if progress is not None:
            progress("calibrating again")
        samples.append(profile_engine(config, seed=seed + 1))
        step_model = fit_step_model(*(np.vstack(part) for part in zip(*samples)))
    if progress is not None:
        progress("simulating")
    result = simulate(fleet_config_for(config, step_model), workload, trace=request_trace(workload))
    sim = result.requests
    table = validation_table(
        [
            ("throughput", "tok/s", measured.attrs["throughput"], result.summary["throughput"]),
            ("TTFT p50", "s", float(measured.ttft.median()), float(sim.ttft.median())),
            ("TPOT p50", "s", float(measured.tpot.median()), float(sim.tpot.median())),
        ]
    )
    table.attrs.update(step_model=step_model, engine=measured, simulator=result)
    return table
