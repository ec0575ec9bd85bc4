"""API keys and the limits of each tier.

A key belongs to one user of one organisation and carries a tier, ``"paid"`` or ``"free"``.
The tier sets the priority in the queue (paid first) and the per-minute limits, for the user
and for the whole organisation (its users share the org's budget).

Key files (YAML or JSON) hold a list of keys, at the top level or under ``keys``::

    keys:
      - {key: sk-paid-demo, user: alice, org: acme, tier: paid}
      - {key: sk-free-demo, user: bob, org: hobby, tier: free}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import yaml

from lab_core.serving.protocol import FREE, PAID

TIERS: dict[str, int] = {"paid": PAID, "free": FREE}
"""Tier name -> queue priority (smaller is served first)."""


@dataclass(frozen=True)
class ApiKey:
    """One client credential. ``key`` is kept out of ``repr`` so logs do not leak it."""

    key: str = field(repr=False)
    user: str
    org: str
    tier: str = "free"

    def __post_init__(self) -> None:
        for name in ("key", "user", "org"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        if self.tier not in TIERS:
            raise ValueError(f"tier must be one of {', '.join(TIERS)}, got {self.tier!r}")

    @property
    def priority(self) -> int:
        """``PAID`` or ``FREE`` (the engine protocol's priorities)."""
        return TIERS[self.tier]


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class TierLimits:
    """Per-minute limits of a tier: requests and tokens (prompt + max_tokens reserved) for one
    user, and the same for a whole organisation."""

    requests_per_min: int
    tokens_per_min: int
    org_requests_per_min: int
    org_tokens_per_min: int

    def __post_init__(self) -> None:
        for name in ("requests_per_min", "tokens_per_min", "org_requests_per_min", "org_tokens_per_min"):
            _check_positive(name, getattr(self, name))


DEFAULT_LIMITS: dict[str, TierLimits] = {
    "paid": TierLimits(
        requests_per_min=600, tokens_per_min=200_000, org_requests_per_min=3_000, org_tokens_per_min=1_000_000
    ),
    "free": TierLimits(
        requests_per_min=60, tokens_per_min=20_000, org_requests_per_min=300, org_tokens_per_min=100_000
    ),
}
"""Paid: 600 req/min and 200k tok/min per user, 5x that per org. Free: a tenth of paid."""


def keys_by_value(keys: Iterable[ApiKey]) -> dict[str, ApiKey]:
    """``{key string: ApiKey}``; a key string given twice is refused."""
    out: dict[str, ApiKey] = {}
    for k in keys:
        if not isinstance(k, ApiKey):
            raise ValueError(f"keys must be ApiKey objects, got {type(k).__name__}")
        if k.key in out:
            raise ValueError(f"key {k.key[:8]}... is listed twice")
        out[k.key] = k
    return out


DEFAULT_KEYS: dict[str, ApiKey] = keys_by_value(
    [
        ApiKey("sk-paid-demo", user="alice", org="acme", tier="paid"),
        ApiKey("sk-free-demo", user="bob", org="hobby", tier="free"),
    ]
)
"""The demo's keys: ``sk-paid-demo`` (alice of acme, paid) and ``sk-free-demo`` (bob of hobby, free)."""


def load_keys(path: str | PathLike[str]) -> dict[str, ApiKey]:
    """Read keys from a YAML (``.yaml``/``.yml``) or JSON file into ``{key string: ApiKey}``.

    Raises ValueError naming the file and the entry/field at fault (``keys[1].tier ...``).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{p}: cannot read key file: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"{p}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: {exc}") from None
    if isinstance(data, Mapping):
        if "keys" not in data:
            raise ValueError(f"{p}: expected a list of keys or a mapping with a 'keys' list")
        data = data["keys"]
    if not isinstance(data, list) or not data:
        raise ValueError(f"{p}: keys must be a non-empty list, got {type(data).__name__}")
    entries: list[ApiKey] = []
    for i, entry in enumerate(data):
        where = f"{p}: keys[{i}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be a mapping with key, user, org, tier; got {type(entry).__name__}")
        unknown = sorted(set(entry) - {"key", "user", "org", "tier"})
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}; allowed: key, user, org, tier")
        missing = [f for f in ("key", "user", "org") if f not in entry]
        if missing:
            raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
        try:
            entries.append(ApiKey(entry["key"], entry["user"], entry["org"], entry.get("tier", "free")))
        except ValueError as exc:
            raise ValueError(f"{where}.{exc}") from None
    try:
        return keys_by_value(entries)
    except ValueError as exc:
        raise ValueError(f"{p}: {exc}") from None
