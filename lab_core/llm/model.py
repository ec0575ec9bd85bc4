"""A Llama-style decoder in plain PyTorch: RMSNorm, rotary positions, grouped-query attention, SwiGLU.

Two entry points share every weight and every line of the block:
- ``forward(idx)``: a ``[batch, time]`` batch with causal attention, for training and scoring;
- ``forward_flat(ids, positions, attend)``: the tokens of many sequences laid end to end, as a
  serving engine batches them. Where keys and values live (a paged cache, a dense cache) is the
  caller's business: each layer hands its new q, k, v to ``attend`` and gets the output back.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from lab_core.llm.config import ModelConfig, get_config


class Attend(Protocol):
    """Attention over a cache: store ``k, v`` ([tokens, kv_heads, head_dim]) for ``layer`` and
    return the attention output for ``q`` ([tokens, heads, head_dim])."""

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor: ...


class RMSNorm(nn.Module):
    """x / rms(x) * weight."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope_tables(cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, ``[max_seq_len, head_dim // 2]``, for rotary embeddings."""
    inv = 1.0 / cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float64) / cfg.head_dim)
    angles = torch.outer(torch.arange(cfg.max_seq_len, dtype=torch.float64), inv)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of ``x`` [..., tokens, heads, head_dim] by position."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).type_as(x)


class Attention(nn.Module):
    """Grouped-query self-attention with rotary positions."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer, self.n_heads, self.n_kv, self.head_dim = layer, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def _qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        shape = x.shape[:-1]
        # -1 heads: under tensor parallelism each rank holds only its share of the heads.
        q = self.wq(x).view(*shape, -1, self.head_dim)
        k = self.wk(x).view(*shape, -1, self.head_dim)
        v = self.wv(x).view(*shape, -1, self.head_dim)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Causal attention over ``x`` [batch, time, dim]."""
        q, k, v = (t.transpose(1, 2) for t in self._qkv(x, cos, sin))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.wo(out.transpose(1, 2).flatten(2))

    def forward_flat(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attend: Attend) -> torch.Tensor:
        """Attention for flat tokens ``x`` [tokens, dim], keys and values kept by ``attend``."""
        q, k, v = self._qkv(x, cos, sin)
        return self.wo(attend(self.layer, q, k, v).flatten(1))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    """Pre-norm residual block: attention then feed-forward."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg, layer)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = FeedForward(cfg)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attend: Attend | None = None
    ) -> torch.Tensor:
        h = self.attn_norm(x)
        x = x + (self.attn(h, cos, sin) if attend is None else self.attn.forward_flat(h, cos, sin, attend))
        return x + self.ffn(self.ffn_norm(x))


class Transformer(nn.Module):
    """The decoder. ``forward`` for batches, ``forward_flat`` for a serving engine's step."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        cos, sin = rope_tables(cfg)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [batch, time, vocab] for ``idx``; with ``targets``, the mean cross-entropy instead."""
        t = idx.shape[1]
        if t > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {t} tokens exceeds max_seq_len {self.cfg.max_seq_len}")
        x = self.embed(idx)
        cos, sin = self.cos[:t], self.sin[:t]
        for layer in self.layers:
            x = layer(x, cos, sin)
        logits = self.head(self.norm(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)

    def forward_flat(
        self, ids: torch.Tensor, positions: torch.Tensor, attend: Attend, logits_rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits for flat tokens ``ids`` [tokens] at ``positions``; only ``logits_rows`` when given
        (a serving step needs one row per sequence, not one per token)."""
        x = self.embed(ids)
        cos, sin = self.cos[positions], self.sin[positions]
        for layer in self.layers:
            x = layer(x, cos, sin, attend)
        if logits_rows is not None:
            x = x[logits_rows]
        return self.head(self.norm(x))


def build_model(
    model: str | ModelConfig = "tiny",
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Transformer:
    """A randomly initialised model (same weights for the same ``seed``), in eval mode."""
    cfg = get_config(model)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        net = Transformer(cfg)
    finally:
        torch.random.set_rng_state(gen_state)
    return net.to(device=device, dtype=dtype).eval()
