"""Job traces on disk: the lab's own CSV schema, and the Alibaba GPU cluster trace (openb).

**The lab's CSV schema** (``load_csv`` / ``save_csv``), one job per row, header required,
columns in any order:

============================  ========  ==========================================================
column                        required  meaning (and default when the column or the cell is empty)
============================  ========  ==========================================================
``submit_time``               yes       seconds since the trace began, >= 0
``duration``                  yes       seconds of work, > 0
``num_gpus``                  yes       whole number >= 0 (0: a CPU-only job)
``gpu_milli``                 no        share of each GPU in 1/1000 (1000, a whole GPU)
``cpu_milli``                 no        milli-CPUs per node (0)
``memory_mib``                no        MiB per node (0)
``priority``                  no        whole number, may be negative (0)
``tenant``                    no        text ("default")
``gpu_type``                  no        GPU model the job needs, e.g. ``H100`` (any)
``checkpoint_interval``       no        seconds between checkpoints, > 0 (none: a kill loses all)
``estimate``                  no        user's walltime guess, > 0 (the duration)
``id``                        no        whole number, unique (the 0-based data row)
``name``                      no        text ("")
============================  ========  ==========================================================

Other columns are ignored. Problems are reported by *data row*: row 1 is the first row after
the header (so row N is on line N + 1 of the file), e.g. ``"row 7: duration is missing"``.
By default the first bad row raises ``TraceError``; ``skip_bad=True`` skips bad rows and
returns their messages in ``TraceLoad.skipped``.

**openb** is the GPU cluster trace Alibaba published with Weng et al., "Beware of
Fragmentation: Scheduling GPU-Sharing Workloads with Fragmentation Gradient Descent"
(USENIX ATC'23), in ``alibaba/clusterdata`` folder ``cluster-trace-gpu-v2023``; cite that paper
when using it. ``openb_cluster`` reads a node list, ``load_openb`` a pod list. The data is
not shipped with the project: ``lab_core.labs.data_dir()`` finds the public data folder.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lab_core.cluster.job import FULL_GPU, Job, JobError
from lab_core.cluster.model import Cluster, NodeSpec
from lab_core.cluster.synthetic import synthetic

COLUMNS = (
    "id",
    "name",
    "submit_time",
    "duration",
    "num_gpus",
    "gpu_milli",
    "cpu_milli",
    "memory_mib",
    "priority",
    "tenant",
    "gpu_type",
    "checkpoint_interval",
    "estimate",
)
"""The columns ``save_csv`` writes, in order."""
REQUIRED = ("submit_time", "duration", "num_gpus")

OPENB_NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
OPENB_POD_COLUMNS = (
    "name",
    "cpu_milli",
    "memory_mib",
    "num_gpu",
    "gpu_milli",
    "gpu_spec",
    "qos",
    "creation_time",
    "deletion_time",
)
OPENB_NODES_PER_RACK = 16

DEMO_TRACE = Path(__file__).resolve().parent / "data" / "synthetic_published.csv"
"""A small synthetic trace shipped with the lab (``write_demo_trace`` regenerates it)."""
DEMO_JOBS, DEMO_SEED = 300, 7


class TraceError(ValueError):
    """A trace file that cannot be read as jobs; the message names the row and the field."""


@dataclass
class TraceLoad:
    """Jobs read from a trace, and one message per bad row that was skipped."""

    jobs: list[Job]
    skipped: list[str] = field(default_factory=list)


class _Bad(Exception):
    """One bad cell; becomes a ``row N: ...`` message."""


# ----------------------------------------------------------------------------- cell parsing


def _cell(row: dict[str, str | None], name: str) -> str | None:
    value = row.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _parse(row: dict[str, str | None], name: str, required: bool) -> tuple[str, float] | None:
    """The cell's text and its value as a float; None when empty and optional."""
    text = _cell(row, name)
    if text is None:
        if required:
            raise _Bad(f"{name} is missing")
        return None
    try:
        return text, float(text)
    except ValueError:
        raise _Bad(f"{name} is not a number: {text!r}") from None


def _number(row: dict[str, str | None], name: str, *, required: bool = False, positive: bool = False) -> float | None:
    parsed = _parse(row, name, required)
    if parsed is None:
        return None
    text, value = parsed
    if not math.isfinite(value):
        raise _Bad(f"{name} must be finite, got {text!r}")
    if positive and value <= 0:
        raise _Bad(f"{name} must be > 0, got {text}")
    if value < 0:
        raise _Bad(f"{name} must be >= 0, got {text}")
    return value


def _whole(row: dict[str, str | None], name: str, *, required: bool = False, signed: bool = False) -> int | None:
    parsed = _parse(row, name, required)
    if parsed is None:
        return None
    text, value = parsed
    # "8.0" is a whole number written by a tool that stores every number as a float.
    if not math.isfinite(value) or not value.is_integer():
        raise _Bad(f"{name} must be a whole number, got {text!r}")
    if value < 0 and not signed:
        raise _Bad(f"{name} must be >= 0, got {text}")
    return int(value)


def _read(
    path: str | os.PathLike[str],
    required: Iterable[str],
    convert: Callable[[int, dict[str, str | None]], Job],
    skip_bad: bool,
) -> TraceLoad:
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as e:
        raise TraceError(f"{path}: cannot open: {e.strerror or e}") from None
    jobs: list[Job] = []
    skipped: list[str] = []
    ids: dict[int, int] = {}
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        if not header:
            raise TraceError(f"{path}: empty file (a header row is required)")
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if missing:
            raise TraceError(f"{path}: missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        for number, row in enumerate(reader, start=1):
            try:
                if None in row:  # csv puts cells beyond the header under the key None
                    raise _Bad(f"has {len(header) + len(row[None])} cells, the header has {len(header)}")
                job = convert(number, row)
                if job.id in ids:
                    raise _Bad(f"id {job.id} is already used by row {ids[job.id]}")
            except (_Bad, JobError) as e:
                message = f"row {number}: {e}"
                if not skip_bad:
                    raise TraceError(f"{path}: {message} (rows count from 1 after the header)") from None
                skipped.append(message)
                continue
            ids[job.id] = number
            jobs.append(job)
    return TraceLoad(jobs, skipped)


# ----------------------------------------------------------------------------- the lab's schema


def _job(number: int, row: dict[str, str | None]) -> Job:
    submit = _number(row, "submit_time", required=True)
    duration = _number(row, "duration", required=True, positive=True)
    num_gpus = _whole(row, "num_gpus", required=True)
    gpu_milli = _whole(row, "gpu_milli")
    job_id = _whole(row, "id", signed=True)
    return Job(
        id=number - 1 if job_id is None else job_id,
        submit=submit,
        duration=duration,
        num_gpus=num_gpus,
        gpu_milli=FULL_GPU if gpu_milli is None else gpu_milli,
        cpu_milli=_whole(row, "cpu_milli") or 0,
        memory_mib=_whole(row, "memory_mib") or 0,
        priority=_whole(row, "priority", signed=True) or 0,
        tenant=_cell(row, "tenant") or "default",
        gpu_type=_cell(row, "gpu_type"),
        checkpoint_interval=_number(row, "checkpoint_interval", positive=True),
        estimate=_number(row, "estimate", positive=True),
        name=_cell(row, "name") or "",
    )


def load_csv(path: str | os.PathLike[str], *, skip_bad: bool = False) -> TraceLoad:
    """Jobs from a CSV in the lab's schema (module docstring); bad rows raise TraceError unless ``skip_bad``."""
    return _read(path, REQUIRED, _job, skip_bad)


def _text(value: float | None) -> str:
    if value is None:
        return ""
    # repr keeps every bit of a float, so a saved trace loads back equal.
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


def save_csv(jobs: Iterable[Job], path: str | os.PathLike[str]) -> Path:
    """Write ``jobs`` in the lab's schema (``load_csv`` reads back the same fields); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for j in jobs:
            writer.writerow(
                [
                    j.id,
                    j.name,
                    _text(j.submit),
                    _text(j.duration),
                    j.num_gpus,
                    j.gpu_milli,
                    j.cpu_milli,
                    j.memory_mib,
                    j.priority,
                    j.tenant,
                    j.gpu_type or "",
                    _text(j.checkpoint_interval),
                    _text(j.estimate),
                ]
            )
    return path


def demo_jobs() -> list[Job]:
    """The jobs of the shipped demo trace: ``synthetic(300, seed=7)``, the published mix."""
    return synthetic(DEMO_JOBS, seed=DEMO_SEED)


def write_demo_trace(path: str | os.PathLike[str] = DEMO_TRACE) -> Path:
    """Regenerate the shipped demo trace (a test checks the shipped file equals this output)."""
    return save_csv(demo_jobs(), path)


# ----------------------------------------------------------------------------- openb (Alibaba, ATC'23)


def openb_cluster(nodes_csv: str | os.PathLike[str], *, nodes_per_rack: int = OPENB_NODES_PER_RACK) -> Cluster:
    """A Cluster with one node per row of an openb node list (``sn, cpu_milli, memory_mib, gpu, model``).

    Assumptions, since the trace has no topology: each node's GPUs form one NVLink domain, and
    racks are consecutive groups of ``nodes_per_rack`` nodes in file order. Nodes without GPUs
    are kept: CPU-only pods can run there.
    """
    if not isinstance(nodes_per_rack, int) or nodes_per_rack < 1:
        raise ValueError(f"nodes_per_rack must be a whole number >= 1, got {nodes_per_rack!r}")
    path = Path(nodes_csv)
    specs: list[NodeSpec] = []
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as e:
        raise TraceError(f"{path}: cannot open: {e.strerror or e}") from None
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        missing = [c for c in OPENB_NODE_COLUMNS if c not in header]
        if missing:
            raise TraceError(f"{path}: missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        for number, row in enumerate(reader, start=1):
            try:
                gpus = _whole(row, "gpu", required=True)
                cpu = _whole(row, "cpu_milli", required=True)
                memory = _whole(row, "memory_mib", required=True)
                model = _cell(row, "model")
                if gpus and model is None:
                    raise _Bad("model is missing")
            except _Bad as e:
                raise TraceError(f"{path}: row {number}: {e} (rows count from 1 after the header)") from None
            index = len(specs)
            specs.append(
                NodeSpec(
                    name=_cell(row, "sn") or f"node{index}",
                    rack=index // nodes_per_rack,
                    gpu_type=model or "",
                    gpus=gpus,
                    nvlink_domain=max(gpus, 1),
                    cpu_milli=cpu,
                    memory_mib=memory,
                )
            )
    if not specs:
        raise TraceError(f"{path}: no nodes")
    return Cluster(specs)


def _openb_pod(number: int, row: dict[str, str | None]) -> Job:
    created = _number(row, "creation_time", required=True)
    deleted = _number(row, "deletion_time", required=True)
    if deleted <= created:
        raise _Bad(f"lives {deleted - created:g} s (deletion_time {deleted:g} <= creation_time {created:g})")
    num_gpus = _whole(row, "num_gpu", required=True)
    gpu_milli = _whole(row, "gpu_milli", required=True)
    spec = _cell(row, "gpu_spec")
    return Job(
        id=number - 1,
        submit=created,
        duration=deleted - created,
        num_gpus=num_gpus,
        gpu_milli=gpu_milli if num_gpus else 0,
        cpu_milli=_whole(row, "cpu_milli", required=True),
        memory_mib=_whole(row, "memory_mib", required=True),
        tenant=_cell(row, "qos") or "default",
        # A pod that accepts several models ("V100M16|V100M32") is left unconstrained: a Job
        # names at most one type, and any of them would do.
        gpu_type=None if spec is None or "|" in spec else spec,
        name=_cell(row, "name") or "",
    )


def load_openb(pods_csv: str | os.PathLike[str], *, skip_bad: bool = False) -> TraceLoad:
    """Jobs from an openb pod list, in creation order; bad rows raise TraceError unless ``skip_bad``.

    ``submit`` is ``creation_time`` and ``duration`` is ``deletion_time - creation_time`` (a pod
    that lives 0 s is a bad row: a Job needs a positive duration); ``tenant`` is the pod's
    ``qos``; ``gpu_type`` is ``gpu_spec`` when it names one model, None when empty or when it
    lists several. Job ids are 0-based data rows.
    """
    load = _read(pods_csv, OPENB_POD_COLUMNS, _openb_pod, skip_bad)
    load.jobs.sort(key=lambda j: (j.submit, j.id))  # stable: equal creation times keep file order
    return load
