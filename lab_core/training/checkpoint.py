"""Training checkpoints: atomic, verified, asynchronous, and loadable on another world size.

Model and optimizer state go through ``torch.distributed.checkpoint`` (DCP), so the same code saves
a plain module, DDP, FSDP2 (``fully_shard``) or tensor-parallel (DTensor) model, and a checkpoint
written by N ranks loads on M ranks (DCP reshards on load). Around DCP this module adds what a
training job needs to survive crashes:

- **Atomic commit.** Everything is written into ``root/.tmp-step_XXXXXXXX/``; rank 0 then writes
  ``manifest.json`` (every file's size and sha256) and renames the folder to ``root/step_XXXXXXXX/``.
  A crash at any point before the rename leaves nothing that ``list``/``latest`` would return.
- **Verification.** ``latest`` re-hashes the newest checkpoint against its manifest and falls back
  to the previous one, with a warning naming the bad file, when a file is missing, truncated or
  corrupt.
- **Async save.** ``save(asynchronous=True)`` blocks only while the state is copied ("staged") to
  CPU memory; the files are written and committed by a background thread, so training overlaps
  the write. The staging buffers are reused from one save to the next (one extra copy of the
  state in host memory for the lifetime of the manager).
- **Everything else a resume needs**: scheduler, data-loader position, user extras (rank 0's
  ``trainer_state.pt``) and every rank's RNG streams (``rng/rank{r}.pt``: torch CPU, CUDA, Python
  ``random``, NumPy), so a resumed run reproduces the uninterrupted one bit for bit.

When ``torch.distributed`` is initialised, the constructor, ``save``, ``wait``, ``load`` and
``close`` are collective: every rank must call them in the same order. ``root`` must be one
folder that every rank sees (a local disk on one node, a shared filesystem across nodes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TRAINER_STATE = "trainer_state.pt"
_PREFIX = "step_"
_TMP_PREFIX = ".tmp-"
_FORMAT = 1
_HASH_CHUNK = 8 << 20


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the checkpoint and the file."""


class CorruptCheckpointError(CheckpointError):
    """A file of a committed checkpoint is missing, truncated or does not match its manifest."""


@dataclass(frozen=True)
class SaveResult:
    """What ``save`` did: ``blocked_s`` is how long the caller's thread was held."""

    step: int
    blocked_s: float
    path: Path


@dataclass(frozen=True)
class CheckpointInfo:
    """A committed checkpoint as its manifest describes it (``bytes``: all files together)."""

    step: int
    path: Path
    bytes: int
    world_size: int
    created: str


@dataclass(frozen=True)
class LoadedState:
    """The non-tensor state ``load`` hands back for the trainer to apply."""

    step: int
    loader_state: dict | None
    extra: dict | None
    world_size: int


def _dist_on() -> bool:
    return dist.is_available() and dist.is_initialized()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    # A rename is durable only once the directory entry itself reaches the disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rng_state() -> dict[str, Any]:
    np_name, np_key, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        "python": random.getstate(),
        # Stored as a tensor and plain numbers so the file loads with weights_only=True.
        "numpy": {
            "name": np_name,
            "key": torch.from_numpy(np_key.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        # A different GPU count (another world size) cannot take the saved streams one to one.
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))


def _step_dir_name(step: int) -> str:
    return f"{_PREFIX}{step:08d}"


class CheckpointManager:
    """Saves and restores training state under ``root``, keeping the newest ``keep_last`` checkpoints.

    With ``torch.distributed`` initialised, construct it on every rank: it creates a gloo process
    group of its own (or uses ``process_group``) so that an async save's collectives, which run in
    a background thread, never interleave with the training step's collectives.
    """

    def __init__(self, root: str | Path, *, keep_last: int = 3, process_group: dist.ProcessGroup | None = None) -> None:
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
            raise ValueError(f"keep_last must be a positive integer, got {keep_last!r}")
        self.root = Path(root)
        self.keep_last = keep_last
        self._pg: dist.ProcessGroup | None = None
        if _dist_on():
            self._pg = process_group if process_group is not None else dist.new_group(backend="gloo")
        self._rank = dist.get_rank(self._pg) if self._pg is not None else 0
        self._world = dist.get_world_size(self._pg) if self._pg is not None else 1
        self._stager: DefaultStager | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._closed = False
        if self._pg is None:
            # DCP warns on every single-process save/load that it is "assuming" that intent; here it is the design.
            warnings.filterwarnings(
                "ignore", message="torch.distributed is (disabled, )?unavailable or uninitialized", category=UserWarning
            )
        if self._rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob(f"{_TMP_PREFIX}*"):
                log.warning("removing %s left by a save that never committed", stale)
                shutil.rmtree(stale, ignore_errors=True)
        self._barrier()

    # -- collectives -------------------------------------------------------------------------
    def _barrier(self) -> None:
        if self._pg is not None:
            dist.barrier(group=self._pg)

    def _broadcast(self, value: Any) -> Any:
        if self._pg is None:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=dist.get_global_rank(self._pg, 0), group=self._pg)
        return box[0]

    # -- save --------------------------------------------------------------------------------
    def save(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        scheduler: Any = None,
        loader_state: dict | None = None,
        extra: dict | None = None,
        asynchronous: bool = False,
    ) -> SaveResult:
        """Checkpoint ``step``; with ``asynchronous`` return once the state is staged in CPU memory.

        An async save commits in the background; ``wait`` (or the next ``save``/``load``/``close``)
        finishes it and re-raises its error if it failed. ``loader_state`` and ``extra`` must hold
        plain Python values and tensors: they are read back with ``torch.load(weights_only=True)``.
        """
        if self._closed:
            raise RuntimeError("CheckpointManager is closed")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}")
        for name, value in (("loader_state", loader_state), ("extra", extra)):
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"{name} must be a dict or None, got {type(value).__name__}")
        self.wait()
        start = time.perf_counter()
        final = self.root / _step_dir_name(step)
        tmp = self.root / f"{_TMP_PREFIX}{_step_dir_name(step)}"
        problem = None
        if self._rank == 0:
            if final.exists():
                problem = f"checkpoint for step {step} already exists at {final}"
            else:
                shutil.rmtree(tmp, ignore_errors=True)
                (tmp / "rng").mkdir(parents=True)
        # One collective both shares rank 0's verdict and orders every rank after the mkdir.
        problem = self._broadcast(problem)
        if problem:
            raise ValueError(problem)

        torch.save(_rng_state(), tmp / "rng" / f"rank{self._rank}.pt")
        if self._rank == 0:
            torch.save(
                {
                    "format": _FORMAT,
                    "step": step,
                    "world_size": self._world,
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "loader_state": loader_state,
                    "extra": extra,
                },
                tmp / TRAINER_STATE,
            )
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        writer = dcp.FileSystemWriter(tmp, single_file_per_rank=True, sync_files=True)
        no_dist = self._pg is None
        try:
            if asynchronous:
                if self._stager is None:
                    # Owned by the manager so the CPU staging buffers are reused by every save; on a GPU
                    # they are pinned and filled by non-blocking copies (one sync at the end of staging).
                    cuda = torch.cuda.is_available()
                    self._stager = DefaultStager(
                        StagingOptions(
                            use_pinned_memory=cuda,
                            use_shared_memory=False,
                            use_async_staging=False,
                            use_non_blocking_copy=cuda,
                        )
                    )
                upload = dcp.async_save(
                    state, storage_writer=writer, process_group=self._pg, async_stager=self._stager, no_dist=no_dist
                )
                # async_save returns once staging is done: the live tensors may change from here on.
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ckpt-commit")
                self._pending = self._executor.submit(self._finish, upload, step, tmp, final)
                return SaveResult(step, time.perf_counter() - start, final)
            dcp.save(state, storage_writer=writer, process_group=self._pg, no_dist=no_dist)
        except BaseException:
            # DCP raises on every rank together, so this cleanup needs no coordination.
            if self._rank == 0:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        error = None
        if self._rank == 0:
            try:
                self._commit(step, tmp, final)
            except Exception as exc:  # re-raised by _agree on every rank
                shutil.rmtree(tmp, ignore_errors=True)
                error = exc
        self._agree(error)
        return SaveResult(step, time.perf_counter() - start, final)

    def _agree(self, error: BaseException | None) -> None:
        """Raise on every rank if the save failed on any (only rank 0 commits), else return on all."""
        if self._pg is None:
            if error is not None:
                raise error
            return
        # Doubles as the barrier that keeps ranks from looking for the checkpoint before the rename.
        reports: list[str | None] = [None] * self._world
        dist.all_gather_object(
            reports, f"{type(error).__name__}: {error}" if error is not None else None, group=self._pg
        )
        if error is not None:
            raise error
        for rank, report in enumerate(reports):
            if report is not None:
                raise RuntimeError(f"checkpoint save failed on rank {rank}: {report}")

    def _finish(self, upload: Future, step: int, tmp: Path, final: Path) -> None:
        try:
            upload.result()
            if self._rank == 0:
                self._commit(step, tmp, final)
        except BaseException:
            if self._rank == 0:
                shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _commit(self, step: int, tmp: Path, final: Path) -> None:
        # DCP's coordinator writes .metadata only after every rank reported its files written,
        # so by now the whole folder is complete and rank 0 can hash it alone.
        files = []
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            files.append(
                {"path": path.relative_to(tmp).as_posix(), "bytes": path.stat().st_size, "sha256": _sha256(path)}
            )
        manifest = {
            "format": _FORMAT,
            "step": step,
            "world_size": self._world,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": files,
        }
        with (tmp / MANIFEST).open("w") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        _fsync_dir(self.root)
        self._prune()

    def _prune(self) -> None:
        committed = sorted(self._committed_dirs())
        for _, path in committed[: -self.keep_last]:
            shutil.rmtree(path, ignore_errors=True)

    def wait(self) -> None:
        """Finish and commit a pending async save (re-raising its error); no-op when none is pending."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        error = None
        try:
            pending.result()
        except Exception as exc:  # re-raised by _agree on every rank
            error = exc
        self._agree(error)

    def close(self) -> None:
        """Finish any pending save and release the staging buffers and threads."""
        if self._closed:
            return
        try:
            self.wait()
        finally:
            self._closed = True
            if self._executor is not None:
                self._executor.shutdown(wait=True)
            if self._stager is not None:
                self._stager.close()
                self._stager = None

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inspect -----------------------------------------------------------------------------
    def _committed_dirs(self) -> list[tuple[int, Path]]:
        found = []
        if not self.root.is_dir():
            return found
        for path in self.root.iterdir():
            name = path.name
            if path.is_dir() and name.startswith(_PREFIX) and name[len(_PREFIX) :].isdigit():
                found.append((int(name[len(_PREFIX) :]), path))
        return sorted(found)

    @staticmethod
    def _read_manifest(path: Path) -> dict:
        file = path / MANIFEST
        try:
            manifest = json.loads(file.read_text())
            if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
                raise ValueError("no file list")
            missing = [key for key in ("step", "world_size", "created") if key not in manifest]
            if missing:
                raise ValueError(f"missing {missing}")
            return manifest
        except (OSError, ValueError) as exc:
            raise CorruptCheckpointError(f"{file}: unreadable manifest ({exc})") from exc

    def _info(self, path: Path, manifest: dict) -> CheckpointInfo:
        return CheckpointInfo(
            step=int(manifest["step"]),
            path=path,
            bytes=sum(int(f["bytes"]) for f in manifest["files"]),
            world_size=int(manifest["world_size"]),
            created=str(manifest["created"]),
        )

    def list(self) -> list[CheckpointInfo]:
        """Committed checkpoints, oldest first (a checkpoint whose manifest is unreadable is left out, with a warning)."""
        infos = []
        for _, path in self._committed_dirs():
            try:
                infos.append(self._info(path, self._read_manifest(path)))
            except CorruptCheckpointError as exc:
                log.warning("skipping checkpoint: %s", exc)
        return infos

    def verify(self, path: str | Path) -> CheckpointInfo:
        """Check every file of the checkpoint at ``path`` against its manifest; CorruptCheckpointError names the bad file."""
        path = Path(path)
        manifest = self._read_manifest(path)
        for entry in manifest["files"]:
            file = path / entry["path"]
            if not file.is_file():
                raise CorruptCheckpointError(f"{file}: missing (listed in {path / MANIFEST})")
            size = file.stat().st_size
            if size != entry["bytes"]:
                raise CorruptCheckpointError(f"{file}: {size} bytes, manifest says {entry['bytes']} (truncated?)")
            if _sha256(file) != entry["sha256"]:
                raise CorruptCheckpointError(f"{file}: sha256 does not match the manifest (corrupt)")
        return self._info(path, manifest)

    def latest(self) -> CheckpointInfo | None:
        """The newest committed checkpoint that verifies; damaged ones are skipped with a warning naming the file."""
        for _, path in reversed(self._committed_dirs()):
            try:
                return self.verify(path)
            except CorruptCheckpointError as exc:
                log.warning("checkpoint %s is damaged, falling back to the previous one: %s", path.name, exc)
        return None

    # -- load --------------------------------------------------------------------------------
    def _choose(self, step: int | None) -> CheckpointInfo | None:
        if step is None:
            return self.latest()
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be a non-negative integer or None, got {step!r}")
        path = self.root / _step_dir_name(step)
        if not path.is_dir():
            have = [s for s, _ in self._committed_dirs()]
            raise ValueError(f"no checkpoint for step {step} in {self.root}; committed steps: {have}")
        return self.verify(path)

    def load(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        scheduler: Any = None,
        step: int | None = None,
        restore_rng: bool = True,
    ) -> LoadedState | None:
        """Restore ``step`` (default: the newest good checkpoint) into the given objects; None when there is none.

        Loads onto any world size and wrapping (plain, DDP, FSDP2, TP). RNG streams come from the
        rank's own file when the world size is unchanged, else every rank takes rank 0's.
        """
        if self._closed:
            raise RuntimeError("CheckpointManager is closed")
        self.wait()
        choice: CheckpointInfo | ValueError | None = None
        if self._rank == 0:
            try:
                choice = self._choose(step)
            except ValueError as exc:
                # Handed to every rank so that all of them raise instead of some hanging in dcp.load.
                choice = exc
        choice = self._broadcast(choice)
        if isinstance(choice, ValueError):
            raise choice
        if choice is None:
            return None

        path = choice.path
        reader = dcp.FileSystemReader(path)
        no_dist = self._pg is None
        if optimizer is None:
            model_sd = get_model_state_dict(model)
            dcp.load({"model": model_sd}, storage_reader=reader, process_group=self._pg, no_dist=no_dist)
            set_model_state_dict(model, model_sd)
        else:
            model_sd, optim_sd = get_state_dict(model, optimizer)
            state = {"model": model_sd, "optim": optim_sd}
            dcp.load(state, storage_reader=reader, process_group=self._pg, no_dist=no_dist)
            set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])

        trainer = torch.load(path / TRAINER_STATE, weights_only=True)
        if scheduler is not None:
            if trainer["scheduler"] is None:
                raise CheckpointError(f"{path / TRAINER_STATE}: no scheduler state was saved")
            scheduler.load_state_dict(trainer["scheduler"])
        if restore_rng:
            rank = self._rank if choice.world_size == self._world else 0
            _set_rng_state(torch.load(path / "rng" / f"rank{rank}.pt", weights_only=True))
        return LoadedState(
            step=choice.step, loader_state=trainer["loader_state"], extra=trainer["extra"], world_size=choice.world_size
        )
