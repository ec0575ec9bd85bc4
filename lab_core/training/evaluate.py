"""Evaluation: held-out loss and perplexity, sample generations, and recording both in the registry."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from lab_core.llm.registry import ModelRegistry

DEFAULT_PROMPTS = (
    "A distributed system",
    "The cache",
    "To scale the database,",
)


@dataclass(frozen=True)
class EvalResult:
    """Mean held-out loss (nats per token), its perplexity exp(loss), and ``{"prompt", "output"}`` samples."""

    loss: float
    perplexity: float
    samples: list[dict[str, str]] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """The numbers under the tracker's keys: eval_loss and eval_ppl."""
        return {"eval_loss": self.loss, "eval_ppl": self.perplexity}


def _core(model: nn.Module) -> nn.Module:
    """The Transformer inside a DDP wrapper (its ``cfg`` holds vocab and max_seq_len)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _batches(source: Any, max_batches: int | None) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    if callable(getattr(source, "next_batch", None)):
        if max_batches is None:
            raise ValueError("max_batches is required when evaluating on a loader with next_batch() (it never ends)")
        return (source.next_batch() for _ in range(max_batches))
    if max_batches is None:
        return source
    return (b for _, b in zip(range(max_batches), source))


def perplexity(model: nn.Module, loader_or_batches: Any, *, max_batches: int | None = None) -> tuple[float, float]:
    """Token-weighted mean cross-entropy over ``(x, y)`` batches (targets -100 ignored) and its perplexity.

    A loader with ``next_batch()`` is rewound afterwards when it has ``state_dict()``, so every evaluation
    during a run scores the same batches and the numbers are comparable from step to step.
    """
    bad = isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1
    if max_batches is not None and bad:
        raise ValueError(f"max_batches must be a positive integer or None, got {max_batches!r}")
    saved = loader_or_batches.state_dict() if callable(getattr(loader_or_batches, "state_dict", None)) else None
    was_training = model.training
    device = _device(model)
    total_loss, total_tokens = 0.0, 0
    model.eval()
    try:
        with torch.no_grad():
            for i, batch in enumerate(_batches(loader_or_batches, max_batches)):
                try:
                    x, y = batch
                except (TypeError, ValueError):
                    kind = type(batch).__name__
                    raise ValueError(f"batch {i} must be a pair (inputs, targets), got {kind}") from None
                if x.shape != y.shape or x.dim() != 2:
                    shapes = f"inputs {tuple(x.shape)} and targets {tuple(y.shape)}"
                    raise ValueError(f"batch {i}: {shapes} must both be [B, T] of the same shape")
                y = y.to(device)
                tokens = int((y != -100).sum())
                if tokens == 0:
                    continue
                loss = model(x.to(device), targets=y)
                total_loss += float(loss) * tokens
                total_tokens += tokens
    finally:
        model.train(was_training)
        if saved is not None:
            loader_or_batches.load_state_dict(saved)
    if total_tokens == 0:
        raise ValueError("loader_or_batches gave no target tokens to score")
    mean = total_loss / total_tokens
    return mean, math.exp(mean) if mean < 700 else math.inf


def generate(
    model: nn.Module, tokenizer: Any, prompt: str, *, max_tokens: int = 48, temperature: float = 0.0, seed: int = 0
) -> str:
    """The text the model writes after ``prompt`` (greedy at temperature 0, else sampled with ``seed``).

    Recomputes the whole sequence each step (no KV cache: evaluation is short and this keeps any model
    usable); stops at EOS, after ``max_tokens`` or when the sequence reaches the model's max_seq_len.
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
        raise ValueError(f"max_tokens must be a non-negative integer, got {max_tokens!r}")
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
    cfg = _core(model).cfg
    ids = tokenizer.encode(prompt, bos=True)
    if len(ids) > cfg.max_seq_len:
        raise ValueError(f"prompt of {len(ids)} tokens exceeds the model's max_seq_len {cfg.max_seq_len}")
    device = _device(model)
    # BOS, padding and ids past the tokenizer's vocabulary are never valid output.
    banned = torch.zeros(cfg.vocab_size, dtype=torch.bool, device=device)
    banned[[tokenizer.bos_id, tokenizer.pad_id]] = True
    banned[tokenizer.vocab_size :] = True
    gen = torch.Generator(device=device).manual_seed(seed)
    out: list[int] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            while len(out) < max_tokens and len(ids) + len(out) < cfg.max_seq_len:
                idx = torch.tensor([ids + out], dtype=torch.long, device=device)
                logits = model(idx)[0, -1].float().masked_fill(banned, -math.inf)
                if temperature == 0:
                    nxt = int(logits.argmax())
                else:
                    probs = torch.softmax(logits / temperature, dim=-1)
                    nxt = int(torch.multinomial(probs, 1, generator=gen))
                if nxt == tokenizer.eos_id:
                    break
                out.append(nxt)
    finally:
        model.train(was_training)
    return tokenizer.decode(out)


def evaluate(
    model: nn.Module,
    tokenizer: Any,
    val_loader: Any,
    *,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    max_batches: int = 8,
    max_tokens: int = 48,
) -> EvalResult:
    """Held-out loss and perplexity over ``max_batches`` batches, plus a greedy sample per prompt."""
    loss, ppl = perplexity(model, val_loader, max_batches=max_batches)
    samples = [{"prompt": p, "output": generate(model, tokenizer, p, max_tokens=max_tokens)} for p in prompts]
    return EvalResult(loss=loss, perplexity=ppl, samples=samples)


def evaluate_and_record(
    registry: ModelRegistry,
    name: str,
    version: int,
    val_loader: Any,
    *,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    max_batches: int = 8,
    max_tokens: int = 48,
    device: str | torch.device = "cpu",
) -> EvalResult:
    """Load a registered version, evaluate it and store the result with ``registry.record_eval``."""
    model, tokenizer = registry.load(name, version=version, device=device)
    result = evaluate(model, tokenizer, val_loader, prompts=prompts, max_batches=max_batches, max_tokens=max_tokens)
    registry.record_eval(name, version, result.metrics(), result.samples)
    return result
