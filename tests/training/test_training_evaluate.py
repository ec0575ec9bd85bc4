"""Evaluation: perplexity, generation (greedy, sampled, stopping rules), and recording in the registry."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lab_core.llm.config import get_config
from lab_core.llm.model import build_model
from lab_core.llm.registry import ModelRegistry
from lab_core.llm.tokenizer import ByteTokenizer
from lab_core.training.evaluate import (
    DEFAULT_PROMPTS,
    EvalResult,
    evaluate,
    evaluate_and_record,
    generate,
    perplexity,
)

CFG = get_config("tiny")
TOK = ByteTokenizer()


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: a second thread on a shared 2-core machine adds stalls, not speed
    yield
    torch.set_num_threads(saved)


def _random_batches(n: int, *, seed: int = 0, batch: int = 4, seq: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        tokens = torch.randint(0, 256, (batch, seq + 1), generator=g)
        out.append((tokens[:, :-1], tokens[:, 1:]))
    return out


def _text_batches(text: str, *, batch: int = 8, seq: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    ids = torch.tensor(TOK.encode(text))
    rows = torch.stack([ids[i : i + seq + 1] for i in range(0, batch * 5, 5)])
    return [(rows[:, :-1], rows[:, 1:])]


class ListLoader:
    """A loader with the ShardedLoader surface: next_batch() forever, state_dict()/load_state_dict()."""

    def __init__(self, batches: list) -> None:
        self.batches, self.position = batches, 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.batches[self.position % len(self.batches)]
        self.position += 1
        return b

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, d: dict) -> None:
        self.position = d["position"]


class Scripted(nn.Module):
    """A 'model' whose next token is ``script[k]`` after k generated tokens: makes stopping rules checkable."""

    def __init__(self, script: list[int], prompt_len: int, cfg=CFG) -> None:
        super().__init__()
        self.cfg, self.script, self.prompt_len = cfg, script, prompt_len
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(idx.shape[0], idx.shape[1], self.cfg.vocab_size)
        logits[:, -1, self.script[idx.shape[1] - self.prompt_len]] = 10.0
        return logits


def test_random_model_on_random_tokens_has_perplexity_near_the_vocab_size():
    model = build_model(CFG, seed=0).train()
    loss, ppl = perplexity(model, _random_batches(3))
    assert ppl == pytest.approx(math.exp(loss))
    # A fresh model spreads its probability almost evenly over the 259 ids.
    assert 0.8 * CFG.vocab_size < ppl < 1.25 * CFG.vocab_size
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())


def test_loss_is_weighted_by_scored_tokens_and_ignores_masked_targets():
    model = build_model(CFG, seed=1)
    (x1, y1), (x2, y2) = _random_batches(2, seed=3)
    y2 = y2.clone()
    y2[:, :24] = -100  # the second batch scores only 8 of 32 positions per row
    loss, _ = perplexity(model, [(x1, y1), (x2, y2)])
    with torch.no_grad():
        total = sum(
            F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-100, reduction="sum")
            for x, y in ((x1, y1), (x2, y2))
        )
    assert loss == pytest.approx(float(total) / (y1.numel() + 8 * 4), rel=1e-5)
    assert perplexity(model, [(x1, y1), (x2, y2)], max_batches=1)[0] == pytest.approx(perplexity(model, [(x1, y1)])[0])


def test_loader_is_rewound_so_every_evaluation_scores_the_same_batches():
    model = build_model(CFG, seed=2)
    loader = ListLoader(_random_batches(4, seed=5))
    first = perplexity(model, loader, max_batches=2)
    assert loader.position == 0
    assert perplexity(model, loader, max_batches=2) == first
    with pytest.raises(ValueError, match="max_batches is required"):
        perplexity(model, loader)
    with pytest.raises(ValueError, match="max_batches must be a positive integer"):
        perplexity(model, loader, max_batches=0)
    with pytest.raises(ValueError, match="no target tokens"):
        perplexity(model, [])
    with pytest.raises(ValueError, match="batch 0 must be a pair"):
        perplexity(model, [torch.zeros(3, 3, dtype=torch.long)])


def test_perplexity_on_the_sharded_loader_leaves_its_position_alone(tmp_path):
    from lab_core.store.object_store import ObjectStore
    from lab_core.training.loader import ShardedLoader
    from lab_core.training.shards import write_shards

    store = ObjectStore(tmp_path / "store")
    docs = [TOK.encode(f"document {i}: the cache is warm and the shard is {i * 7}.") for i in range(40)]
    write_shards(store, "val", docs, shard_tokens=512, meta={})
    loader = ShardedLoader(store, "val", seq_len=16, batch_size=2)
    loader.next_batch()
    before = loader.state_dict()
    model = build_model(CFG, seed=0)
    first = perplexity(model, loader, max_batches=3)
    assert loader.state_dict() == before
    assert perplexity(model, loader, max_batches=3) == first
    batches = [loader.next_batch() for _ in range(3)]
    assert perplexity(model, batches) == pytest.approx(first)


def test_training_lowers_perplexity_and_greedy_generation_continues_the_pattern():
    text = "the cache is warm. " * 40
    batches = _text_batches(text, batch=4, seq=24)
    model = build_model(CFG, seed=0)
    before = perplexity(model, batches)[1]
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(40):
        x, y = batches[0]
        loss = model(x, targets=y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = perplexity(model, batches)[1]
    assert before > 200 and after < 1.5
    assert generate(model, TOK, "the cache", max_tokens=20).startswith(" is warm. the cache")


def test_greedy_generation_is_deterministic_and_equals_argmax_decoding():
    model = build_model(CFG, seed=4)
    rng = torch.random.get_rng_state()
    out = generate(model, TOK, "Hello", max_tokens=12)
    assert out == generate(model, TOK, "Hello", max_tokens=12, seed=99)  # seed is irrelevant at temperature 0
    ids = TOK.encode("Hello", bos=True)
    with torch.no_grad():
        for _ in range(12):
            logits = model(torch.tensor([ids]))[0, -1]
            logits[[TOK.bos_id, TOK.pad_id]] = -math.inf
            nxt = int(logits.argmax())
            if nxt == TOK.eos_id:
                break
            ids.append(nxt)
    assert out == TOK.decode(ids[len(TOK.encode("Hello", bos=True)) :])
    assert torch.equal(rng, torch.random.get_rng_state())


def test_sampling_is_reproducible_per_seed():
    model = build_model(CFG, seed=4)
    a = generate(model, TOK, "Hi", max_tokens=24, temperature=1.0, seed=1)
    assert a == generate(model, TOK, "Hi", max_tokens=24, temperature=1.0, seed=1)
    assert a != generate(model, TOK, "Hi", max_tokens=24, temperature=1.0, seed=2)


def test_generation_stops_at_eos_max_tokens_and_max_seq_len():
    prompt_len = len(TOK.encode("ab", bos=True))
    hi = list(b"hi!")
    assert generate(Scripted([*hi, TOK.eos_id, *b"never"], prompt_len), TOK, "ab", max_tokens=48) == "hi!"
    assert generate(Scripted([TOK.eos_id], prompt_len), TOK, "ab") == ""
    assert generate(Scripted(list(b"abcdefgh"), prompt_len), TOK, "ab", max_tokens=5) == "abcde"
    assert generate(Scripted(list(b"abcdefgh"), prompt_len), TOK, "ab", max_tokens=0) == ""
    short = dataclasses.replace(CFG, max_seq_len=6)
    assert generate(Scripted(list(b"abcdefgh"), prompt_len, short), TOK, "ab", max_tokens=48) == "abc"
    # BOS and padding are never emitted even when the model favours them.
    assert generate(Scripted([TOK.bos_id, TOK.eos_id], prompt_len), TOK, "ab") != "\ufffd"


def test_bad_generation_arguments_name_the_field():
    model = build_model(CFG)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, TOK, "x", temperature=-1.0)
    with pytest.raises(ValueError, match="max_tokens"):
        generate(model, TOK, "x", max_tokens=-1)
    with pytest.raises(ValueError, match="prompt of 514 tokens exceeds the model's max_seq_len 512"):
        generate(model, TOK, "x" * 513)


def test_evaluate_and_record_stores_the_result_in_the_registry(tmp_path):
    registry = ModelRegistry(tmp_path / "reg")
    model = build_model(CFG, seed=6)
    registry.register("tiny-lm", model, model_config=CFG, tokenizer=TOK)
    batches = _random_batches(2, seed=8)
    result = evaluate_and_record(registry, "tiny-lm", 1, ListLoader(batches), max_batches=2, max_tokens=8)
    assert isinstance(result, EvalResult)
    assert (result.loss, result.perplexity) == perplexity(model, batches)
    assert [s["prompt"] for s in result.samples] == list(DEFAULT_PROMPTS)
    assert result.samples[0]["output"] == generate(model, TOK, DEFAULT_PROMPTS[0], max_tokens=8)
    stored = registry.get("tiny-lm", 1).eval
    assert stored["metrics"] == {"eval_loss": result.loss, "eval_ppl": result.perplexity}
    assert stored["samples"] == result.samples
    direct = evaluate(model, TOK, ListLoader(batches), prompts=["The"], max_batches=2, max_tokens=4)
    assert direct.loss == result.loss and [s["prompt"] for s in direct.samples] == ["The"]
    registry.close()
