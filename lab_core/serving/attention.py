"""Paged attention in plain PyTorch, so the same code runs on CPU and GPU.

The cache is one tensor per K and V, ``[layers, blocks, block_size, kv_heads, head_dim]``. A step
writes each new token's k and v into its slot (``block * block_size + offset``), then each
sequence gathers its keys and values through its block table and runs scaled dot-product
attention. Decodes (one query each) are gathered into one padded batch with a length mask;
prefill chunks run one sequence at a time with a causal mask shifted by what is already cached.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lab_core.llm.config import ModelConfig


class PagedKVCache:
    """The KV-cache tensors for ``num_blocks`` blocks of ``block_size`` tokens."""

    def __init__(
        self,
        cfg: ModelConfig,
        num_blocks: int,
        block_size: int,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (cfg.n_layers, num_blocks, block_size, cfg.n_kv_heads, cfg.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.block_size = block_size

    def flat(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``layer``'s K and V viewed as ``[slots, kv_heads, head_dim]``."""
        return self.k[layer].flatten(0, 1), self.v[layer].flatten(0, 1)


@dataclass
class SeqSlice:
    """One sequence's part of a step: ``q_len`` new tokens starting at row ``q_start`` of the flat
    batch, attending to ``context`` tokens in total (cached plus new)."""

    q_start: int
    q_len: int
    context: int
    block_table: list[int]


def masked_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Attention of one query per row: ``q`` [B, H, D] over ``k, v`` [B, L, KVH, D] of which the
    first ``lengths[b]`` positions are real. Returns [B, H, D]."""
    mask = torch.arange(k.shape[1], device=k.device)[None, :] < lengths[:, None]
    out = F.scaled_dot_product_attention(
        q.unsqueeze(2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask[:, None, None, :], enable_gqa=True
    )
    return out.squeeze(2)


def causal_with_prefix(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention of ``q`` [T, H, D], the last T of ``k, v`` [C, KVH, D]'s positions, causally."""
    t, c = q.shape[0], k.shape[0]
    mask = torch.ones(t, c, dtype=torch.bool, device=q.device).tril(diagonal=c - t)
    out = F.scaled_dot_product_attention(
        q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=mask, enable_gqa=True
    )
    return out.transpose(0, 1)


class PagedAttend:
    """The ``Attend`` for one engine step over a ``PagedKVCache``."""

    def __init__(self, cache: PagedKVCache, slices: list[SeqSlice], device: str | torch.device) -> None:
        self.cache, self.slices = cache, slices
        bs = cache.block_size
        slots: list[int] = []
        for s in slices:
            for pos in range(s.context - s.q_len, s.context):
                slots.append(s.block_table[pos // bs] * bs + pos % bs)
        self.slots = torch.tensor(slots, dtype=torch.long, device=device)
        self.decodes = [s for s in slices if s.q_len == 1]
        self.prefills = [s for s in slices if s.q_len > 1]
        if self.decodes:
            width = max(len(s.block_table[: -(-s.context // bs)]) for s in self.decodes)
            table = torch.zeros(len(self.decodes), width, dtype=torch.long)
            for row, s in enumerate(self.decodes):
                used = s.block_table[: -(-s.context // bs)]
                table[row, : len(used)] = torch.tensor(used)
            offsets = torch.arange(bs)
            self.decode_slots = (table[:, :, None] * bs + offsets).flatten(1).to(device)
            self.decode_rows = torch.tensor([s.q_start for s in self.decodes], device=device)
            self.decode_lengths = torch.tensor([s.context for s in self.decodes], device=device)

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        k_cache, v_cache = self.cache.flat(layer)
        k_cache[self.slots] = k.to(k_cache.dtype)
        v_cache[self.slots] = v.to(v_cache.dtype)
        out = torch.empty_like(q)
        if self.decodes:
            keys, values = k_cache[self.decode_slots], v_cache[self.decode_slots]
            out[self.decode_rows] = masked_decode(q[self.decode_rows], keys, values, self.decode_lengths).to(q.dtype)
        bs = self.cache.block_size
        for s in self.prefills:
            blocks = torch.tensor(s.block_table[: -(-s.context // bs)], device=q.device)
            slots = (blocks[:, None] * bs + torch.arange(bs, device=q.device)).flatten()[: s.context]
            rows = slice(s.q_start, s.q_start + s.q_len)
            out[rows] = causal_with_prefix(q[rows], k_cache[slots], v_cache[slots]).to(q.dtype)
        return out


class DenseAttend:
    """A plain, contiguous KV cache for one sequence (the baseline a paged cache is measured
    against): ``[layers, max_len, kv_heads, head_dim]`` reserved up front for the longest case."""

    def __init__(
        self, cfg: ModelConfig, max_len: int, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> None:
        shape = (cfg.n_layers, max_len, cfg.n_kv_heads, cfg.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0
        self.new = 0

    def advance(self, new_tokens: int) -> None:
        """Declare the next call's ``new_tokens`` tokens (appended after ``length``)."""
        self.new = new_tokens

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        end = self.length + self.new
        self.k[layer, self.length : end] = k
        self.v[layer, self.length : end] = v
        out = causal_with_prefix(q, self.k[layer, :end], self.v[layer, :end])
        if layer == self.k.shape[0] - 1:
            self.length = end
        return out


class StaticBatchAttend:
    """Dense per-row caches for static batching: a fixed batch decodes in lockstep until its
    longest member finishes, rows that are done still occupying their slot."""

    def __init__(
        self,
        cfg: ModelConfig,
        batch: int,
        max_len: int,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (cfg.n_layers, batch, max_len, cfg.n_kv_heads, cfg.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.lengths = torch.zeros(batch, dtype=torch.long, device=device)
        self.row: int | None = None

    def prefill_row(self, row: int) -> None:
        """The next call prefills row ``row`` alone (its whole prompt)."""
        self.row = row

    def decode_all(self) -> None:
        """The next call decodes one token for every row."""
        self.row = None

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        last = layer == self.k.shape[0] - 1
        if self.row is not None:
            start = int(self.lengths[self.row])
            end = start + q.shape[0]
            self.k[layer, self.row, start:end] = k
            self.v[layer, self.row, start:end] = v
            out = causal_with_prefix(q, self.k[layer, self.row, :end], self.v[layer, self.row, :end])
            if last:
                self.lengths[self.row] = end
            return out
        rows = torch.arange(q.shape[0], device=q.device)
        self.k[layer, rows, self.lengths] = k
        self.v[layer, rows, self.lengths] = v
        out = masked_decode(q, self.k[layer], self.v[layer], self.lengths + 1)
        if last:
            self.lengths += 1
        return out
