"""The training lab's dataset, end to end: demo corpus -> cleaning -> BPE -> train/val token shards.

Everything lands in one object store: ``raw/corpus.jsonl``, ``pipeline.json`` (cleaning counts),
``tokenizer.json``, ``train/`` and ``val/`` shards and, last, ``dataset.json``. Because
``dataset.json`` is written last and records the arguments, a second call with the same
arguments finds it and returns at once, and a crash half way leaves no ``dataset.json`` behind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lab_core.llm.bpe import EOS_ID, BPETokenizer, train_bpe
from lab_core.store.object_store import MissingObjectError, ObjectStore
from lab_core.training.clean import run_pipeline
from lab_core.training.corpus import demo_corpus
from lab_core.training.shards import write_shards

DATASET_KEY, TOKENIZER_KEY, PIPELINE_KEY, RAW_KEY = (
    "dataset.json",
    "tokenizer.json",
    "pipeline.json",
    "raw/corpus.jsonl",
)
TRAIN_PREFIX, VAL_PREFIX = "train", "val"
# ``progress(stage, done, total)``: stages "corpus", "clean", "bpe", "encode", "shards", in that order.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DatasetInfo:
    """What ``prepare_dataset`` built: where, with which arguments, and how many documents and tokens."""

    store_url: str
    vocab_size: int
    train_tokens: int
    val_tokens: int
    train_docs: int
    val_docs: int
    pipeline: dict
    args: dict = field(default_factory=dict)
    train_prefix: str = TRAIN_PREFIX
    val_prefix: str = VAL_PREFIX
    tokenizer_key: str = TOKENIZER_KEY

    def to_json(self) -> str:
        """The record stored as ``dataset.json`` (without the store URL, which may change)."""
        data = asdict(self)
        del data["store_url"]
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str, store_url: str) -> DatasetInfo:
        """The record ``to_json`` wrote, located at ``store_url``."""
        return cls(store_url=store_url, **json.loads(text))


def _store(store_url: str | Path | ObjectStore) -> ObjectStore:
    return store_url if isinstance(store_url, ObjectStore) else ObjectStore(store_url)


def load_dataset_info(store_url: str | Path | ObjectStore) -> DatasetInfo | None:
    """The dataset record in the store, or None when no dataset was completed there."""
    store = _store(store_url)
    try:
        return DatasetInfo.from_json(store.get(DATASET_KEY).decode(), store.url)
    except MissingObjectError:
        return None
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"{DATASET_KEY!r} in store {store.url!r} is malformed ({exc})") from None


def load_tokenizer(store_url: str | Path | ObjectStore) -> BPETokenizer:
    """The BPE tokenizer of the dataset in the store."""
    store = _store(store_url)
    return BPETokenizer.from_json(store.get(TOKENIZER_KEY).decode())


def prepare_dataset(
    store_url: str | Path | ObjectStore,
    *,
    vocab_size: int = 512,
    n_docs: int = 600,
    seed: int = 0,
    shard_tokens: int = 32768,
    val_fraction: float = 0.05,
    progress: Progress | None = None,
) -> DatasetInfo:
    """Build (or find, when the same arguments already built it) the tokenized demo dataset in the store.

    Validation documents are a seeded random ``val_fraction`` of the cleaned documents (at least
    one); the tokenizer is trained on the training documents only, so validation stays unseen.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction}: need 0 < val_fraction < 1")
    store = _store(store_url)
    args = {
        "vocab_size": vocab_size,
        "n_docs": n_docs,
        "seed": seed,
        "shard_tokens": shard_tokens,
        "val_fraction": val_fraction,
    }
    existing = load_dataset_info(store)
    if existing is not None and existing.args == args:
        return existing
    if store.exists(DATASET_KEY):
        # Invalidate before rewriting, so a crash in between cannot leave old metadata over new shards.
        store.delete(DATASET_KEY)
    report = progress or (lambda stage, done, total: None)

    report("corpus", 0, 1)
    corpus = demo_corpus(n_docs, seed=seed)
    store.put(RAW_KEY, "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in corpus.docs).encode())
    report("corpus", 1, 1)
    report("clean", 0, 1)
    docs, stats = run_pipeline(corpus.docs, seed=seed)
    if len(docs) < 2:
        raise ValueError(f"n_docs={n_docs}: only {len(docs)} document(s) survive cleaning; need 2 for train and val")
    store.put(PIPELINE_KEY, json.dumps(stats.to_dict(), indent=1).encode())
    report("clean", 1, 1)

    order = np.random.default_rng(seed).permutation(len(docs))
    n_val = min(len(docs) - 1, max(1, round(val_fraction * len(docs))))
    val_docs = [docs[i] for i in sorted(order[:n_val])]
    train_docs = [docs[i] for i in sorted(order[n_val:])]
    tokenizer = train_bpe(train_docs, vocab_size, progress=lambda done, total: report("bpe", done, total))
    store.put(TOKENIZER_KEY, tokenizer.to_json().encode())

    encoded = {}
    for split, texts in (("train", train_docs), ("val", val_docs)):
        encoded[split] = [tokenizer.encode(t) for t in texts]
        report("encode", len(encoded), 2)
    meta = {"tokenizer": TOKENIZER_KEY, "vocab_size": tokenizer.vocab_size, "seed": seed}
    train_index = write_shards(
        store,
        TRAIN_PREFIX,
        encoded["train"],
        shard_tokens=shard_tokens,
        eos_id=EOS_ID,
        meta={**meta, "split": "train", "docs": len(train_docs)},
    )
    report("shards", 1, 2)
    val_index = write_shards(
        store,
        VAL_PREFIX,
        encoded["val"],
        shard_tokens=shard_tokens,
        eos_id=EOS_ID,
        meta={**meta, "split": "val", "docs": len(val_docs)},
    )
    report("shards", 2, 2)
    info = DatasetInfo(
        store_url=store.url,
        vocab_size=tokenizer.vocab_size,
        train_tokens=train_index.total_tokens,
        val_tokens=val_index.total_tokens,
        train_docs=len(train_docs),
        val_docs=len(val_docs),
        pipeline=stats.to_dict(),
        args=args,
    )
    store.put(DATASET_KEY, info.to_json().encode())
    return info
