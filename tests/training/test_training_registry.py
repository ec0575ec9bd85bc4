"""The model registry: versions, stages, exact reloads, evaluations, and failures that lose nothing."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from lab_core.llm import registry as registry_module
from lab_core.llm.config import get_config
from lab_core.llm.model import build_model
from lab_core.llm.registry import (
    CorruptModelError,
    ModelRegistry,
    ModelVersion,
    load_tokenizer_json,
    tokenizer_json,
)
from lab_core.llm.tokenizer import ByteTokenizer
from lab_core.sim.clock import ManualClock

CFG = get_config("tiny")
IDS = torch.tensor([[256, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100]])


@pytest.fixture
def reg(tmp_path):
    r = ModelRegistry(tmp_path / "registry", clock=ManualClock(50.0))
    yield r
    r.close()


def _register(reg, seed, **kw):
    return reg.register("tiny-lm", build_model(CFG, seed=seed), model_config=CFG, tokenizer=ByteTokenizer(), **kw)


def test_versions_are_numbered_and_files_laid_out(reg):
    v1 = _register(reg, 1, metrics={"loss": 3.2}, run_id="run-a", tags={"strategy": "fsdp"})
    v2 = _register(reg, 2)
    assert isinstance(v1, ModelVersion)
    assert (v1.name, v1.version, v1.stage, v1.run_id, v1.created) == ("tiny-lm", 1, "none", "run-a", 50.0)
    assert v1.metrics == {"loss": 3.2} and v1.tags == {"strategy": "fsdp"} and v1.eval is None
    assert v2.version == 2 and v2.metrics == {} and v2.tags == {}
    assert v1.path == reg.root / "tiny-lm" / "v1"
    assert sorted(p.name for p in v1.path.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert json.loads((v1.path / "config.json").read_text()) == dataclasses.asdict(CFG)
    assert json.loads((v1.path / "tokenizer.json").read_text()) == {"kind": "byte"}
    assert not list((reg.root / "tiny-lm").glob(".tmp-*"))

    reg.register("other", build_model(CFG, seed=3), model_config=CFG, tokenizer=ByteTokenizer())
    assert reg.models() == ["other", "tiny-lm"]
    assert [v.version for v in reg.versions("tiny-lm")] == [1, 2]
    assert reg.get("tiny-lm").version == 2  # newest by default
    # Another registry object on the same folder (another process) sees the same state.
    again = ModelRegistry(reg.root)
    assert [v.version for v in again.versions("tiny-lm")] == [1, 2] and again.get("tiny-lm", 1).metrics == v1.metrics
    again.close()


def test_load_returns_a_model_with_identical_logits_and_the_tokenizer(reg):
    original = build_model(CFG, seed=7)
    with torch.no_grad():
        original.layers[0].ffn.w2.weight.mul_(3.0)  # not what a fresh init would give
    reg.register("tiny-lm", original, model_config=CFG, tokenizer=ByteTokenizer())
    rng = torch.random.get_rng_state()
    loaded, tok = reg.load("tiny-lm", version=1)
    assert torch.equal(rng, torch.random.get_rng_state())
    assert not loaded.training and loaded is not original
    with torch.no_grad():
        assert torch.equal(loaded(IDS), original(IDS))
    assert isinstance(tok, ByteTokenizer) and tok.decode(tok.encode("héllo")) == "héllo"


def test_register_stores_fp32_and_checks_the_config(reg):
    half = build_model(CFG, seed=4, dtype=torch.bfloat16)
    reg.register("bf16", half, model_config=CFG, tokenizer=ByteTokenizer())
    loaded, _ = reg.load("bf16")
    assert loaded.embed.weight.dtype == torch.float32
    assert torch.equal(loaded.embed.weight, half.embed.weight.float())

    wider = dataclasses.replace(CFG, dim=128)
    with pytest.raises(ValueError, match="do not match model_config.*wrong shape"):
        reg.register("x", build_model(CFG), model_config=wider, tokenizer=ByteTokenizer())
    with pytest.raises(ValueError, match="tokenizer vocab_size 259 exceeds model_config.vocab_size 200"):
        small = dataclasses.replace(CFG, vocab_size=200)
        reg.register("x", build_model(small), model_config=small, tokenizer=ByteTokenizer())
    with pytest.raises(ValueError, match="model name"):
        reg.register("../up", build_model(CFG), model_config=CFG, tokenizer=ByteTokenizer())
    with pytest.raises(ValueError, match="tokenizer must be"):
        reg.register("x", build_model(CFG), model_config=CFG, tokenizer=object())
    with pytest.raises(ValueError, match=r"metrics\['loss'\]"):
        reg.register("x", build_model(CFG), model_config=CFG, tokenizer=ByteTokenizer(), metrics={"loss": "low"})
    assert reg.models() == ["bf16"]


def test_stages_keep_one_production_version(reg):
    for seed in range(3):
        _register(reg, seed)
    reg.set_stage("tiny-lm", 1, "production")
    reg.set_stage("tiny-lm", 2, "staging")
    assert reg.get("tiny-lm", stage="production").version == 1
    promoted = reg.set_stage("tiny-lm", 2, "production")
    assert promoted.stage == "production"
    assert [v.stage for v in reg.versions("tiny-lm")] == ["archived", "production", "none"]
    assert reg.get("tiny-lm", stage="production").version == 2
    reg.set_stage("tiny-lm", 2, "production")  # idempotent: does not archive itself
    assert reg.get("tiny-lm", 2).stage == "production"
    model, _ = reg.load("tiny-lm", stage="production")
    with torch.no_grad():
        assert torch.equal(model(IDS), build_model(CFG, seed=1)(IDS))
    with pytest.raises(ValueError, match="v2 is in stage 'production', not 'staging'"):
        reg.get("tiny-lm", 2, stage="staging")


def test_unknown_names_versions_and_stages_name_what_exists(reg):
    _register(reg, 0)
    _register(reg, 1)
    with pytest.raises(ValueError, match="unknown model 'nope'; models: tiny-lm"):
        reg.get("nope")
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        reg.load("nope")
    with pytest.raises(ValueError, match="no version 9; versions: 1, 2"):
        reg.load("tiny-lm", version=9)
    with pytest.raises(ValueError, match="no version in stage 'production'; versions: v1 none, v2 none"):
        reg.get("tiny-lm", stage="production")
    with pytest.raises(ValueError, match="stage must be one of none, staging, production, archived"):
        reg.set_stage("tiny-lm", 1, "prod")
    with pytest.raises(ValueError, match="no version 3"):
        reg.set_stage("tiny-lm", 3, "staging")
    with pytest.raises(ValueError, match="no version 5"):
        reg.record_eval("tiny-lm", 5, {"eval_loss": 1.0}, [])


def test_record_eval_is_stored_and_returned(reg):
    _register(reg, 0)
    samples = [{"prompt": "The cache", "output": " is warm"}]
    mv = reg.record_eval("tiny-lm", 1, {"eval_loss": 2.5, "eval_ppl": 12.18}, samples)
    assert mv.eval["metrics"] == {"eval_loss": 2.5, "eval_ppl": 12.18}
    assert mv.eval["samples"] == samples and mv.eval["recorded"] == 50.0
    assert reg.get("tiny-lm", 1).eval == mv.eval
    with pytest.raises(ValueError, match="samples must be a list of dicts"):
        reg.record_eval("tiny-lm", 1, {"eval_loss": 2.5}, ["text"])


def test_failure_while_writing_files_loses_nothing(reg, monkeypatch):
    first = _register(reg, 0)
    weights = (first.path / "model.safetensors").read_bytes()

    def broken_save(tensors, path):
        with open(path, "wb") as fh:
            fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(registry_module, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        _register(reg, 1)
    monkeypatch.undo()
    assert [v.version for v in reg.versions("tiny-lm")] == [1]
    assert sorted(p.name for p in (reg.root / "tiny-lm").iterdir()) == ["v1"]
    assert (first.path / "model.safetensors").read_bytes() == weights
    assert _register(reg, 1).version == 2


def test_failure_after_the_rename_removes_the_folder_and_keeps_the_numbering(reg, monkeypatch):
    _register(reg, 0)

    def broken_insert(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(ModelRegistry, "_insert", broken_insert)
    with pytest.raises(RuntimeError, match="went away"):
        _register(reg, 1)
    monkeypatch.undo()
    assert [v.version for v in reg.versions("tiny-lm")] == [1]
    assert sorted(p.name for p in (reg.root / "tiny-lm").iterdir()) == ["v1"]

    # A crash between rename and insert leaves a folder with no row; the next register replaces it.
    (reg.root / "tiny-lm" / "v2").mkdir()
    (reg.root / "tiny-lm" / "v2" / "junk").write_text("x")
    v2 = _register(reg, 5)
    assert v2.version == 2 and not (v2.path / "junk").exists()
    model, _ = reg.load("tiny-lm", version=2)
    assert torch.equal(model.head.weight, build_model(CFG, seed=5).head.weight)


def test_corrupted_weights_are_detected_on_load(reg):
    mv = _register(reg, 0)
    path = mv.path / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptModelError, match="model.safetensors of tiny-lm v1 does not match"):
        reg.load("tiny-lm", version=1)
    path.unlink()
    with pytest.raises(CorruptModelError, match="missing"):
        reg.load("tiny-lm", version=1)


def test_ddp_wrapper_is_unwrapped_and_sharded_weights_are_refused(reg, tmp_path):
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        plain = build_model(CFG, seed=3)
        reg.register("ddp", DistributedDataParallel(plain), model_config=CFG, tokenizer=ByteTokenizer())
        loaded, _ = reg.load("ddp")
        with torch.no_grad():
            assert torch.equal(loaded(IDS), plain(IDS))
        sharded = fully_shard(build_model(CFG, seed=3))
        with pytest.raises(ValueError, match="sharded DTensor; gather a full state dict first"):
            reg.register("fsdp", sharded, model_config=CFG, tokenizer=ByteTokenizer())
    finally:
        dist.destroy_process_group()
    assert reg.models() == ["ddp"]


def test_bpe_tokenizer_is_stored_with_the_model(reg):
    from lab_core.llm.bpe import BPETokenizer, train_bpe

    texts = ["the cache is warm and the cache is fast"] * 20 + ["shards of the database are replicated"] * 20
    tok = train_bpe(texts, 300)
    cfg = dataclasses.replace(CFG, vocab_size=tok.vocab_size)
    model = build_model(cfg, seed=2)
    reg.register("bpe-lm", model, model_config=cfg, tokenizer=tok)
    loaded, loaded_tok = reg.load("bpe-lm")
    assert isinstance(loaded_tok, BPETokenizer) and loaded_tok.vocab_size == 300
    text = "the database cache is warm, ünïcode too"
    assert loaded_tok.encode(text) == tok.encode(text) and loaded_tok.decode(tok.encode(text)) == text
    assert len(tok.encode(text)) < len(text.encode())  # merges were kept, not just bytes
    ids = torch.tensor([tok.encode(text, bos=True)])
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))


def test_tokenizer_json_round_trip():
    text = tokenizer_json(ByteTokenizer())
    assert isinstance(load_tokenizer_json(text), ByteTokenizer)
    with pytest.raises(ValueError, match="field 'kind' must be 'byte' or 'bpe', got 'wordpiece'"):
        load_tokenizer_json('{"kind": "wordpiece"}')
    with pytest.raises(ValueError, match="tokenizer.json is not valid JSON"):
        load_tokenizer_json("{nope")
