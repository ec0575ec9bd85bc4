"""What the engine is measured against, with the same model and the same greedy sampling:
``generate_sequential`` serves requests one at a time with a plain contiguous KV cache, and
``generate_static`` runs fixed batches in lockstep until their longest member finishes."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from lab_core.llm.model import Transformer
from lab_core.llm.tokenizer import EOS
from lab_core.serving.attention import DenseAttend, StaticBatchAttend


def _stopped(token: int, n: int, max_tokens: int, ignore_eos: bool) -> bool:
    return n >= max_tokens or (token == EOS and not ignore_eos)


@torch.inference_mode()
def generate_sequential(
    model: Transformer,
    prompts: Sequence[list[int]],
    max_tokens: int,
    *,
    ignore_eos: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> list[tuple[list[int], float, float]]:
    """Each prompt alone: prefill, then one decode step per token. Returns (tokens, first-token
    time, finish time) per prompt, all requests having arrived at the start."""
    results = []
    for prompt in prompts:
        cache = DenseAttend(
            model.cfg, len(prompt) + max_tokens, device=model.head.weight.device, dtype=model.head.weight.dtype
        )
        ids, out, first = list(prompt), [], 0.0
        while True:
            cache.advance(len(ids))
            pos = torch.arange(cache.length, cache.length + len(ids))
            logits = model.forward_flat(torch.tensor(ids), pos, cache, torch.tensor([len(ids) - 1]))
            token = int(logits[0].argmax())
            out.append(token)
            first = first or clock()
            if _stopped(token, len(out), max_tokens, ignore_eos):
                break
            ids = [token]
        results.append((out, first, clock()))
    return results


@torch.inference_mode()
def generate_static(
    model: Transformer,
    prompts: Sequence[list[int]],
    max_tokens: int,
    *,
    batch_size: int = 8,
    ignore_eos: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> list[tuple[list[int], float, float]]:
    """Batches of ``batch_size`` in arrival order: prefill each, decode all rows together until
    every row is done (finished rows keep computing: the waste continuous batching removes)."""
    results: list[tuple[list[int], float, float]] = []
    for b in range(0, len(prompts), batch_size):
        batch = prompts[b : b + batch_size]
        cache = StaticBatchAttend(
            model.cfg,
            len(batch),
            max(map(len, batch)) + max_tokens,
            device=model.head.weight.device,
            dtype=model.head.weight.dtype,
        )
        outs: list[list[int]] = [[] for _ in batch]
        done = [False] * len(batch)
        last = []
        for row, prompt in enumerate(batch):
            cache.prefill_row(row)
            logits = model.forward_flat(
                torch.tensor(prompt), torch.arange(len(prompt)), cache, torch.tensor([len(prompt) - 1])
            )
            last.append(int(logits[0].argmax()))
        first = clock()
        finish = [first] * len(batch)
        while True:
            for row, token in enumerate(last):
                if not done[row]:
                    outs[row].append(token)
                    done[row] = _stopped(token, len(outs[row]), max_tokens, ignore_eos)
                    finish[row] = clock()
            if all(done):
                break
            cache.decode_all()
            logits = model.forward_flat(torch.tensor(last), cache.lengths.clone(), cache)
            last = logits.argmax(-1).tolist()
        results.extend((o, first, f) for o, f in zip(outs, finish))
    return results
