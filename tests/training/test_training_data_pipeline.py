"""Object store, demo corpus, cleaning and deduplication, and the end-to-end dataset build."""

from __future__ import annotations

import json
import uuid

import pytest

from lab_core.store.object_store import MissingObjectError, ObjectStore
from lab_core.training import dataset as dataset_mod
from lab_core.training.clean import clean_text, dedup, lsh_params, run_pipeline
from lab_core.training.corpus import demo_corpus, demo_corpus_texts, read_corpus, write_demo_corpus
from lab_core.training.dataset import load_dataset_info, load_tokenizer, prepare_dataset
from lab_core.training.shards import ShardIndex, read_shard


def memory_url() -> str:
    return f"memory://test-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def corpus():
    return demo_corpus(600, seed=0)


@pytest.mark.parametrize("kind", ["memory", "local"])
def test_object_store_round_trip(kind, tmp_path):
    store = ObjectStore(memory_url() if kind == "memory" else tmp_path / "store")
    store.put("a/one.bin", b"\x00\x01")
    store.put("a/two.json", b"{}")
    store.put("b", b"x")
    store.put("b", b"y")  # replaces
    assert store.get("a/one.bin") == b"\x00\x01" and store.get("b") == b"y"
    assert store.list() == ["a/one.bin", "a/two.json", "b"]
    assert store.list("a/") == ["a/one.bin", "a/two.json"] and store.list("a/t") == ["a/two.json"]
    assert store.list("zzz/") == []
    assert store.exists("a/one.bin") and not store.exists("a/three")
    store.delete("a/one.bin")
    assert store.list("a/") == ["a/two.json"]
    with pytest.raises(MissingObjectError) as err:
        store.get("a/one.bin")
    assert isinstance(err.value, KeyError) and "a/one.bin" in str(err.value) and store.url in str(err.value)
    with pytest.raises(MissingObjectError):
        store.delete("nope")
    if kind == "local":
        assert store.local_path("b").read_bytes() == b"y"
        # Atomic puts leave no temporary files behind.
        assert sorted(p.name for p in (tmp_path / "store").rglob("*") if p.is_file()) == ["b", "two.json"]
        assert ObjectStore(f"file://{tmp_path / 'store'}").get("b") == b"y"
    else:
        assert store.local_path("b") is None


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a"])
def test_object_store_rejects_bad_keys(key):
    with pytest.raises(ValueError, match="key"):
        ObjectStore(memory_url()).put(key, b"x")


def test_demo_corpus_is_deterministic_and_has_the_promised_mess(corpus, tmp_path):
    again = demo_corpus(600, seed=0)
    assert again.docs == corpus.docs and again.injected == corpus.injected
    assert demo_corpus(600, seed=1).docs != corpus.docs
    inj = corpus.injected
    assert inj["docs"] == 600 and inj["exact_duplicates"] == 60 and inj["near_duplicates"] == 60
    assert inj["short"] > 0 and inj["html_docs"] > 50 and inj["boilerplate_lines"] > 50
    assert inj["control_chars"] > 50 and inj["decomposed_docs"] > 0 and inj["whitespace_docs"] > 50
    assert {d["source"] for d in corpus.docs} and all(set(d) == {"id", "source", "text"} for d in corpus.docs)
    assert len({d["id"] for d in corpus.docs}) == 600
    assert 0.7e6 < sum(len(d["text"].encode()) for d in corpus.docs) < 2e6
    path = write_demo_corpus(tmp_path / "raw.jsonl", n_docs=50, seed=3)
    assert read_corpus(path) == demo_corpus(50, seed=3).docs
    assert demo_corpus_texts(50, seed=3) == [d["text"] for d in read_corpus(path)]


def test_read_corpus_names_the_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n{"id": 1}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: .*'text'"):
        read_corpus(path)


def test_clean_text_repairs_a_messy_page():
    body = " ".join(["The cache keeps recent answers close to the reader so that the next request is fast."] * 3)
    raw = (
        "<html><head><title>menu</title><script>var x = '<p>';</script></head><body>\n"
        f"<p>Caching  \t<b>explained</b></p>\n<p>{body.replace('the reader', 'the&nbsp;reader')}"
        " It&#39;s &quot;simple&quot; &amp; fast.</p>\n"
        "<p>Click here to subscribe!</p>\n<div>Copyright 2024 Example Media. All rights reserved.</div>\n"
        "</body></html>"
    )
    raw = raw.replace("cache keeps", "ca\x00che ke\u200beps")
    out = clean_text(raw)
    assert out == f'Caching explained\n\n{body} It\'s "simple" & fast.'
    # Unicode is composed (NFC): a decomposed é becomes one code point.
    assert clean_text("cafe\u0301 " * 25) == ("caf\u00e9 " * 25).strip()
    assert clean_text("<p>Page not found.</p>") is None
    assert clean_text("Click here to subscribe!\nRead more...") is None
    # A long line that mentions subscribing is content, not boilerplate.
    line = "Consumers subscribe to a topic and read more messages when the producer is fast, " * 2
    assert clean_text(line) == line.strip()


def test_pipeline_counts_match_what_was_injected(corpus):
    docs, stats = run_pipeline(corpus.docs)
    inj = corpus.injected
    assert stats.input_docs == 600 and stats.input_bytes == sum(len(d["text"].encode()) for d in corpus.docs)
    assert stats.html_docs == inj["html_docs"]
    assert stats.boilerplate_lines == inj["boilerplate_lines"]
    assert stats.control_chars == inj["control_chars"]
    assert stats.dropped_short == inj["short"]
    assert stats.exact_duplicates == inj["exact_duplicates"]
    assert stats.near_duplicates == inj["near_duplicates"]
    assert stats.kept_docs == len(docs) == inj["originals"]
    assert stats.output_bytes == sum(len(t.encode()) for t in docs) < stats.input_bytes
    assert stats.to_dict()["kept_docs"] == len(docs)
    # The survivors are clean: no markup, controls or boilerplate, and every text is distinct.
    assert len(set(docs)) == len(docs) and all(clean_text(t) == t for t in docs)
    assert not any("<" in t or "&amp;" in t or "\x00" in t or "\u200b" in t or "  " in t for t in docs)
    assert not any("Click here to subscribe" in t for t in docs)


def test_noisy_copies_clean_to_their_original(corpus):
    cleaned = [clean_text(d["text"]) for d in corpus.docs]
    originals = {t for t, k in zip(cleaned, corpus.kinds) if k == "original"}
    exact = [t for t, k in zip(cleaned, corpus.kinds) if k == "exact_duplicate"]
    assert exact and all(t in originals for t in exact)
    assert all(t is None for t, k in zip(cleaned, corpus.kinds) if k == "short")


def test_dedup_catches_exact_and_near_duplicates_only():
    words = [f"w{i}" for i in range(300)]
    base = " ".join(words)
    near = " ".join(w if i not in (50, 150, 250) else "changed" for i, w in enumerate(words))  # Jaccard ~0.9
    far = " ".join(words[:150] + [f"x{i}" for i in range(150)])  # Jaccard ~0.33
    recased = "  ".join(base.upper().split())  # same normalised text
    keep, stats = dedup([base, far, recased, near, "something else entirely " * 10])
    assert keep == [0, 1, 4]
    assert (stats.exact_duplicates, stats.near_duplicates, stats.kept, stats.input) == (1, 1, 3, 5)
    assert stats.candidate_pairs >= 1 and stats.bands * stats.rows <= 64
    # With a threshold above the pair's similarity, the near copy stays.
    keep, stats = dedup([base, near], threshold=0.95)
    assert keep == [0, 1] and stats.near_duplicates == 0
    with pytest.raises(ValueError, match="threshold"):
        dedup([base], threshold=0)


def test_lsh_params_keep_recall_at_the_threshold():
    for threshold in (0.5, 0.8, 0.9):
        bands, rows = lsh_params(threshold, 64)
        assert bands * rows <= 64
        assert 1 - (1 - threshold**rows) ** bands >= 0.99
        if rows < 64:  # one more row per band would lose recall
            assert 1 - (1 - threshold ** (rows + 1)) ** (64 // (rows + 1)) < 0.99


def test_run_pipeline_rejects_records_without_text():
    with pytest.raises(ValueError, match=r"raw_docs\[1\]"):
        run_pipeline(["a fine document " * 10, {"id": 3}])


def test_prepare_dataset_end_to_end_and_idempotent(monkeypatch):
    url = memory_url()
    stages = []
    info = prepare_dataset(
        url,
        vocab_size=400,
        n_docs=200,
        seed=1,
        shard_tokens=8192,
        progress=lambda stage, done, total: stages.append(stage),
    )
    assert ["corpus", "clean", "bpe", "encode", "shards"] == list(dict.fromkeys(stages))
    store = ObjectStore(url)
    assert {
        "dataset.json",
        "tokenizer.json",
        "pipeline.json",
        "raw/corpus.jsonl",
        "train/index.json",
        "val/index.json",
    } <= set(store.list())
    assert info.vocab_size == 400 and info.train_docs + info.val_docs == info.pipeline["kept_docs"]
    assert info.val_docs == round(0.05 * info.pipeline["kept_docs"])
    assert json.loads(store.get("pipeline.json")) == info.pipeline
    tok = load_tokenizer(url)
    assert tok.vocab_size == 400
    train, val = ShardIndex.load(store, "train"), ShardIndex.load(store, "val")
    assert (train.total_tokens, val.total_tokens) == (info.train_tokens, info.val_tokens)
    assert len(train) == -(-info.train_tokens // 8192) and train.meta["split"] == "train"
    val_text = tok.decode(read_shard(store, val, 0).tolist())
    assert val_text.count(" the ") > 10 and "<" not in val_text
    # Each document ends with EOS, so the EOS count is the document count.
    assert int((read_shard(store, val, 0) == tok.eos_id).sum()) == info.val_docs

    # Same arguments: found, not rebuilt.
    def boom(*args, **kwargs):
        raise AssertionError("rebuilt a dataset that was already there")

    monkeypatch.setattr(dataset_mod, "train_bpe", boom)
    assert prepare_dataset(url, vocab_size=400, n_docs=200, seed=1, shard_tokens=8192) == info
    assert load_dataset_info(url) == info
    monkeypatch.undo()
    # Other arguments: rebuilt in place, stale shards gone.
    smaller = prepare_dataset(url, vocab_size=300, n_docs=200, seed=1, shard_tokens=65536)
    assert smaller.vocab_size == 300 and load_tokenizer(url).vocab_size == 300
    train = ShardIndex.load(store, "train")
    assert len(train) < 8 and store.list("train/shard_") == [train.key(i) for i in range(len(train))]
    assert load_dataset_info(memory_url()) is None
    with pytest.raises(ValueError, match="val_fraction"):
        prepare_dataset(url, val_fraction=1.0)
