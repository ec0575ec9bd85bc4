"""Model registry: numbered versions of named models, with stages, metrics and evaluations.

Layout under ``root``: ``registry.db`` (SQLite, one row per version) and for each version
``<name>/v<n>/`` holding ``model.safetensors`` (fp32 weights), ``config.json`` (the ModelConfig)
and ``tokenizer.json``. A version becomes visible only once its folder is complete: files are
written into a temporary folder, renamed to ``v<n>`` and only then is the row inserted, all while
holding SQLite's write lock, so a failure half way leaves the existing versions as they were.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lab_core.llm.config import ModelConfig
from lab_core.llm.model import Transformer, build_model
from lab_core.llm.tokenizer import ByteTokenizer
from lab_core.sim.clock import Clock, RealClock
from lab_core.store import sqlite

STAGES = ("none", "staging", "production", "archived")
FILES = ("model.safetensors", "config.json", "tokenizer.json")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    stage TEXT NOT NULL DEFAULT 'none',
    metrics TEXT NOT NULL,
    run_id TEXT,
    created REAL NOT NULL,
    tags TEXT NOT NULL,
    files TEXT NOT NULL,
    eval TEXT,
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_production ON versions (name) WHERE stage = 'production';
"""


class RegistryError(ValueError):
    """A registry request that names something absent or malformed; nothing was changed."""


class CorruptModelError(RegistryError):
    """A version's files no longer match the checksums recorded when it was registered."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version. ``eval`` is ``{"metrics", "samples", "recorded"}`` once evaluated."""

    name: str
    version: int
    stage: str
    metrics: dict[str, float]
    run_id: str | None
    created: float
    path: Path
    tags: dict[str, str]
    eval: dict[str, Any] | None


def tokenizer_json(tokenizer: Any) -> str:
    """The JSON that ``load_tokenizer_json`` turns back into ``tokenizer``."""
    if isinstance(tokenizer, ByteTokenizer):
        return json.dumps({"kind": "byte"})
    if callable(getattr(tokenizer, "to_json", None)):
        return tokenizer.to_json()
    raise RegistryError(f"tokenizer must be a ByteTokenizer or a BPETokenizer, got {type(tokenizer).__name__}")


def load_tokenizer_json(text: str) -> Any:
    """A ByteTokenizer for ``{"kind": "byte"}``, else the BPETokenizer the JSON describes."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"tokenizer.json is not valid JSON: {exc}") from None
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "byte":
        return ByteTokenizer()
    if kind != "bpe":
        raise RegistryError(f"tokenizer.json field 'kind' must be 'byte' or 'bpe', got {kind!r}")
    from lab_core.llm.bpe import BPETokenizer

    return BPETokenizer.from_json(text)


class ModelRegistry:
    """Named models with versions 1, 2, 3, ...; at most one version of a name is in production."""

    def __init__(self, root: str | Path, *, clock: Clock | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.clock = clock or RealClock()
        self.conn = sqlite(self.root / "registry.db")
        self.lock = threading.RLock()
        with self.lock:
            self.conn.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database connection."""
        with self.lock:
            self.conn.close()

    # --- writing ---------------------------------------------------------------------------

    def register(
        self,
        name: str,
        model: nn.Module,
        *,
        model_config: ModelConfig,
        tokenizer: Any,
        metrics: dict[str, float] | None = None,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> ModelVersion:
        """Store ``model``'s weights, config and tokenizer as the next version of ``name``."""
        _check_name(name)
        if not isinstance(model_config, ModelConfig):
            raise RegistryError(f"model_config must be a ModelConfig, got {type(model_config).__name__}")
        tok_json = tokenizer_json(tokenizer)
        if tokenizer.vocab_size > model_config.vocab_size:
            raise RegistryError(
                f"tokenizer vocab_size {tokenizer.vocab_size} exceeds model_config.vocab_size {model_config.vocab_size}"
            )
        metrics_json = json.dumps(_number_dict(metrics or {}, "metrics"))
        tags_json = json.dumps(_string_dict(tags or {}, "tags"))
        if run_id is not None and not isinstance(run_id, str):
            raise RegistryError(f"run_id must be a string, got {run_id!r}")
        weights = _fp32_state(model, model_config)

        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            save_file(weights, str(tmp / "model.safetensors"))
            (tmp / "config.json").write_text(json.dumps(dataclasses.asdict(model_config), indent=2))
            (tmp / "tokenizer.json").write_text(tok_json)
            files = {f: _sha256(tmp / f) for f in FILES}
            with self.lock:
                # BEGIN IMMEDIATE takes the write lock now, so no other process can pick the same number.
                self.conn.execute("BEGIN IMMEDIATE")
                final: Path | None = None
                try:
                    row = self.conn.execute(
                        "SELECT COALESCE(MAX(version), 0) + 1 AS v FROM versions WHERE name = ?", (name,)
                    ).fetchone()
                    version = row["v"]
                    final = folder / f"v{version}"
                    if final.exists():
                        # A folder without a row: left by a crash between rename and insert.
                        shutil.rmtree(final)
                    tmp.rename(final)
                    self._insert(name, version, metrics_json, run_id, tags_json, json.dumps(files))
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    if final is not None and final.exists() and not tmp.exists():
                        shutil.rmtree(final)
                    raise
                self.conn.execute("COMMIT")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return self.get(name, version)

    def _insert(self, name: str, version: int, metrics: str, run_id: str | None, tags: str, files: str) -> None:
        self.conn.execute(
            "INSERT INTO versions (name, version, stage, metrics, run_id, created, tags, files) "
            "VALUES (?, ?, 'none', ?, ?, ?, ?, ?)",
            (name, version, metrics, run_id, self.clock.now(), tags, files),
        )

    def set_stage(self, name: str, version: int, stage: str) -> ModelVersion:
        """Move a version to ``stage``; promoting to "production" archives the previous production version."""
        if stage not in STAGES:
            raise RegistryError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
        with self.lock:
            self._row(name, version)
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                if stage == "production":
                    self.conn.execute(
                        "UPDATE versions SET stage = 'archived' "
                        "WHERE name = ? AND stage = 'production' AND version <> ?",
                        (name, version),
                    )
                self.conn.execute(
                    "UPDATE versions SET stage = ? WHERE name = ? AND version = ?", (stage, name, version)
                )
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        return self.get(name, version)

    def record_eval(self, name: str, version: int, metrics: dict[str, float], samples: list[dict]) -> ModelVersion:
        """Attach an evaluation (metrics such as eval_loss/eval_ppl, and generated samples) to a version."""
        if not isinstance(samples, list) or not all(isinstance(s, dict) for s in samples):
            raise RegistryError("samples must be a list of dicts such as {'prompt': ..., 'output': ...}")
        try:
            record = json.dumps(
                {"metrics": _number_dict(metrics, "metrics"), "samples": samples, "recorded": self.clock.now()}
            )
        except TypeError as exc:
            raise RegistryError(f"samples are not JSON-serialisable: {exc}") from None
        with self.lock:
            self._row(name, version)
            self.conn.execute("UPDATE versions SET eval = ? WHERE name = ? AND version = ?", (record, name, version))
        return self.get(name, version)

    # --- reading ---------------------------------------------------------------------------

    def models(self) -> list[str]:
        """Names with at least one version, sorted."""
        with self.lock:
            return [r["name"] for r in self.conn.execute("SELECT DISTINCT name FROM versions ORDER BY name")]

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first."""
        with self.lock:
            self._require_name(name)
            rows = self.conn.execute("SELECT * FROM versions WHERE name = ? ORDER BY version", (name,)).fetchall()
        return [self._version(r) for r in rows]

    def get(self, name: str, version: int | None = None, stage: str | None = None) -> ModelVersion:
        """A version by number, else the newest one in ``stage``, else the newest one."""
        if stage is not None and stage not in STAGES:
            raise RegistryError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
        with self.lock:
            if version is not None:
                row = self._row(name, version)
                if stage is not None and row["stage"] != stage:
                    raise RegistryError(f"{name} v{version} is in stage {row['stage']!r}, not {stage!r}")
                return self._version(row)
            self._require_name(name)
            if stage is None:
                row = self.conn.execute(
                    "SELECT * FROM versions WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
                ).fetchone()
                return self._version(row)
            row = self.conn.execute(
                "SELECT * FROM versions WHERE name = ? AND stage = ? ORDER BY version DESC LIMIT 1", (name, stage)
            ).fetchone()
            if row is None:
                have = self.conn.execute(
                    "SELECT version, stage FROM versions WHERE name = ? ORDER BY version", (name,)
                ).fetchall()
                listed = ", ".join(f"v{r['version']} {r['stage']}" for r in have)
                raise RegistryError(f"{name} has no version in stage {stage!r}; versions: {listed}")
            return self._version(row)

    def load(
        self, name: str, *, version: int | None = None, stage: str | None = None, device: str | torch.device = "cpu"
    ) -> tuple[Transformer, Any]:
        """The version's model (eval mode, on ``device``) and its tokenizer, after checking file checksums."""
        with self.lock:
            mv = self.get(name, version, stage)
            files = json.loads(self._row(mv.name, mv.version)["files"])
        for fname, digest in files.items():
            path = mv.path / fname
            if not path.is_file():
                raise CorruptModelError(f"{path} of {name} v{mv.version} is missing")
            if _sha256(path) != digest:
                raise CorruptModelError(f"{path} of {name} v{mv.version} does not match its recorded checksum")
        cfg = ModelConfig(**json.loads((mv.path / "config.json").read_text()))
        # build_model leaves the caller's RNG untouched; the random init is overwritten right away.
        model = build_model(cfg, device=device)
        model.load_state_dict(load_file(str(mv.path / "model.safetensors"), device=str(device)))
        tokenizer = load_tokenizer_json((mv.path / "tokenizer.json").read_text())
        return model.eval(), tokenizer

    # --- internals -------------------------------------------------------------------------

    def _require_name(self, name: str) -> None:
        if self.conn.execute("SELECT 1 FROM versions WHERE name = ? LIMIT 1", (name,)).fetchone() is None:
            raise RegistryError(f"unknown model {name!r}; models: {', '.join(self.models()) or 'none'}")

    def _row(self, name: str, version: int) -> dict:
        self._require_name(name)
        row = self.conn.execute("SELECT * FROM versions WHERE name = ? AND version = ?", (name, version)).fetchone()
        if row is None:
            have = [r["version"] for r in self.conn.execute("SELECT version FROM versions WHERE name = ?", (name,))]
            raise RegistryError(f"{name} has no version {version!r}; versions: {', '.join(map(str, have))}")
        return row

    def _version(self, row: dict) -> ModelVersion:
        return ModelVersion(
            name=row["name"],
            version=row["version"],
            stage=row["stage"],
            metrics=json.loads(row["metrics"]),
            run_id=row["run_id"],
            created=row["created"],
            path=self.root / row["name"] / f"v{row['version']}",
            tags=json.loads(row["tags"]),
            eval=json.loads(row["eval"]) if row["eval"] else None,
        )


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise RegistryError(f"model name must be 1-64 letters, digits, '.', '_' or '-' (a folder name), got {name!r}")


def _number_dict(values: object, field: str) -> dict[str, float]:
    if not isinstance(values, dict):
        raise RegistryError(f"{field} must be a dict of name to number, got {type(values).__name__}")
    out = {}
    for key, value in values.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RegistryError(f"{field}[{key!r}] must map a string to a number, got {value!r}")
        out[key] = float(value)
    return out


def _string_dict(values: object, field: str) -> dict[str, str]:
    if not isinstance(values, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
        raise RegistryError(f"{field} must be a dict of string to string, got {values!r}")
    return dict(values)


def _fp32_state(model: nn.Module, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The module's weights as contiguous fp32 CPU tensors, checked against the Transformer ``cfg`` describes."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    if not isinstance(model, nn.Module):
        raise RegistryError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    state = model.state_dict()
    for key, value in state.items():
        if type(value) is not torch.Tensor and isinstance(value, torch.Tensor):
            raise RegistryError(
                f"model weight {key!r} is a sharded {type(value).__name__}; gather a full state dict first "
                "(e.g. get_model_state_dict(..., full_state_dict=True)) and load it into a plain Transformer"
            )
    with torch.device("meta"):
        expected = {k: v.shape for k, v in Transformer(cfg).state_dict().items()}
    got = {k: v.shape for k, v in state.items()}
    if got != expected:
        missing = sorted(set(expected) - set(got))[:5]
        extra = sorted(set(got) - set(expected))[:5]
        wrong = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])[:5]
        raise RegistryError(
            f"model weights do not match model_config: missing {missing}, unexpected {extra}, wrong shape {wrong}"
        )
    # clone: safetensors refuses tensors that share storage, and the caller's model must stay untouched.
    return {k: v.detach().to("cpu", torch.float32).clone().contiguous() for k, v in state.items()}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
