"""From a finished run to the model registry: load its last checkpoint into one plain model (whatever the
run's strategy and world size), evaluate it on held-out data and register it with its metrics."""

from __future__ import annotations

import json
from pathlib import Path

from lab_core.llm.model import Transformer, build_model
from lab_core.llm.registry import ModelRegistry, ModelVersion
from lab_core.store.object_store import ObjectStore
from lab_core.training.checkpoint import CheckpointManager
from lab_core.training.config import TrainConfig
from lab_core.training.dataset import load_tokenizer
from lab_core.training.evaluate import EvalResult, evaluate
from lab_core.training.loader import ShardedLoader


def load_trained(checkpoint_dir: Path, config: TrainConfig, vocab_size: int) -> tuple[Transformer, int]:
    """The newest valid checkpoint's weights in an unsharded model (DCP reshards on load), and its step."""
    model = build_model(config.model_config(vocab_size), seed=config.seed)
    state = CheckpointManager(checkpoint_dir, keep_last=config.keep_last).load(model, restore_rng=False)
    if state is None:
        raise FileNotFoundError(f"no complete checkpoint in {checkpoint_dir}")
    return model.eval(), state.step


def publish_run(
    run_dir: Path,
    data_url: str,
    registry_root: Path,
    name: str,
    *,
    run_id: str | None = None,
    stage: str = "staging",
    metrics: dict[str, float] | None = None,
) -> tuple[ModelVersion, EvalResult]:
    """Evaluate the run's final model on the validation shards and register it at ``stage``."""
    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    tokenizer = load_tokenizer(data_url)
    model, step = load_trained(run_dir / "checkpoints", config, tokenizer.vocab_size)
    val = ShardedLoader(
        ObjectStore(data_url), "val", seq_len=config.seq_len, batch_size=config.micro_batch, seed=config.seed
    )
    result = evaluate(model, tokenizer, val)
    registry = ModelRegistry(registry_root)
    version = registry.register(
        name,
        model,
        model_config=model.cfg,
        tokenizer=tokenizer,
        metrics={**(metrics or {}), **result.metrics(), "step": step},
        run_id=run_id,
        tags={"strategy": config.strategy, "precision": config.precision},
    )
    registry.record_eval(name, version.version, result.metrics(), result.samples)
    return registry.set_stage(name, version.version, stage), result
