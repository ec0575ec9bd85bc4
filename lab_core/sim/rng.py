"""Seeded randomness: every random draw in the project goes through ``rng(seed)``."""

from __future__ import annotations

import numpy as np

DEFAULT_SEED = 20261126


def rng(seed: int | None = None) -> np.random.Generator:
    """A numpy Generator; ``None`` means the project's fixed default seed, never OS entropy."""
    return np.random.default_rng(DEFAULT_SEED if seed is None else seed)
