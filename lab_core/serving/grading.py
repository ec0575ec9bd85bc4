"""Graders for Lab 07's notebook, so that its test cells stay one line long.

* :func:`compare_block_manager` -- the student's ``BlockManager`` subclass against the reference
  on generated scripts of allocate / grow / commit / free: the same block tables, returned cached
  counts, reference counts and free-list order (which is the LRU eviction order).
* :func:`check_blocks_in_engine` -- the engine run on the student's block manager: the same tokens
  as the reference, prefix hits, and every block back on the free list after finishes and aborts.
* :func:`compare_scheduler` -- the student's ``Scheduler`` subclass against the reference, step by
  step on generated request mixes (no model: a step advances what it planned): the same plans
  and preemptions under every budget, block count, chunking and policy.
* :func:`check_scheduler_in_engine` -- the engine on the student's scheduler gives the reference
  engine's tokens.
* :func:`compare_admission` -- ``admit`` / ``settle`` against the reference arithmetic on generated
  request streams with a manual clock: the same decisions and the same tokens left.
* :func:`check_fleet_answer` -- the student's fleet meets the SLA in the simulator and is within
  one GPU of the capacity planner's smallest.

Every check raises ``AssertionError`` with a readable counterexample; a ``NotImplementedError``
from a blank exercise is let through unchanged. Hypothesis runs derandomized.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from lab_core.grading_kit import hypothesis_settings, run_property  # before hypothesis: sets its cache folder

# isort: split

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from lab_core.llm.model import Transformer, build_model
from lab_core.ratelimit.memory import TokenBucket
from lab_core.serving.blocks import BlockManager, OutOfBlocks
from lab_core.serving.engine import EngineConfig, LLMEngine
from lab_core.serving.fleet import FleetConfig, Workload, plan_capacity, simulate
from lab_core.serving.protocol import FREE, PAID, SamplingParams
from lab_core.serving.scheduler import Scheduler, SchedulerConfig
from lab_core.serving.sequence import Sequence
from lab_core.sim.clock import ManualClock

__all__ = [
    "check_blocks_in_engine",
    "check_fleet_answer",
    "check_scheduler_in_engine",
    "compare_admission",
    "compare_block_manager",
    "compare_scheduler",
    "reference_admit",
    "reference_settle",
]


@lru_cache(maxsize=1)
def _model() -> Transformer:
    return build_model("tiny")


def _seq(name: str, tokens: list[int], max_tokens: int = 4, priority: int = FREE, arrival: float = 0.0) -> Sequence:
    return Sequence(name, list(tokens), SamplingParams(max_tokens=max_tokens, ignore_eos=True), priority, arrival)


# --- exercise 1: the block manager --------------------------------------------------------------


def _state(bm: BlockManager) -> dict[str, Any]:
    return {"ref counts": [b.ref_count for b in bm.blocks], "free list (LRU first)": list(bm.free)}


_PREFIXES = [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 9, 9], [7, 7, 7, 7, 7, 7]]


@st.composite
def _block_scripts(draw: st.DrawFn) -> tuple[int, int, list[tuple[str, int, list[int]]]]:
    block_size = draw(st.sampled_from([1, 2, 3]))
    num_blocks = draw(st.integers(3, 14))
    script = []
    for _ in range(draw(st.integers(1, 25))):
        op = draw(st.sampled_from(["new", "new", "grow", "free", "abort"]))
        prefix = draw(st.sampled_from(_PREFIXES))
        tail = draw(st.lists(st.integers(0, 3), max_size=5))
        script.append((op, draw(st.integers(0, 4)), prefix[: draw(st.integers(1, 6))] + tail))
    return num_blocks, block_size, script


def _refused(bm: BlockManager, seq: Sequence) -> str:
    # What an allocate that cannot fit did: the reference raises OutOfBlocks before touching anything.
    try:
        return f"returned {bm.allocate(seq)}"
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - the student's exception is part of the answer compared
        return f"raised {type(exc).__name__}"


def _run_blocks(cls: type, num_blocks: int, block_size: int, script: list) -> list[tuple[str, Any]]:
    bm = cls(num_blocks, block_size)
    live: dict[int, Sequence] = {}
    log: list[tuple[str, Any]] = []
    for op, key, tokens in script:
        seq = live.get(key)
        if op == "new" and seq is None:
            seq = _seq(str(key), tokens)
            if bm.can_allocate(seq):
                cached = bm.allocate(seq)
                seq.computed = len(seq.tokens)
                bm.commit(seq)
                live[key] = seq
                log.append((f"allocate({tokens}) returned", cached))
                log.append((f"block table of {tokens}", list(seq.block_table)))
            else:
                log.append((f"allocate({tokens}) with {bm.num_free} free blocks, too few", _refused(bm, seq)))
                log.append(
                    (f"block table of {tokens} after it (a refused allocate changes nothing)", list(seq.block_table))
                )
        elif op == "grow" and seq is not None:
            seq.tokens.append(tokens[0])
            if bm.can_grow(seq, len(seq.tokens)):
                bm.grow(seq, len(seq.tokens))
                seq.computed = len(seq.tokens)
                bm.commit(seq)
            else:
                seq.tokens.pop()
        elif op == "free" and seq is not None:
            bm.free_sequence(live.pop(key))
            log.append((f"block table after free_sequence({seq.tokens})", list(seq.block_table)))
        elif op == "abort":
            # Aborted before its first step: only the shared prefix was ever computed.
            seq = _seq("aborted", tokens)
            if bm.can_allocate(seq):
                seq.computed = bm.allocate(seq)
                bm.free_sequence(seq)
        log.append((f"after {op} {tokens}", _state(bm)))
    return log


def _compare_block_case(cls: type, num_blocks: int, block_size: int, script: list) -> None:
    want = _run_blocks(BlockManager, num_blocks, block_size, script)
    got = _run_blocks(cls, num_blocks, block_size, script)
    for (what, w), (_, g) in zip(want, got):
        assert g == w, (
            f"num_blocks={num_blocks}, block_size={block_size}: {what}\n"
            f"  expected: {w}\n  yours:    {g}\n  script (op, sequence, tokens): {script}"
        )
    assert len(got) == len(want), "your manager refused or accepted a different set of allocations"


def compare_block_manager(cls: type, max_examples: int = 120) -> None:
    """``cls`` behaves as ``BlockManager`` on hand-made and generated operation scripts."""
    explicit = [
        (8, 2, [("new", 0, [1, 2, 3, 4, 5]), ("new", 1, [1, 2, 3, 4, 9]), ("free", 0, [0]), ("free", 1, [0])]),
        (4, 2, [("new", 0, [1, 2, 3, 4]), ("free", 0, [0]), ("new", 1, [1, 2, 3, 4, 5])]),
        (
            4,
            2,
            [("new", 0, [1, 2, 3, 4]), ("free", 0, [0]), ("new", 1, [9, 9]), ("new", 2, [8, 8]), ("new", 3, [1, 2, 3])],
        ),
        (6, 3, [("new", 0, [1, 2, 3, 4, 5, 6]), ("new", 1, [1, 2, 3, 4, 5, 6])]),
        (8, 2, [("new", 0, [1, 2, 3, 4]), ("abort", 1, [1, 2, 3, 4, 5, 6, 7]), ("new", 2, [9, 9, 9, 9, 9, 9, 9, 9])]),
        # Too few free blocks for the uncached part: OutOfBlocks, and the shared prefix stays as it was.
        (4, 2, [("new", 0, [1, 2, 3, 4]), ("new", 1, [1, 2, 3, 4, 5, 6, 7, 8, 9]), ("free", 0, [0])]),
    ]
    for case in explicit:
        _compare_block_case(cls, *case)

    @hypothesis_settings(max_examples)
    @given(_block_scripts())
    def test(case: tuple[int, int, list]) -> None:
        _compare_block_case(cls, *case)

    run_property(test)


def check_blocks_in_engine(cls: type) -> None:
    """The engine on ``cls``: reference tokens, shared prefixes counted, no block leaked by
    finishing, aborting mid-prefill or aborting mid-decode."""
    prompts = [f"Shared system prompt for every user of the course. Q{i}" for i in range(6)]
    params = SamplingParams(max_tokens=10, ignore_eos=True)
    config = EngineConfig(num_blocks=64, block_size=4, token_budget=24)
    ref = LLMEngine(config, model=_model())
    want = [c.token_ids for c in ref.generate(prompts, params)]
    eng = LLMEngine(config, model=_model(), block_manager=cls)
    try:
        got = eng.generate(prompts, params)
    except OutOfBlocks as exc:
        raise AssertionError(
            f"the engine ran out of blocks on your manager, which the reference never does "
            f"with {config.num_blocks} blocks: {exc} (can_allocate counts shared blocks as free)"
        ) from None
    assert [c.token_ids for c in got] == want, "the engine on your block manager generated different tokens"
    assert sum(c.cached_tokens for c in got) > 0, "no prompt found the shared prefix of the ones before it"
    assert eng.blocks.num_free == config.num_blocks, (
        f"every request finished, yet {config.num_blocks - eng.blocks.num_free} blocks are not free"
    )
    for steps in (1, 4, 9):
        fresh = [f"{steps}-{i} nothing cached for this one, a prompt of its own" for i in range(4)]
        ids = [eng.add_request(p, SamplingParams(max_tokens=50, ignore_eos=True)) for p in fresh]
        for _ in range(steps):
            eng.step()
        for rid in ids:
            eng.abort(rid)
        leaked = config.num_blocks - eng.blocks.num_free
        assert leaked == 0, f"aborting 4 requests after {steps} step(s) left {leaked} blocks unfreed (leak)"


# --- exercise 2: one continuous-batching step ---------------------------------------------------


_SYSTEM_PROMPT = [100 + j for j in range(24)]


@st.composite
def _sched_cases(draw: st.DrawFn) -> tuple[SchedulerConfig, int, int, list[tuple[int, int, int, float, int]]]:
    config = SchedulerConfig(
        token_budget=draw(st.sampled_from([1, 2, 3, 8, 16, 40])),
        max_seqs=draw(st.integers(1, 6)),
        chunked_prefill=draw(st.booleans()),
        policy=draw(st.sampled_from(["fcfs", "priority"])),
    )
    block_size = draw(st.sampled_from([2, 4]))
    requests = []
    for _ in range(draw(st.integers(1, 7))):
        prompt = draw(st.integers(1, 30))
        shared = min(prompt, draw(st.sampled_from([0, 0, 4, 8, 12, 16, 24])))
        requests.append(
            (
                prompt,
                draw(st.integers(1, 12)),
                draw(st.sampled_from([PAID, FREE])),
                float(draw(st.integers(0, 6))),
                shared,
            )
        )
    need = max(-(-(p + m) // block_size) for p, m, *_ in requests)
    return config, block_size, draw(st.integers(need, need + 12)), requests


def _prompt(i: int, length: int, shared: int) -> list[int]:
    # The first ``shared`` tokens are a system prompt every such request has; the rest are its own.
    return _SYSTEM_PROMPT[:shared] + [(i * 7 + j) % 50 for j in range(length - shared)]


def _run_scheduler(
    cls: type,
    config: SchedulerConfig,
    block_size: int,
    num_blocks: int,
    requests: list[tuple[int, int, int, float, int]],
) -> list[Any]:
    sched = cls(BlockManager(num_blocks, block_size), config)
    pending = sorted(enumerate(requests), key=lambda r: r[1][3])
    trace: list[Any] = []
    for step in range(400):
        while pending and pending[0][1][3] <= step:
            i, (prompt, max_tokens, priority, arrival, shared) = pending.pop(0)
            sched.add(_seq(f"r{i}", _prompt(i, prompt, shared), max_tokens, priority, arrival))
        if not sched.has_work() and not pending:
            return trace
        plan = sched.schedule()
        trace.append((step, [(s.request_id, n) for s, n in plan.work], [s.request_id for s in plan.preempted]))
        for seq, n in plan.work:
            seq.computed += n
            # As the engine does: computed full blocks become a prefix later prompts find cached.
            sched.blocks.commit(seq)
            if seq.computed == len(seq.tokens):
                seq.tokens.append(0)
                if len(seq.output) >= seq.params.max_tokens:
                    sched.remove(seq)
    raise AssertionError("requests still unfinished after 400 steps: the scheduler stalls")


def _compare_sched_case(cls: type, config: SchedulerConfig, block_size: int, num_blocks: int, requests: list) -> None:
    want = _run_scheduler(Scheduler, config, block_size, num_blocks, requests)
    got = _run_scheduler(cls, config, block_size, num_blocks, requests)
    for w, g in zip(want, got):
        assert g == w, (
            f"{config}, block_size={block_size}, num_blocks={num_blocks}\n"
            f"  requests (prompt tokens, max_tokens, priority 0=paid 1=free, arrival step, leading tokens of the\n"
            f"  system prompt they share): {requests}\n"
            f"  step {w[0]}: expected work (id, tokens) {w[1]}, preempted {w[2]}\n"
            f"  step {g[0]}: yours             {g[1]}, preempted {g[2]}"
        )
    assert len(got) == len(want), f"the reference finished in {len(want)} steps, yours in {len(got)}"


def compare_scheduler(cls: type, max_examples: int = 120) -> None:
    """``cls`` plans every step as ``Scheduler`` does, on hand-made and generated request mixes."""
    explicit = [
        (
            SchedulerConfig(token_budget=8, max_seqs=4),
            4,
            40,
            [(20, 3, FREE, 0.0, 0), (3, 6, FREE, 0.0, 0), (5, 2, FREE, 1.0, 0)],
        ),
        (
            SchedulerConfig(token_budget=8, max_seqs=4, chunked_prefill=False),
            4,
            40,
            [(20, 3, FREE, 0.0, 0), (3, 6, FREE, 0.0, 0), (5, 2, FREE, 2.0, 0)],
        ),
        (
            SchedulerConfig(token_budget=16, max_seqs=1, policy="priority"),
            4,
            40,
            [(4, 2, FREE, 0.0, 0), (4, 2, PAID, 0.0, 0)],
        ),
        (
            SchedulerConfig(token_budget=16, max_seqs=4, policy="priority"),
            2,
            9,
            [(6, 8, FREE, 0.0, 0), (6, 8, PAID, 0.0, 0)],
        ),
        # A preemption frees blocks a waiting paid request could use: it must still wait a step.
        (
            SchedulerConfig(token_budget=16, max_seqs=4, policy="priority"),
            2,
            10,
            [(8, 10, PAID, 0.0, 0), (8, 10, FREE, 0.0, 0), (2, 1, PAID, 1.0, 0)],
        ),
        # Chunking off: a prompt whose 8-token prefix is cached costs only its 3 other tokens, so it
        # joins the running decode at once although its 11 tokens exceed the 7 left of the budget.
        (
            SchedulerConfig(token_budget=8, max_seqs=4, chunked_prefill=False),
            4,
            40,
            [(12, 6, FREE, 0.0, 8), (11, 2, FREE, 3.0, 8)],
        ),
    ]
    for case in explicit:
        _compare_sched_case(cls, *case)

    @hypothesis_settings(max_examples)
    @given(_sched_cases())
    def test(case: tuple) -> None:
        _compare_sched_case(cls, *case)

    run_property(test)


def check_scheduler_in_engine(cls: type) -> None:
    """The engine on ``cls`` generates what the reference engine does, under preemption."""
    prompts = [f"request {i} " * (i + 2) for i in range(6)]
    params = SamplingParams(max_tokens=16, ignore_eos=True)
    config = EngineConfig(num_blocks=40, block_size=4, token_budget=20, max_seqs=4, policy="priority")
    ref = LLMEngine(config, model=_model())
    want = [c.token_ids for c in ref.generate(prompts, params)]
    eng = LLMEngine(config, model=_model(), scheduler=cls)
    got = eng.generate(prompts, params)
    assert [c.token_ids for c in got] == want, "the engine on your scheduler generated different tokens"
    assert ref.scheduler.preemptions > 0 and eng.blocks.num_free == config.num_blocks


# --- exercise 3: tokens/min with reservation and refund -----------------------------------------


def reference_admit(requests: TokenBucket, tokens: TokenBucket, user: str, prompt_tokens: int, max_tokens: int) -> bool:
    """One request and ``prompt_tokens + max_tokens`` tokens, both or neither."""
    if not requests.acquire(user, 1).allowed:
        return False
    if not tokens.acquire(user, prompt_tokens + max_tokens).allowed:
        requests.refund(user, 1)
        return False
    return True


def reference_settle(tokens: TokenBucket, user: str, max_tokens: int, used_tokens: int) -> None:
    """Give back the output tokens reserved and not generated."""
    tokens.refund(user, max(0, max_tokens - used_tokens))


def _left(bucket: TokenBucket, user: str) -> float:
    # A request of cost 1 that is then refunded reads the level without changing it.
    d = bucket.acquire(user, 1)
    if d.allowed:
        bucket.refund(user, 1)
        return d.remaining + 1
    return d.remaining


@st.composite
def _admission_cases(draw: st.DrawFn) -> list[tuple[float, str, int, int, int]]:
    events, t = [], 0.0
    for _ in range(draw(st.integers(1, 30))):
        t += draw(st.sampled_from([0.0, 0.5, 3.0, 20.0]))
        max_tokens = draw(st.integers(1, 900))
        # Usage can exceed the reservation (the count of tokens billed is not the engine's limit).
        used = draw(
            st.one_of(st.just(max_tokens), st.just(0), st.integers(0, max_tokens), st.integers(max_tokens + 1, 1200))
        )
        events.append((t, draw(st.sampled_from(["ann", "ben"])), draw(st.integers(1, 900)), max_tokens, used))
    return events


def _settle(settle: Callable, tokens: TokenBucket, user: str, max_tokens: int, used: int) -> str:
    # What settling did: the reference never raises, whatever the usage.
    try:
        settle(tokens, user, max_tokens, used)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - the student's exception is part of the answer compared
        return f"raised {type(exc).__name__}: {exc}"
    return "settled"


def _run_admission(admit: Callable, settle: Callable, events: list) -> list[Any]:
    clock = ManualClock()
    requests = TokenBucket(5, 60, clock=clock)
    tokens = TokenBucket(2000, 60, clock=clock)
    out = []
    for t, user, prompt, max_tokens, used in events:
        clock.set(t)
        ok = admit(requests, tokens, user, prompt, max_tokens)
        settled = _settle(settle, tokens, user, max_tokens, used) if ok else "not admitted"
        out.append(
            (
                t,
                user,
                prompt,
                max_tokens,
                used,
                bool(ok),
                settled,
                round(_left(requests, user), 6),
                round(_left(tokens, user), 6),
            )
        )
    return out


def compare_admission(admit: Callable, settle: Callable, max_examples: int = 120) -> None:
    """``admit``/``settle`` make the same decisions and leave the same tokens as the reference,
    with 5 requests/min and 2,000 tokens/min per user."""

    def case(events: list) -> None:
        want = _run_admission(reference_admit, reference_settle, events)
        got = _run_admission(admit, settle, events)
        for w, g in zip(want, got):
            assert g == w, (
                "limits: 5 requests/min and 2,000 tokens/min per user; events (time s, user, prompt, max_tokens, used):\n"
                f"  {events}\n  at t={w[0]} {w[1]} prompt={w[2]} max_tokens={w[3]} used={w[4]}:\n"
                f"  expected admitted={w[5]} ({w[6]}), requests left={w[7]}, tokens left={w[8]}\n"
                f"  yours    admitted={g[5]} ({g[6]}), requests left={g[7]}, tokens left={g[8]}"
            )

    case([(0.0, "ann", 100, 1500, 10), (0.0, "ann", 100, 1500, 10)])
    case([(0.0, "ann", 100, 1500, 1500), (0.0, "ann", 100, 1500, 10), (0.0, "ann", 10, 10, 10)])
    case([(0.0, "ann", 10, 10, 5)] * 6 + [(1.0, "ann", 10, 1990, 0)])
    # An answer longer than its reservation: nothing to refund, and no more is charged.
    case([(0.0, "ann", 100, 200, 350), (0.0, "ann", 100, 1500, 10)])

    @hypothesis_settings(max_examples)
    @given(_admission_cases())
    def test(events: list) -> None:
        case(events)

    run_property(test)


# --- exercise 5: a fleet sized to the SLA -------------------------------------------------------


def check_fleet_answer(answer: Any, workload: Workload, *, target: float = 0.95) -> None:
    """``answer = (prefill_gpus, decode_gpus)`` meets ``target`` goodput for 8B on H100 SXM and
    is within one GPU of the capacity planner's smallest fleet."""
    ok = isinstance(answer, tuple) and len(answer) == 2 and all(isinstance(x, (int, np.integer)) for x in answer)
    assert ok, f"fleet_answer must be (prefill_gpus, decode_gpus), two integers; got {answer!r}"
    prefill, decode = (int(x) for x in answer)
    result = simulate(FleetConfig(model="8B", gpu="H100-SXM", prefill_gpus=prefill, decode_gpus=decode), workload)
    assert result.goodput_fraction >= target, (
        f"{prefill} prefill + {decode} decode GPUs: goodput {result.goodput_fraction:.1%} is below {target:.0%} "
        f"(TTFT p99 {result.summary['ttft_p99'] * 1e3:.0f} ms, TPOT p99 {result.summary['tpot_p99'] * 1e3:.1f} ms)"
    )
    plan = plan_capacity("8B", "H100-SXM", workload, max_gpus=64, target_goodput_fraction=target)
    assert plan.total_gpus is not None and prefill + decode <= plan.total_gpus + 1, (
        f"{prefill + decode} GPUs meet the SLA, but {plan.total_gpus} do "
        f"({plan.config.prefill_gpus} prefill + {plan.config.decode_gpus} decode): over-provisioned"
    )
