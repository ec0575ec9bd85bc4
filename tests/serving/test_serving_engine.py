"""The engine: exact greedy outputs under batching, chunking, sharing and preemption; the
scheduler's promises (budget, decodes first, priority); streaming, stops, aborts, bad requests."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lab_core.llm import EOS, build_model
from lab_core.serving.baseline import generate_sequential, generate_static
from lab_core.serving.engine import EngineConfig, LLMEngine
from lab_core.serving.protocol import FREE, PAID, SamplingParams, TokenEvent

MODEL = build_model("tiny")
SHARED = "System: you are a helpful assistant for the course. "


def reference(ids: list[int], n: int) -> list[int]:
    """Greedy tokens from full forwards, no cache at all."""
    x, out = torch.tensor([ids]), []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(MODEL(x)[0, -1].argmax())
            out.append(nxt)
            x = torch.cat([x, torch.tensor([[nxt]])], 1)
    return out


def engine(**kw: object) -> LLMEngine:
    return LLMEngine(EngineConfig(**kw), model=MODEL)  # type: ignore[arg-type]


GREEDY = SamplingParams(max_tokens=12, ignore_eos=True)


@settings(max_examples=12, deadline=None)
@given(
    block_size=st.sampled_from([2, 4, 16]),
    num_blocks=st.integers(24, 80),
    budget=st.integers(4, 96),
    chunked=st.booleans(),
    prefix=st.booleans(),
    policy=st.sampled_from(["fcfs", "priority"]),
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=6),
)
def test_outputs_equal_a_plain_forward_under_any_configuration(
    block_size, num_blocks, budget, chunked, prefix, policy, lengths
) -> None:
    eng = engine(
        block_size=block_size,
        num_blocks=num_blocks,
        token_budget=budget,
        chunked_prefill=chunked,
        prefix_caching=prefix,
        policy=policy,
    )
    prompts = [eng.tokenizer.encode(SHARED + "q" * n, bos=True)[: 8 + n] for n in lengths]
    prompts = [
        p for p in prompts if len(p) + 12 <= eng.max_context and eng.blocks.blocks_needed(len(p) + 12) <= num_blocks
    ]
    out = eng.generate(prompts, GREEDY)
    for prompt, completion in zip(prompts, out):
        assert completion.token_ids == reference(prompt, 12)
    eng.blocks.check()
    assert eng.blocks.num_free == num_blocks


def test_every_step_keeps_the_budget_and_decodes_are_never_left_out() -> None:
    eng = engine(token_budget=32, num_blocks=512)
    for i in range(6):
        eng.add_request("x" * (10 + 60 * i), GREEDY)
    while eng.has_work():
        running_decodes = {s.request_id for s in eng.scheduler.running if s.remaining_prefill == 1}
        plan = eng.scheduler.schedule()
        assert plan.num_tokens <= 32
        assert running_decodes <= {s.request_id for s, n in plan.work}, "a decode waited behind a prefill"
        _finish_step(eng, plan)


def _finish_step(eng: LLMEngine, plan) -> None:
    tokens = eng._run(plan)
    for (seq, n), token in zip(plan.work, tokens):
        seq.computed += n
        eng.blocks.commit(seq)
        if seq.computed == len(seq.tokens):
            seq.tokens.append(token)
            if len(seq.output) >= seq.params.max_tokens:
                eng._finish(seq, "length", emit=False)


def test_chunked_prefill_splits_a_long_prompt_across_steps() -> None:
    eng = engine(token_budget=16)
    eng.add_request("y" * 100, GREEDY)
    eng.step()
    seq = eng.scheduler.running[0]
    assert seq.computed == 16 and eng.step_log[-1].prefill_tokens == 16


def test_without_chunking_a_long_prompt_runs_whole_when_alone() -> None:
    eng = engine(token_budget=16, chunked_prefill=False)
    rid = eng.add_request("y" * 100, GREEDY)
    eng.step()
    assert eng.sequences[rid].computed == 101 and len(eng.sequences[rid].output) == 1


def test_preemption_takes_the_free_request_and_keeps_the_paid_one() -> None:
    eng = engine(block_size=4, num_blocks=20, token_budget=64, policy="priority")
    paid = eng.add_request("p" * 30, SamplingParams(max_tokens=40, ignore_eos=True), priority=PAID)
    free = eng.add_request("f" * 30, SamplingParams(max_tokens=40, ignore_eos=True), priority=FREE)
    while eng.has_work():
        eng.step()
    assert eng.sequences[paid].preemptions == 0 and eng.sequences[free].preemptions >= 1
    assert eng.completion(free).token_ids == reference(eng.sequences[free].prompt, 40)


def test_priority_policy_admits_paid_first_and_fcfs_by_arrival() -> None:
    for policy, first in [("priority", "paid"), ("fcfs", "free")]:
        eng = engine(max_seqs=1, policy=policy)
        eng.add_request("a", GREEDY, request_id="free", priority=FREE)
        eng.add_request("b", GREEDY, request_id="paid", priority=PAID)
        eng.step()
        assert [s.request_id for s in eng.scheduler.running] == [first]


def test_prefix_caching_skips_the_shared_prompt() -> None:
    eng = engine(block_size=8)
    eng.generate([SHARED + "first question"], GREEDY)
    rid = eng.add_request(SHARED + "second question", GREEDY)
    eng.step()
    assert eng.sequences[rid].cached_tokens == (len(SHARED) + 1) // 8 * 8
    assert eng.step_log[-1].prefill_tokens == len(eng.sequences[rid].prompt) - eng.sequences[rid].cached_tokens


def test_streaming_order_stop_strings_eos_and_length() -> None:
    eng = engine()
    events: list[TokenEvent] = []
    rid = eng.add_request("hello", SamplingParams(max_tokens=7, ignore_eos=True), on_token=events.append)
    while eng.has_work():
        eng.step()
    assert [e.index for e in events] == list(range(7)) and events[-1].finish_reason == "length"
    assert "".join(e.text for e in events) == eng.sequences[rid].text
    times = [e.time for e in events]
    assert times == sorted(times)
    text = eng.sequences[rid].text
    stopper = engine()
    sid = stopper.add_request("hello", SamplingParams(max_tokens=7, ignore_eos=True, stop=(text[2:4],)))
    while stopper.has_work():
        stopper.step()
    done = stopper.completion(sid)
    assert done.finish_reason == "stop" and done.text.endswith(text[2:4]) and len(done.token_ids) <= 4


def test_eos_stops_unless_ignored() -> None:
    eng = engine()
    seq_id = eng.add_request("z", SamplingParams(max_tokens=5))
    seq = eng.sequences[seq_id]
    assert eng._stop_reason(seq, EOS) == "stop"
    seq.params = SamplingParams(max_tokens=5, ignore_eos=True)
    assert eng._stop_reason(seq, EOS) is None


def test_seeded_sampling_repeats_and_differs_from_greedy() -> None:
    outs = [
        engine().generate(["abc"], SamplingParams(max_tokens=20, temperature=1.0, seed=3, ignore_eos=True))[0]
        for _ in range(2)
    ]
    assert outs[0].token_ids == outs[1].token_ids
    assert (
        outs[0].token_ids != engine().generate(["abc"], GREEDY.__class__(max_tokens=20, ignore_eos=True))[0].token_ids
    )


def test_abort_frees_blocks_at_once_and_reports_abort() -> None:
    eng = engine()
    events: list[TokenEvent] = []
    rid = eng.add_request("q" * 50, SamplingParams(max_tokens=100, ignore_eos=True), on_token=events.append)
    eng.step()
    eng.step()
    assert eng.blocks.num_used > 0
    assert eng.abort(rid) and not eng.abort(rid) and not eng.abort("nobody")
    assert eng.blocks.num_used == 0 and events[-1].finish_reason == "abort" and not eng.has_work()


@pytest.mark.parametrize(
    ("prompt", "params", "field"),
    [
        ("", GREEDY, "prompt"),
        ("x", SamplingParams(max_tokens=0), "max_tokens"),
        ("x", SamplingParams(max_tokens=True), "max_tokens"),
        ("x", SamplingParams(temperature=-1), "temperature"),
        ("x" * 600, GREEDY, "context length"),
        ([1, 2, 999], GREEDY, "token ids"),
    ],
)
def test_bad_requests_are_refused_by_name(prompt, params, field) -> None:
    eng = engine()
    with pytest.raises(ValueError, match=field):
        eng.add_request(prompt, params)
    assert not eng.has_work()


def test_duplicate_id_and_a_request_larger_than_the_whole_cache_are_refused() -> None:
    eng = engine(block_size=4, num_blocks=8)
    eng.add_request("a", GREEDY, request_id="r")
    with pytest.raises(ValueError, match="already in use"):
        eng.add_request("b", GREEDY, request_id="r")
    assert eng.max_context == 32
    with pytest.raises(ValueError, match="context length 32"):
        eng.add_request("w" * 25, GREEDY)


def test_step_log_records_shape_and_time() -> None:
    eng = engine(token_budget=64)
    eng.generate(["one", "two two"], SamplingParams(max_tokens=3, ignore_eos=True))
    first = eng.step_log[0]
    assert first.prefill_tokens == 4 + 8 and first.decode_batch == 0 and first.seconds > 0
    assert eng.step_log[1].decode_batch == 2 and eng.step_log[1].sum_context == 5 + 9


def test_baselines_produce_the_same_tokens() -> None:
    eng = engine()
    prompts = [eng.tokenizer.encode(f"prompt {i} " * (i + 1), bos=True) for i in range(5)]
    want = [c.token_ids for c in eng.generate(prompts, GREEDY)]
    assert [r[0] for r in generate_sequential(MODEL, prompts, 12, ignore_eos=True)] == want
    assert [r[0] for r in generate_static(MODEL, prompts, 12, batch_size=2, ignore_eos=True)] == want
