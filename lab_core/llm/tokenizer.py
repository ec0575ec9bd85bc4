"""Byte-level tokenizer: every UTF-8 byte is a token, plus BOS and EOS. Lossless on any text."""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from typing import Protocol

BOS, EOS = 256, 257


class Tokenizer(Protocol):
    """What a model's tokenizer offers: bytes (:class:`ByteTokenizer`) or a trained BPE that keeps the
    same ids for bytes, BOS and EOS (``lab_core.llm.bpe.BPETokenizer``)."""

    vocab_size: int
    bos_id: int
    eos_id: int

    def encode(self, text: str, *, bos: bool = False) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def token_bytes(self, token: int) -> bytes: ...


class ByteTokenizer:
    """Token ids 0..255 are bytes; 256 is BOS, 257 EOS, 258 padding."""

    vocab_size = 259
    bos_id, eos_id, pad_id = BOS, EOS, 258

    def encode(self, text: str, *, bos: bool = False) -> list[int]:
        """The UTF-8 bytes of ``text`` as ids, after BOS when asked."""
        ids = list(text.encode("utf-8"))
        return [BOS, *ids] if bos else ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the byte ids (special ids dropped; broken UTF-8 becomes U+FFFD)."""
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def token_bytes(self, token: int) -> bytes:
        """The bytes ``token`` stands for (none for BOS, EOS and padding)."""
        return bytes([token]) if 0 <= token < 256 else b""

    @staticmethod
    def stream_decoder() -> codecs.IncrementalDecoder:
        """A decoder for streaming: feed one byte at a time, get text once a character is whole."""
        return codecs.getincrementaldecoder("utf-8")(errors="replace")
