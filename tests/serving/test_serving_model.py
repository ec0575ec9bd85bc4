"""The shared model: shapes, presets, and the flat (serving) path equal to the batch (training) path."""

from __future__ import annotations

import pytest
import torch

from lab_core.llm import PRESETS, ByteTokenizer, ModelConfig, build_model, get_config
from lab_core.serving.attention import DenseAttend


def test_presets_have_the_sizes_their_names_say() -> None:
    assert PRESETS["tiny"].num_params() < 200_000
    assert 70e6 < PRESETS["100m"].num_params() < 130e6
    assert 0.9e9 < PRESETS["1b"].num_params() < 1.2e9


def test_param_count_matches_the_module() -> None:
    model = build_model("small")
    assert sum(p.numel() for p in model.parameters()) == model.cfg.num_params()


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("dim", {"dim": 66, "n_heads": 4}),
        ("n_kv_heads", {"n_heads": 4, "n_kv_heads": 3}),
        ("n_layers", {"n_layers": 0}),
        ("vocab_size", {"vocab_size": True}),
    ],
)
def test_bad_shapes_name_the_field(field: str, kwargs: dict) -> None:
    with pytest.raises(ValueError, match=field):
        ModelConfig(**kwargs)


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="tiny"):
        get_config("7b")


def test_same_seed_same_weights_and_global_rng_untouched() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = build_model(seed=5), build_model(seed=5)
    assert torch.equal(torch.rand(1), before)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.head.weight, build_model(seed=6).head.weight)


def test_flat_path_with_a_cache_equals_the_batch_path() -> None:
    model = build_model("tiny")
    ids = torch.randint(0, 256, (20,))
    full = model(ids[None])[0]
    cache = DenseAttend(model.cfg, 20)
    rows = []
    for start, end in [(0, 7), (7, 8), (8, 20)]:
        cache.advance(end - start)
        rows.append(model.forward_flat(ids[start:end], torch.arange(start, end), cache))
    torch.testing.assert_close(torch.cat(rows), full, rtol=1e-4, atol=1e-5)


def test_loss_is_cross_entropy_and_too_long_is_refused() -> None:
    model = build_model("tiny")
    ids = torch.randint(0, 256, (2, 9))
    loss = model(ids[:, :-1], ids[:, 1:])
    logits = model(ids[:, :-1])
    assert loss.item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()).item()
    )
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, model.cfg.max_seq_len + 1, dtype=torch.long))


def test_byte_tokenizer_round_trips_any_text_and_streams_characters_whole() -> None:
    tok = ByteTokenizer()
    text = "naïve café — 東京 🚀"
    ids = tok.encode(text, bos=True)
    assert ids[0] == tok.bos_id and tok.decode(ids) == text
    dec = tok.stream_decoder()
    pieces = [dec.decode(bytes([i])) for i in ids[1:]]
    assert "".join(pieces) == text and "" in pieces  # multi-byte characters come out whole
