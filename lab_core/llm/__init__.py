"""The small Llama-style language model shared by the serving lab (07) and the training lab (08).

One definition in one place: ``ModelConfig`` and its presets, ``Transformer`` (RMSNorm, RoPE,
grouped-query attention, SwiGLU) and the byte-level ``ByteTokenizer``.
"""

from lab_core.llm.config import PRESETS, ModelConfig, get_config
from lab_core.llm.model import Attend, Transformer, build_model
from lab_core.llm.tokenizer import BOS, EOS, ByteTokenizer

__all__ = [
    "BOS",
    "EOS",
    "PRESETS",
    "Attend",
    "ByteTokenizer",
    "ModelConfig",
    "Transformer",
    "build_model",
    "get_config",
]
