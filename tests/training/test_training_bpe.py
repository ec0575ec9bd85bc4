"""Byte-level BPE: lossless on any text, the ByteTokenizer's id layout, merges by frequency, serialisation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab_core.llm.bpe import BPETokenizer, pretokenize, train_bpe
from lab_core.llm.tokenizer import ByteTokenizer
from lab_core.training.clean import run_pipeline
from lab_core.training.corpus import demo_corpus


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return run_pipeline(demo_corpus(150, seed=2).docs)[0]


@pytest.fixture(scope="module")
def tok(docs) -> BPETokenizer:
    return train_bpe(docs[:-10], 512)


def reference_encode(tok: BPETokenizer, text: str) -> list[int]:
    """Apply every merge, in the order learned, to each piece: the definition BPE encoding must match."""
    out = []
    for piece in pretokenize(text):
        ids = list(piece.encode())
        for k, (a, b) in enumerate(tok.merges):
            merged, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
                    merged.append(259 + k)
                    i += 2
                else:
                    merged.append(ids[i])
                    i += 1
            ids = merged
        out += ids
    return out


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_round_trip_on_any_text(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(0 <= i < tok.vocab_size and i not in (256, 257, 258) for i in ids)
    assert "".join(pretokenize(text)) == text


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from(["the", " cache", " is", " fast", ",", " 42", "  ", "\n", "é", " ü", "'s"]), max_size=30)
)
def test_encoding_matches_applying_merges_in_order(tok, parts):
    text = "".join(parts)
    assert tok.encode(text) == reference_encode(tok, text)


def test_trained_vocabulary_and_compression(tok, docs):
    assert tok.vocab_size == 512 and len(tok.merges) == 512 - 259
    held_out = "\n\n".join(docs[-10:])
    ids = tok.encode(held_out)
    # English prose compresses to well over two bytes per token with 253 merges.
    assert len(held_out.encode()) / len(ids) > 2.0
    learned = {tok.token_bytes(i) for i in range(259, 512)}
    assert {b" the", b"ing", b" data", b" requests"} <= learned
    # Merges never cross a piece boundary: no token holds a letter followed by a space.
    assert not any(b[-1:] == b" " and b[:-1].strip() for b in learned)
    assert train_bpe(docs[:-10], 512).merges == tok.merges  # deterministic


def test_ids_follow_the_byte_tokenizer_layout(tok):
    byte_tok = ByteTokenizer()
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (byte_tok.bos_id, byte_tok.eos_id, byte_tok.pad_id)
    assert [tok.token_bytes(i) for i in range(256)] == [bytes([i]) for i in range(256)]
    assert tok.token_bytes(256) == tok.token_bytes(257) == tok.token_bytes(258) == b""
    assert tok.encode("x", bos=True)[0] == 256
    assert tok.decode([256, *tok.encode("hi"), 257, 258]) == "hi"
    assert tok.decode([0xE2]) == "\ufffd"  # half a character
    with pytest.raises(ValueError, match="token id 512"):
        tok.token_bytes(512)


def test_first_merge_is_the_most_frequent_pair():
    tok = train_bpe(["aaab " * 10 + "cd cd"], 262)
    # Pieces: "aaab" once, " aaab" 9 times, " cd" twice; pair (a, a) occurs twice per aaab: 20 times.
    assert tok.merges[0] == (ord("a"), ord("a"))
    assert tok.token_bytes(259) == b"aa"
    assert tok.decode(tok.encode("aaab aaab")) == "aaab aaab"


def test_training_stops_when_nothing_is_left_to_merge():
    tok = train_bpe(["ab"], 1000)
    assert tok.merges == [(97, 98)] and tok.vocab_size == 260
    assert tok.encode("abab") == [259, 259]


def test_progress_and_bad_vocab_size(docs):
    seen = []
    train_bpe(docs[:5], 270, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(k, 11) for k in range(1, 12)]
    for bad in (100, 258, 70000):
        with pytest.raises(ValueError, match="vocab_size"):
            train_bpe(docs[:5], bad)


def test_json_save_load_and_stream_decoding(tok, tmp_path):
    again = BPETokenizer.from_json(tok.to_json())
    assert again.merges == tok.merges and again.vocab_size == tok.vocab_size
    loaded = BPETokenizer.load(tok.save(tmp_path / "t" / "tokenizer.json"))
    text = "Caches trade memory for time — naïve ones too. 日本語"
    assert loaded.encode(text) == tok.encode(text)
    decoder = tok.stream_decoder()
    assert "".join(decoder.decode(tok.token_bytes(i)) for i in tok.encode(text)) == text


@pytest.mark.parametrize(
    "text, field",
    [
        ("not json", "not JSON"),
        ('{"kind": "byte"}', "kind"),
        ('{"kind": "bpe", "merges": 3}', "merges"),
        ('{"kind": "bpe", "merges": [[97, 600]]}', r"merges\[0\]"),
        ('{"kind": "bpe", "merges": [[97, 257]]}', r"merges\[0\]"),
        ('{"kind": "bpe", "merges": [[97, 98]], "vocab_size": 512}', "vocab_size"),
    ],
)
def test_from_json_names_the_bad_field(text, field):
    with pytest.raises(ValueError, match=field):
        BPETokenizer.from_json(text)
