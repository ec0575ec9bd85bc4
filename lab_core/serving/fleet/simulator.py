"""The fleet simulator (simpy): vLLM-style engines on many GPUs, colocated or disaggregated.

Each engine instance (``tp`` GPUs) is one simpy process that runs steps back to back. A step is
planned, charged :meth:`StepTimeModel.mixed_step_time`, then completed. Per-request state lives in
flat lists indexed by request id, and a running batch is summarised by scalars (sequence count,
total context, blocks due per step), so a step costs O(1) Python work plus O(finishing sequences);
that is what lets 200 GPUs x 10K users x 60 s run in seconds.

Colocated (``prefill_gpus == 0``) step: decode every running sequence by one token, then spend
the rest of ``token_budget`` on prefill chunks (chunked prefill), or run a prefill-only step of whole
prompts while decodes wait (no chunking). Disaggregated: a prefill pool shares one queue, a finished
prompt's KV crosses ``kv_transfer_bandwidth`` (serialised per prefill instance), and the request
joins the least-loaded decode instance.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import simpy

from lab_core.llm.gpus import GPU, GPUS
from lab_core.serving.fleet.gpus import MODELS, ModelSpec, StepTimeModel, kv_capacity_tokens, roofline_step_model
from lab_core.serving.protocol import FREE, PAID
from lab_core.sim import arrivals
from lab_core.sim.metrics import percentiles
from lab_core.sim.rng import rng

POLICIES = ("fcfs", "priority")
PROMPT_RANK_S = 1e-4
"""Priority policy: each prompt token ranks a request like one that arrived this much later."""
_SAMPLES = 200  # time-series rows over the arrival window (the drain adds more)
_MIN_SAMPLE_S = 1e-3


@dataclass(frozen=True)
class SLA:
    """Service-level objective: first token within ``ttft`` s and ``tpot`` s per later token."""

    ttft: float = 0.2
    tpot: float = 1 / 30


def _check(name: str, value: Any, ok: bool, want: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {want}, got {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class FleetConfig:
    """A serving fleet. GPU counts are GPUs (multiples of ``tp``); ``prefill_gpus=0`` is colocated.

    ``gpu`` may be a :class:`StepTimeModel` (e.g. fitted on this CPU); then ``kv_tokens`` (KV
    capacity per instance) is required. ``aging``: under the priority policy a free request ranks
    like a paid one that arrived ``aging`` seconds later, so free traffic is delayed, never starved.
    """

    model: ModelSpec | str = "8B"
    gpu: GPU | StepTimeModel | str = "H100-SXM"
    prefill_gpus: int = 0
    decode_gpus: int = 1
    tp: int = 1
    token_budget: int = 8192
    max_batch: int = 256
    block_size: int = 16
    chunked_prefill: bool = True
    policy: str = "fcfs"
    kv_transfer_bandwidth: float = 50e9
    kv_tokens: int | None = None
    kv_reserve: float = 0.1
    aging: float = 2.0

    def __post_init__(self) -> None:
        if isinstance(self.model, str):
            _check("model", self.model, self.model in MODELS, f"one of {sorted(MODELS)}")
            self.model = MODELS[self.model]
        _check("model", self.model, isinstance(self.model, ModelSpec), "a ModelSpec or a name")
        if isinstance(self.gpu, str):
            _check("gpu", self.gpu, self.gpu in GPUS, f"one of {sorted(GPUS)} or a StepTimeModel")
            self.gpu = GPUS[self.gpu]
        _check("gpu", self.gpu, isinstance(self.gpu, (GPU, StepTimeModel)), "a GPU, a name or a StepTimeModel")
        _check("tp", self.tp, _is_int(self.tp) and self.tp >= 1, "an integer >= 1")
        for name, low in (("prefill_gpus", 0), ("decode_gpus", 1)):
            v = getattr(self, name)
            _check(
                name,
                v,
                _is_int(v) and v >= low and v % self.tp == 0,
                f"an integer >= {low}, a multiple of tp={self.tp}",
            )
        for name in ("token_budget", "max_batch", "block_size"):
            v = getattr(self, name)
            _check(name, v, _is_int(v) and v >= 1, "an integer >= 1")
        _check("policy", self.policy, self.policy in POLICIES, f"one of {POLICIES}")
        _check(
            "kv_transfer_bandwidth",
            self.kv_transfer_bandwidth,
            _is_num(self.kv_transfer_bandwidth) and self.kv_transfer_bandwidth > 0,
            "a number > 0",
        )
        _check("aging", self.aging, _is_num(self.aging) and self.aging >= 0, "a number >= 0")
        _check("kv_reserve", self.kv_reserve, _is_num(self.kv_reserve) and 0 <= self.kv_reserve < 1, "in [0, 1)")
        if self.kv_tokens is None:
            _check("kv_tokens", None, isinstance(self.gpu, GPU), "set when gpu is a StepTimeModel")
            kv_capacity_tokens(self.gpu, self.model, self.tp, self.kv_reserve)  # raises if weights leave no room
        else:
            _check(
                "kv_tokens",
                self.kv_tokens,
                _is_int(self.kv_tokens) and self.kv_tokens >= self.block_size,
                f"an integer >= block_size={self.block_size}",
            )

    @property
    def kv_capacity(self) -> int:
        """KV-cache tokens per instance: ``kv_tokens`` or what the GPUs' memory leaves."""
        if self.kv_tokens is not None:
            return self.kv_tokens
        return kv_capacity_tokens(self.gpu, self.model, self.tp, self.kv_reserve)

    @property
    def step_model(self) -> StepTimeModel:
        """Seconds per step of one instance."""
        if isinstance(self.gpu, StepTimeModel):
            return self.gpu
        return roofline_step_model(self.gpu, self.model, self.tp)

    @property
    def disaggregated(self) -> bool:
        """True when a separate prefill pool exists."""
        return self.prefill_gpus > 0

    @property
    def total_gpus(self) -> int:
        """All GPUs in the fleet."""
        return self.prefill_gpus + self.decode_gpus


@dataclass
class Workload:
    """Traffic: gamma arrivals at ``rate`` req/s with burstiness ``cv`` for ``duration`` s, or, with
    ``concurrency`` set, that many users each sending the next request when the last one finishes.

    Lengths are lognormal (median, sigma) clipped to ``[1, max_*]``. After ``duration`` no new
    requests come; in-flight ones get up to ``drain`` more seconds (None: until all finish).
    """

    rate: float = 10.0
    duration: float = 10.0
    cv: float = 1.0
    prompt_median: float = 512
    prompt_sigma: float = 0.8
    output_median: float = 128
    output_sigma: float = 0.8
    max_prompt: int = 4096
    max_output: int = 1024
    paid_fraction: float = 0.5
    concurrency: int | None = None
    drain: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("rate", "duration", "prompt_median", "output_median"):
            v = getattr(self, name)
            _check(name, v, _is_num(v) and v > 0, "a number > 0")
        for name in ("cv", "prompt_sigma", "output_sigma"):
            v = getattr(self, name)
            _check(name, v, _is_num(v) and v >= 0, "a number >= 0")
        for name in ("max_prompt", "max_output"):
            v = getattr(self, name)
            _check(name, v, _is_int(v) and v >= 1, "an integer >= 1")
        _check(
            "paid_fraction",
            self.paid_fraction,
            _is_num(self.paid_fraction) and 0 <= self.paid_fraction <= 1,
            "a number in [0, 1]",
        )
        if self.concurrency is not None:
            _check(
                "concurrency",
                self.concurrency,
                _is_int(self.concurrency) and self.concurrency >= 1,
                "an integer >= 1 or None",
            )
        if self.drain is not None:
            _check("drain", self.drain, _is_num(self.drain) and self.drain >= 0, "a number >= 0 or None")


@dataclass
class FleetResult:
    """One run: ``requests`` (one row per request), ``timeseries`` (fleet samples) and ``summary``.

    ``summary`` holds ttft/tpot/e2e ``_p50/_p90/_p99`` (seconds, finished requests), ``throughput``
    (output tokens/s within the arrival window), ``goodput`` (SLA-meeting requests/s),
    ``goodput_fraction``, ``tokens_per_s_per_gpu``, ``peak_kv_utilization``, ``peak_kv_bytes_per_gpu``,
    ``output_tokens``, ``preemptions``, ``requests``, ``finished`` and ``end_time``.
    """

    requests: pd.DataFrame
    timeseries: pd.DataFrame
    summary: dict[str, float]
    config: FleetConfig = field(repr=False)
    sla: SLA = field(repr=False)

    @property
    def goodput_fraction(self) -> float:
        """Fraction of all requests that finished within the SLA."""
        return self.summary["goodput_fraction"]

    @property
    def tokens_per_s_per_gpu(self) -> float:
        """Output tokens per second per GPU over the arrival window."""
        return self.summary["tokens_per_s_per_gpu"]


class _Queue:
    """A waiting queue (heap on rank) and the idle engines that pull from it."""

    __slots__ = ("heap", "idle")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int]] = []
        self.idle: list[_Engine] = []

    def push(self, rank: float, rid: int) -> None:
        heapq.heappush(self.heap, (rank, rid))
        if self.idle:
            self.idle.pop().wake.succeed()


class _Engine:
    """One instance of ``tp`` GPUs: role "both" (colocated), "prefill" or "decode"."""

    def __init__(self, fleet: _Fleet, index: int, role: str, queue: _Queue) -> None:
        self.f, self.index, self.role, self.queue = fleet, index, role, queue
        cfg = fleet.cfg
        self.bs = cfg.block_size
        self.total = fleet.kv_capacity // cfg.block_size
        self.free = self.total
        self.peak = 0
        self.running: set[int] = set()
        self.prefilling: list[list[int]] = []  # [rid, tokens left], admitted with their blocks
        self.fin: list[tuple[int, int, int]] = []  # (last decode step, rid, epoch)
        # Sequences needing a new block at step s are those with (s0 - kv0) % bs == s % bs.
        self.due = [0] * self.bs
        self.sum_ctx = 0
        # Decode steps done so far: the clock of every running sequence, since each decode step
        # advances all of them and a prefill-only step (no chunking) advances none.
        self.step = 0
        self.batch = 0
        self.link_free = 0.0
        self.wake: simpy.Event | None = None
        fleet.env.process(self._loop())

    # ---- the step loop
    def _loop(self) -> Generator[simpy.Event, Any, None]:
        env, f = self.f.env, self.f
        step_time = f.step_model.mixed_step_time
        due, bs, fin, heap = self.due, self.bs, self.fin, self.queue.heap
        fast = self.role == "decode"
        while True:
            s = self.step
            if fast and self.running and not heap and due[s % bs] <= self.free:
                # The common decode-pool step (nothing to admit, nothing to evict), inlined: it is
                # most of a large run's events.
                need = due[s % bs]
                if need:
                    self.free -= need
                    self.peak = max(self.peak, self.total - self.free)
                batch = self.batch = len(self.running)
                yield env.timeout(step_time(0, batch, self.sum_ctx))
                self.sum_ctx += batch
                f.tokens += batch
                if env.now <= f.wl.duration:
                    f.tokens_window += batch
                if fin[0][0] <= s:
                    self._finish_due(s, env.now)
                self.step = s + 1
                continue
            tokens = self._plan()
            if not tokens and not self.batch:
                self.wake = env.event()
                self.queue.idle.append(self)
                yield self.wake
                continue
            yield env.timeout(step_time(tokens, self.batch, self.sum_ctx))
            self._complete(env.now)

    def _plan(self) -> int:
        """Choose this step's decodes and prefill chunks; returns the prefill tokens."""
        s, f = self.step, self.f
        if self.role == "prefill":
            self.batch = 0
            return self._admit(f.cfg.token_budget, whole=not f.cfg.chunked_prefill)
        if self.role == "both" and not f.cfg.chunked_prefill and self._admissible():
            self.batch = 0  # a whole-prompt prefill step: running decodes wait
            return self._admit(f.cfg.token_budget, whole=True)
        preempted = False
        if self.role == "decode" and self.queue.heap:
            self._admit_joiners(s)
        need = self.due[s % self.bs]
        while need > self.free:
            need -= self._preempt(self._victim(), s)
            preempted = True
        self.free -= need
        self.batch = len(self.running)
        used = self.total - self.free
        if used > self.peak:
            self.peak = used
        if self.role == "decode" or preempted or not f.cfg.chunked_prefill:
            return 0  # like vLLM, no new prefills in a step that had to preempt
        return self._admit(f.cfg.token_budget - self.batch, whole=False)

    def _admissible(self) -> bool:
        heap = self.queue.heap
        if not heap or len(self.running) + len(self.prefilling) >= self.f.cfg.max_batch:
            return False
        return -(-self.f.plen[heap[0][1]] // self.bs) <= self.free

    def _admit(self, budget: int, *, whole: bool) -> int:
        """Fill ``budget`` with partial prefills, then new requests in rank order."""
        f, heap, bs = self.f, self.queue.heap, self.bs
        holds_kv = self.role != "prefill"
        tokens = 0
        for entry in self.prefilling:
            if budget <= 0:
                break
            take = min(entry[1], budget)
            entry[1] -= take
            budget -= take
            tokens += take
        max_batch = f.cfg.max_batch
        while heap and budget > 0:
            rid = heap[0][1]
            length = f.plen[rid]
            if whole and tokens and length > budget:
                break  # a whole prompt runs alone only when it is the step's first
            if holds_kv:
                if len(self.running) + len(self.prefilling) >= max_batch:
                    break
                blocks = -(-length // bs)
                if blocks > self.free:
                    break  # head-of-line: the next request waits for memory, as in vLLM
                self.free -= blocks
            heapq.heappop(heap)
            take = length if whole else min(length, budget)
            self.prefilling.append([rid, length - take])
            budget -= take
            tokens += take
        if holds_kv and self.total - self.free > self.peak:
            self.peak = self.total - self.free
        return tokens

    def _admit_joiners(self, s: int) -> None:
        f, heap, bs = self.f, self.queue.heap, self.bs
        while heap and len(self.running) < f.cfg.max_batch:
            rid = heap[0][1]
            kv0 = f.plen[rid]
            if -(-(kv0 + 1) // bs) > self.free:
                break
            heapq.heappop(heap)
            self.free -= -(-kv0 // bs)
            self._join(rid, s, kv0)

    def _join(self, rid: int, s0: int, kv0: int) -> None:
        f = self.f
        f.s0[rid], f.kv0[rid], f.gen0[rid] = s0, kv0, f.gen[rid]
        self.running.add(rid)
        self.sum_ctx += kv0
        self.due[(s0 - kv0) % self.bs] += 1
        heapq.heappush(self.fin, (s0 + f.output[rid] - f.gen[rid] - 1, rid, f.epoch[rid]))

    def _leave(self, rid: int, kv: int) -> None:
        f = self.f
        self.running.discard(rid)
        self.sum_ctx -= kv
        self.due[(f.s0[rid] - f.kv0[rid]) % self.bs] -= 1
        self.free += -(-kv // self.bs)
        f.epoch[rid] += 1

    def _victim(self) -> int:
        rank = self.f.rank
        pool = list(self.running) + [e[0] for e in self.prefilling]
        return max(pool, key=lambda r: (rank[r], r))  # lowest priority, then newest

    def _preempt(self, rid: int, s: int) -> int:
        """Evict ``rid`` for recompute; returns 1 if it was due a block this step."""
        f = self.f
        f.preemptions += 1
        if rid in self.running:
            done = s - f.s0[rid]
            was_due = int((f.s0[rid] - f.kv0[rid]) % self.bs == s % self.bs)
            self._leave(rid, f.kv0[rid] + done)
            f.gen[rid] = f.gen0[rid] + done
        else:
            was_due = 0
            self.prefilling = [e for e in self.prefilling if e[0] != rid]
            self.free += -(-f.plen[rid] // self.bs)
        f.plen[rid] = f.prompt[rid] + f.gen[rid]
        if self.role == "decode":
            f.load[self.index] -= 1
            f.prefill_queue.push(f.rank[rid], rid)
        else:
            self.queue.push(f.rank[rid], rid)
        return was_due

    def _complete(self, now: float) -> None:
        f, s = self.f, self.step
        if self.batch:
            self.sum_ctx += self.batch
            f.tokens += self.batch
            if now <= f.wl.duration:
                f.tokens_window += self.batch
            self._finish_due(s, now)
            self.step = s + 1
        if self.prefilling and any(e[1] == 0 for e in self.prefilling):
            done = [e[0] for e in self.prefilling if e[1] == 0]
            self.prefilling = [e for e in self.prefilling if e[1]]
            for rid in done:
                self._prefilled(rid, now)

    def _finish_due(self, s: int, now: float) -> None:
        """Retire the sequences whose last token came out of decode step ``s``."""
        f, fin = self.f, self.fin
        while fin and fin[0][0] <= s:
            _, rid, ep = heapq.heappop(fin)
            if ep == f.epoch[rid]:  # else preempted since: a stale entry
                self._leave(rid, f.kv0[rid] + s + 1 - f.s0[rid])
                f.load[self.index] -= 1
                f.finish_request(rid, now)

    def _prefilled(self, rid: int, now: float) -> None:
        f = self.f
        f.gen[rid] += 1
        if self.role == "prefill":
            # The KV leaves over this instance's link, one transfer after another.
            start = max(now, self.link_free)
            self.link_free = start + f.plen[rid] * f.kv_bytes / f.cfg.kv_transfer_bandwidth
            f.env.timeout(self.link_free - now).callbacks.append(lambda _e, r=rid: f.deliver(r))
            return
        f.count_tokens(1, now)
        f.first_token_at(rid, now)
        if f.gen[rid] >= f.output[rid]:
            self.free += -(-f.plen[rid] // self.bs)
            f.load[self.index] -= 1
            f.finish_request(rid, now)
        else:
            self._join(rid, self.step, f.plen[rid])


class _Fleet:
    """Shared state of one run: request table, engines, routing and sampling."""

    def __init__(self, cfg: FleetConfig, wl: Workload, trace: pd.DataFrame | None = None) -> None:
        biggest = wl.max_prompt + wl.max_output
        self.kv_capacity = cfg.kv_capacity
        if -(-biggest // cfg.block_size) > self.kv_capacity // cfg.block_size:
            raise ValueError(
                f"kv_tokens={self.kv_capacity} cannot hold one request of max_prompt + max_output = {biggest} tokens"
            )
        self.cfg, self.wl, self.trace = cfg, wl, trace
        self.env = simpy.Environment()
        self.step_model = cfg.step_model
        self.kv_bytes = cfg.model.kv_bytes_per_token
        self.rng = rng(wl.seed)
        self.horizon = math.inf if wl.drain is None else wl.duration + wl.drain
        names = ("arrival", "prompt", "output", "tier", "rank", "plen", "gen", "gen0", "s0", "kv0", "epoch")
        for name in names:
            setattr(self, name, [])
        self.first: list[float] = []
        self.finish: list[float] = []
        self.pending: list[tuple[int, int, int]] = []
        self.active = 0
        self.preemptions = 0
        self.tokens = 0
        self.tokens_window = 0
        self.arrivals_done = False
        n_dec, n_pre = cfg.decode_gpus // cfg.tp, cfg.prefill_gpus // cfg.tp
        self.load = np.zeros(n_dec, dtype=np.int64)
        self.prefill_queue = _Queue()
        role = "decode" if n_pre else "both"
        self.engines = [_Engine(self, i, role, _Queue()) for i in range(n_dec)]
        self.prefill = [_Engine(self, i, "prefill", self.prefill_queue) for i in range(n_pre)]
        self.samples: list[tuple[float, int, int, float, float]] = []

    # ---- requests
    def _draw(self) -> None:
        wl, g = self.wl, self.rng
        n = 1024
        p = np.clip(np.rint(g.lognormal(math.log(wl.prompt_median), wl.prompt_sigma, n)), 1, wl.max_prompt)
        o = np.clip(np.rint(g.lognormal(math.log(wl.output_median), wl.output_sigma, n)), 1, wl.max_output)
        t = np.where(g.random(n) < wl.paid_fraction, PAID, FREE)
        self.pending = list(zip(p.astype(int).tolist(), o.astype(int).tolist(), t.tolist()))[::-1]

    def arrive(self, now: float) -> None:
        """A new request at ``now``: record it and route it."""
        if not self.pending:
            self._draw()
        prompt, output, tier = self.pending.pop()
        rid = len(self.arrival)
        self.arrival.append(now)
        self.prompt.append(prompt)
        self.output.append(output)
        self.tier.append(tier)
        if self.cfg.policy == "fcfs":
            rank = now
        else:
            rank = now + tier * self.cfg.aging + prompt * PROMPT_RANK_S
        self.rank.append(rank)
        self.plen.append(prompt)
        for name in ("gen", "gen0", "s0", "kv0", "epoch"):
            getattr(self, name).append(0)
        self.first.append(math.nan)
        self.finish.append(math.nan)
        self.active += 1
        if self.prefill:
            self.prefill_queue.push(rank, rid)
        else:
            i = int(self.load.argmin())
            self.load[i] += 1
            self.engines[i].queue.push(rank, rid)

    def deliver(self, rid: int) -> None:
        """The KV of ``rid`` reached the decode pool: its token streams, it joins a decode queue."""
        now = self.env.now
        self.count_tokens(1, now)
        self.first_token_at(rid, now)
        if self.gen[rid] >= self.output[rid]:
            self.finish_request(rid, now)
            return
        i = int(self.load.argmin())
        self.load[i] += 1
        self.engines[i].queue.push(self.rank[rid], rid)

    def first_token_at(self, rid: int, now: float) -> None:
        """Record the first token (a recomputed prefill does not emit it again)."""
        if self.first[rid] != self.first[rid]:  # NaN: not yet
            self.first[rid] = now

    def count_tokens(self, n: int, now: float) -> None:
        """Count ``n`` output tokens emitted at ``now``."""
        self.tokens += n
        if now <= self.wl.duration:
            self.tokens_window += n

    def finish_request(self, rid: int, now: float) -> None:
        """Mark ``rid`` done; a closed-loop user sends the next one at once."""
        self.finish[rid] = now
        self.active -= 1
        if self.wl.concurrency is not None and now < self.wl.duration:
            self.arrive(now)

    # ---- running
    def run(self, progress: Callable[[float], None] | None) -> None:
        """Drive arrivals and sample until every request is done or the drain ends."""
        env, wl = self.env, self.wl
        if wl.concurrency is not None:
            for _ in range(wl.concurrency):
                self.arrive(0.0)
            self.arrivals_done = True
        else:
            trace = self.trace if self.trace is not None else request_trace(wl)
            tiers = np.where(trace["tier"].to_numpy() == "paid", PAID, FREE)
            self.pending = list(
                zip(trace["prompt_len"].astype(int).tolist(), trace["output_len"].astype(int).tolist(), tiers.tolist())
            )[::-1]
            env.process(self._arrivals(trace["arrival"].to_numpy(dtype=float)))
        self.stop = env.event()
        if math.isfinite(self.horizon):
            env.timeout(self.horizon).callbacks.append(lambda _e: self._halt())
        env.process(self._sampler(progress))
        env.run(until=self.stop)
        if progress is not None:
            progress(1.0)

    def _arrivals(self, times: np.ndarray) -> Generator[simpy.Event, Any, None]:
        for t in times.tolist():
            yield self.env.timeout(t - self.env.now)
            self.arrive(t)
        self.arrivals_done = True

    def _sampler(self, progress: Callable[[float], None] | None) -> Generator[simpy.Event, Any, None]:
        env = self.env
        dt = max(self.wl.duration / _SAMPLES, _MIN_SAMPLE_S)
        holders = self.engines
        capacity = sum(e.total for e in holders)
        last = 0
        while True:
            yield env.timeout(dt)
            queued = len(self.prefill_queue.heap) + sum(len(e.queue.heap) for e in holders)
            running = sum(len(e.running) for e in holders)
            used = capacity - sum(e.free for e in holders)
            self.samples.append((env.now, queued, running, used / capacity, (self.tokens - last) / dt))
            last = self.tokens
            if progress is not None:
                progress(min(0.99, env.now / self.wl.duration))
            if self.arrivals_done and self.active == 0:
                self._halt()
                return

    def _halt(self) -> None:
        if not self.stop.triggered:
            self.stop.succeed()

    def result(self, sla: SLA) -> FleetResult:
        """Tidy tables and the summary."""
        cfg, wl = self.cfg, self.wl
        arrival = np.asarray(self.arrival)
        first = np.asarray(self.first)
        finish = np.asarray(self.finish)
        output = np.asarray(self.output)
        ttft = first - arrival
        with np.errstate(invalid="ignore", divide="ignore"):
            tpot = np.where(output > 1, (finish - first) / (output - 1), np.nan)
        e2e = finish - arrival
        requests = pd.DataFrame(
            {
                "arrival": arrival,
                "first_token": first,
                "finish": finish,
                "prompt_len": np.asarray(self.prompt, dtype=np.int64),
                "output_len": output.astype(np.int64),
                "ttft": ttft,
                "tpot": tpot,
                "e2e": e2e,
                "tier": np.where(np.asarray(self.tier) == PAID, "paid", "free"),
            }
        )
        timeseries = pd.DataFrame(
            self.samples, columns=["t", "queue_depth", "running", "kv_utilization", "tokens_per_s"]
        )
        met = np.isfinite(finish) & (ttft <= sla.ttft) & ~(tpot > sla.tpot)
        n = len(arrival)
        summary: dict[str, float] = {"requests": float(n), "finished": float(np.isfinite(finish).sum())}
        for name, values in (("ttft", ttft), ("tpot", tpot), ("e2e", e2e)):
            for q, v in percentiles(values, (50, 90, 99)).items():
                summary[f"{name}_{q}"] = v
        throughput = self.tokens_window / wl.duration
        holders = self.engines
        summary.update(
            throughput=throughput,
            goodput=float(met.sum()) / wl.duration,
            goodput_fraction=float(met.sum()) / n if n else math.nan,
            tokens_per_s_per_gpu=throughput / cfg.total_gpus,
            peak_kv_utilization=max(e.peak / e.total for e in holders),
            peak_kv_bytes_per_gpu=max(e.peak for e in holders) * cfg.block_size * self.kv_bytes / cfg.tp,
            output_tokens=float(self.tokens),
            preemptions=float(self.preemptions),
            end_time=float(self.env.now),
        )
        return FleetResult(requests, timeseries, summary, cfg, sla)


def request_trace(workload: Workload) -> pd.DataFrame:
    """The requests an open-loop ``workload`` sends: ``arrival`` (s), ``prompt_len``, ``output_len``
    and ``tier`` ("paid"/"free"), seeded by ``workload.seed``. ``simulate`` serves exactly these, and
    the calibration replays them on the real engine."""
    if workload.concurrency is not None:
        raise ValueError(
            "request_trace needs an open-loop workload (concurrency=None): a closed loop's "
            "arrivals depend on when earlier requests finish"
        )
    g = rng(workload.seed)
    # Arrival gaps get their own seed, so they are not the same random numbers as the lengths.
    times = arrivals.gamma(workload.rate, workload.duration, cv=workload.cv, seed=int(g.integers(2**31)))
    n = len(times)
    prompt = np.clip(
        np.rint(g.lognormal(math.log(workload.prompt_median), workload.prompt_sigma, n)), 1, workload.max_prompt
    )
    output = np.clip(
        np.rint(g.lognormal(math.log(workload.output_median), workload.output_sigma, n)), 1, workload.max_output
    )
    paid = g.random(n) < workload.paid_fraction
    return pd.DataFrame(
        {
            "arrival": times,
            "prompt_len": prompt.astype(np.int64),
            "output_len": output.astype(np.int64),
            "tier": np.where(paid, "paid", "free"),
        }
    )


def simulate(
    config: FleetConfig,
    workload: Workload,
    *,
    sla: SLA | None = None,
    progress: Callable[[float], None] | None = None,
    trace: pd.DataFrame | None = None,
) -> FleetResult:
    """Run ``workload`` on the fleet ``config``; ``progress(fraction)`` is called as simulated time passes.
    ``trace`` (``request_trace``'s columns) replaces an open-loop workload's own draws."""
    if not isinstance(config, FleetConfig):
        raise ValueError(f"config must be a FleetConfig, got {type(config).__name__}")
    if not isinstance(workload, Workload):
        raise ValueError(f"workload must be a Workload, got {type(workload).__name__}")
    if trace is not None:
        missing = {"arrival", "prompt_len", "output_len", "tier"} - set(trace.columns)
        if missing or workload.concurrency is not None:
            raise ValueError(
                f"trace must have columns arrival, prompt_len, output_len, tier (missing "
                f"{sorted(missing)}) and the workload must be open loop"
            )
    fleet = _Fleet(config, workload, trace)
    fleet.run(progress)
    return fleet.result(sla or SLA())
