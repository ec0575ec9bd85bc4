"""Model shapes: a dataclass that checks itself and named presets from CI-tiny to ~1B."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    """A decoder's shape. ``n_heads`` query heads share ``n_kv_heads`` key/value heads (GQA)."""

    vocab_size: int = 259
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn_dim: int = 176
    max_seq_len: int = 512
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not divisible by n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for rotary embeddings")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.dim // self.n_heads

    @property
    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes one token takes in fp32 (K and V, every layer); halve for bf16."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * 4

    def num_params(self) -> int:
        """Parameter count (embedding and output head untied)."""
        attn = self.dim * self.dim * 2 + 2 * self.dim * self.n_kv_heads * self.head_dim
        mlp = 3 * self.dim * self.ffn_dim
        per_layer = attn + mlp + 2 * self.dim
        return self.n_layers * per_layer + 2 * self.vocab_size * self.dim + self.dim


PRESETS: dict[str, ModelConfig] = {
    # CI and notebooks: a forward step in well under a millisecond per token on one core.
    "tiny": ModelConfig(),
    "small": ModelConfig(dim=256, n_layers=4, n_heads=8, n_kv_heads=4, ffn_dim=688, max_seq_len=1024),
    "100m": ModelConfig(dim=768, n_layers=12, n_heads=12, n_kv_heads=4, ffn_dim=2048, max_seq_len=2048),
    # TinyLlama-1.1B's shape.
    "1b": ModelConfig(dim=2048, n_layers=22, n_heads=32, n_kv_heads=4, ffn_dim=5632, max_seq_len=2048),
}


#: Real architectures, for calculators and plans (far too big to build here): Llama 3 (Meta, 2024).
ARCHITECTURES: dict[str, ModelConfig] = {
    "8B": ModelConfig(
        vocab_size=128256,
        dim=4096,
        n_layers=32,
        n_heads=32,
        n_kv_heads=8,
        ffn_dim=14336,
        max_seq_len=8192,
        rope_theta=500000.0,
    ),
    "70B": ModelConfig(
        vocab_size=128256,
        dim=8192,
        n_layers=80,
        n_heads=64,
        n_kv_heads=8,
        ffn_dim=28672,
        max_seq_len=8192,
        rope_theta=500000.0,
    ),
}


def get_config(model: str | ModelConfig) -> ModelConfig:
    """A preset by name, or ``model`` itself; ValueError listing the presets for an unknown name."""
    if isinstance(model, ModelConfig):
        return model
    try:
        return PRESETS[model]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {model!r}; presets: {', '.join(PRESETS)}") from None
