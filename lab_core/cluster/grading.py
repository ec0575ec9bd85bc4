"""Graders for Lab 09's notebook, so that its test cells stay one line long.

* :func:`check_best_fit_invariants` -- the student's ``best_fit`` on generated clusters: every
  placement it returns is legal (``Cluster.check``: no GPU double-booked, right count, one node
  unless the job is wider than a node), keeps off excluded, reserved and dead nodes, stays in one
  NVLink domain whenever the chosen node has a domain with room, and is ``None`` exactly when
  :func:`lab_core.cluster.placement.best_fit` finds nothing.
* :func:`compare_best_fit` -- the same generated cases, placement for placement against the reference.
* :func:`check_backfill_keeps_promises` -- the student's ``easy_backfill`` runs seeded synthetic
  workloads in the simulator with ``check_invariants=True``; the blocked head gets a reservation and
  no job starts later than the first start it was promised.
* :func:`compare_backfill` -- the same workloads (and others, under other placers): every job
  starts exactly when, and on the nodes where, it starts under
  :func:`lab_core.cluster.schedulers.easy_backfill`.
* :func:`compare_stranded` -- the student's ``stranded_ratio`` against
  :func:`lab_core.cluster.fragmentation.stranded_ratio` on generated clusters and queues.

The generated cases include what a plausible wrong answer hides behind: nodes with several partly
used GPUs of different free shares (so a shared job's GPU, not only its node, is compared), CPU-only
jobs (``num_gpus=0``) and empty reserved nodes beside jobs wider than a node, in the generated clusters
and in a backfill workload (``CPU_AND_WIDE``).

Every check raises ``AssertionError`` with a readable counterexample; a ``NotImplementedError``
from a blank exercise is let through unchanged. Hypothesis runs derandomized and the workloads are
seeded, so a grade never depends on luck.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from functools import cache
from typing import Any

from lab_core.grading_kit import hypothesis_settings, run_property  # before hypothesis: sets its cache folder

# isort: split

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from lab_core.cluster import placement as reference_placement
from lab_core.cluster import schedulers as reference_schedulers
from lab_core.cluster.fragmentation import stranded_ratio as reference_stranded_ratio
from lab_core.cluster.job import FULL_GPU, Job
from lab_core.cluster.model import Cluster, NodeSpec, PlacementError
from lab_core.cluster.simulator import SimConfig, Simulation
from lab_core.cluster.synthetic import Mix, synthetic

__all__ = [
    "WORKLOADS",
    "check_backfill_keeps_promises",
    "check_best_fit_invariants",
    "compare_backfill",
    "compare_best_fit",
    "compare_stranded",
    "describe_cluster",
]


# --- generated clusters -----------------------------------------------------------------------


def describe_cluster(cluster: Cluster, exclude: np.ndarray | None = None) -> str:
    """One line per node: rack, type, NVLink domains, free milli-GPU per GPU, and its flags."""
    lines = []
    for n, spec in enumerate(cluster.nodes):
        free = cluster.free[n, : spec.gpus].tolist()
        domains = " | ".join(
            " ".join(f"{v:>4}" for v in free[d : d + int(cluster.domain_size[n])])
            for d in range(0, spec.gpus, int(cluster.domain_size[n]))
        )
        flags = [
            name
            for name, on in (
                ("DOWN", not cluster.alive[n]),
                ("reserved", cluster.reserved[n]),
                ("excluded", exclude is not None and exclude[n]),
            )
            if on
        ]
        extra = f" cpu_free={int(cluster.cpu_free[n])}" if cluster.cpu_free[n] < cluster.cpu_total[n] else ""
        lines.append(
            f"  node {n} (rack {spec.rack}, {spec.gpu_type}, NVLink domains of {int(cluster.domain_size[n])}): "
            f"free milli per GPU [{domains}]{extra}{' ' + ', '.join(flags) if flags else ''}"
        )
    return "\n".join(lines)


def _describe_job(job: Job) -> str:
    parts = [f"num_gpus={job.num_gpus}"]
    if job.fractional:
        parts.append(f"gpu_milli={job.gpu_milli}")
    if job.gpu_type:
        parts.append(f"gpu_type={job.gpu_type!r}")
    if job.cpu_milli:
        parts.append(f"cpu_milli={job.cpu_milli}")
    return f"Job({', '.join(parts)})"


_LEVELS = [FULL_GPU, FULL_GPU, FULL_GPU, 0, 0, 250, 500, 750]
_SHARES = [250, 500, 750, 750, 0]  # free milli of a GPU that other jobs already share (or fill)


@st.composite
def _clusters(draw: st.DrawFn, *, flags: bool = True) -> Cluster:
    """A small cluster in a random state: nodes of 4 or 8 GPUs in NVLink domains of 2, 4 or 8,
    GPUs free, busy or shared, some nodes down or reserved or short of CPU."""
    n_nodes = draw(st.sampled_from([1, 1, 1, 2, 3, 4, 5, 6]))  # one node often: its GPU choice is all that matters
    racks = draw(st.integers(1, 2))
    specs = []
    for i in range(n_nodes):
        gpus = draw(st.sampled_from([8, 8, 4]))
        domain = draw(st.sampled_from([d for d in (2, 4, 8) if d <= gpus]))
        gpu_type = draw(st.sampled_from(["H100", "H100", "A100"]))
        specs.append(NodeSpec(f"n{i}", i % racks, gpu_type, gpus, domain, 64_000, 512_000))
    cluster = Cluster(specs)
    for n, spec in enumerate(specs):
        pattern = draw(st.sampled_from(["empty", "full", "random", "random", "prefix", "holes", "shared", "shared"]))
        if pattern == "empty":
            continue
        if pattern == "full":
            levels = [0] * spec.gpus
        elif pattern == "prefix":  # the first k GPUs busy: small jobs then straddle NVLink domains easily
            k = draw(st.integers(1, spec.gpus - 1))
            levels = [0] * k + [FULL_GPU] * (spec.gpus - k)
        elif pattern == "holes":  # mostly free, a few busy or shared GPUs
            levels = [FULL_GPU] * spec.gpus
            for gpu in draw(st.lists(st.integers(0, spec.gpus - 1), min_size=1, max_size=3)):
                levels[gpu] = draw(st.sampled_from([0, 0, 250, 500]))
        elif pattern == "shared":  # several partly used GPUs: which one a shared job joins is the question
            levels = [FULL_GPU] * spec.gpus
            used = draw(st.lists(st.integers(0, spec.gpus - 1), min_size=2, max_size=4, unique=True))
            for gpu in used:
                levels[gpu] = draw(st.sampled_from(_SHARES))
        else:
            levels = draw(st.lists(st.sampled_from(_LEVELS), min_size=spec.gpus, max_size=spec.gpus))
        cluster.free[n, : spec.gpus] = levels
        if draw(st.integers(0, 5)) == 0:
            cluster.cpu_free[n] = draw(st.sampled_from([0, 4_000]))
    if flags:
        cluster.alive[:] = draw(st.lists(st.integers(0, 7).map(lambda v: v != 7), min_size=n_nodes, max_size=n_nodes))
        cluster.reserved[:] = draw(
            st.lists(st.integers(0, 5).map(lambda v: v == 5), min_size=n_nodes, max_size=n_nodes)
        )
    return cluster


@st.composite
def _jobs(draw: st.DrawFn, job_id: int = 1) -> Job:
    num_gpus = draw(st.sampled_from([0, 1, 1, 1, 1, 2, 2, 3, 4, 4, 6, 8, 16]))  # 0: a CPU-only job
    milli = draw(st.sampled_from([FULL_GPU, FULL_GPU, 250, 500, 750])) if num_gpus == 1 else FULL_GPU
    gpu_type = draw(st.sampled_from([None, None, None, "H100", "A100"]))
    cpu = draw(st.sampled_from([0, 0, 0, 8_000]))
    return Job(job_id, 0.0, 600.0, num_gpus=num_gpus, gpu_milli=milli, gpu_type=gpu_type, cpu_milli=cpu)


@st.composite
def _placement_cases(draw: st.DrawFn) -> tuple[Cluster, Job, np.ndarray | None]:
    cluster = draw(_clusters())
    job = draw(_jobs())
    exclude = None
    if draw(st.booleans()):
        exclude = np.array(
            draw(
                st.lists(
                    st.integers(0, 3).map(lambda v: v == 3), min_size=cluster.num_nodes, max_size=cluster.num_nodes
                )
            ),
            dtype=bool,
        )
    return cluster, job, exclude


def _clone(cluster: Cluster) -> Cluster:
    """A copy whose state arrays and allocations can change without touching ``cluster``."""
    twin = copy.copy(cluster)
    for name, value in vars(cluster).items():
        if isinstance(value, np.ndarray):
            setattr(twin, name, value.copy())
    twin.allocations = dict(cluster.allocations)
    return twin


def _as_placement(got: Any) -> tuple[tuple[int, int, int], ...] | Any:
    try:
        return tuple((int(n), int(g), int(m)) for n, g, m in got)
    except Exception:  # noqa: BLE001 - describing whatever the student returned
        return got


def _call_placer(fn: Callable[..., Any], cluster: Cluster, job: Job, exclude: np.ndarray | None) -> Any:
    mine = _clone(cluster)
    got = fn(mine, job, None if exclude is None else exclude.copy())
    assert np.array_equal(mine.free, cluster.free) and not mine.allocations, (
        "best_fit must only choose GPUs, not change the cluster (the caller allocates)"
    )
    return got if got is None else _as_placement(got)


# --- exercise 1: best-fit placement -------------------------------------------------------------


def _explicit_placement_cases() -> list[tuple[Cluster, Job, np.ndarray | None]]:
    """Hand-made cases run before the generated ones: the NVLink rule where it matters most."""
    cases = []
    for domain, busy, num_gpus in (
        (4, [0], 4),
        (2, [0], 2),
        (4, [0, 5], 3),
        (2, [1, 4], 2),
        (4, [5], 1),
        (2, [0, 2], 1),
    ):
        cluster = Cluster.build(racks=1, nodes_per_rack=1, gpus_per_node=8, nvlink_domain=domain)
        cluster.free[0, busy] = 0
        cases.append((cluster, Job(1, 0.0, 600.0, num_gpus=num_gpus), None))
    shared = Cluster.build(racks=1, nodes_per_rack=2, gpus_per_node=8, nvlink_domain=4)
    shared.free[0, [0, 1, 2]] = 0
    shared.free[0, 3] = 250  # a notebook holds three quarters of GPU 3
    shared.free[1, 4:] = 0
    for num_gpus in (1, 2, 3, 4, 5):
        cases.append((shared, Job(1, 0.0, 600.0, num_gpus=num_gpus), None))
    cases.append((shared, Job(1, 0.0, 600.0, gpu_milli=250), None))
    # Shared GPUs of different free shares on the tightest node: the fullest that still fits, not the first.
    sharing = Cluster.build(racks=1, nodes_per_rack=2, gpus_per_node=8, nvlink_domain=4)
    sharing.free[0] = [FULL_GPU, 750, FULL_GPU, 500, 250, 500, 0, FULL_GPU]
    sharing.free[1, 2] = 250
    for milli in (250, 500, 750):
        cases.append((sharing, Job(1, 0.0, 600.0, gpu_milli=milli), None))
    cases.append((sharing, Job(1, 0.0, 600.0, gpu_milli=250), np.array([True, False])))
    # CPU-only jobs: the tightest node too (node 2, full), one with CPU left, or none at all.
    cpu = Cluster.build(racks=1, nodes_per_rack=3, gpus_per_node=8, nvlink_domain=4, cpu_milli=16_000)
    cpu.free[1, :3] = 0
    cpu.free[2] = 0
    cases.append((cpu, Job(1, 0.0, 600.0, num_gpus=0, cpu_milli=1_000), None))
    for cpu_free in ([16_000, 16_000, 0], [4_000, 4_000, 4_000]):
        short = _clone(cpu)
        short.cpu_free[:] = cpu_free
        cases.append((short, Job(1, 0.0, 600.0, num_gpus=0, cpu_milli=8_000), None))
    # A job wider than a node beside empty nodes that are reserved or excluded: not enough whole nodes.
    held = Cluster.build(racks=2, nodes_per_rack=2, gpus_per_node=8, nvlink_domain=4)
    held.reserved[1] = True
    held.free[3, :2] = 0
    cases.append((held, Job(1, 0.0, 600.0, num_gpus=16), None))
    cases.append((held, Job(1, 0.0, 600.0, num_gpus=16), np.array([False, False, True, False])))
    return cases


def _check_cpu_only(cluster: Cluster, job: Job, exclude: np.ndarray | None, got: Any, shown: str) -> None:
    """A CPU-only job's placement is ``((node, -1, 0),)`` on a node where it fits."""
    candidates = np.flatnonzero(cluster.fits(job, exclude=exclude)).tolist()
    legal = isinstance(got, tuple) and len(got) == 1 and tuple(got[0][1:]) == (-1, 0) and got[0][0] in candidates
    assert legal, (
        f"{shown}\n  yours returned {got}: a CPU-only job's placement is ((node, -1, 0),) on one of the nodes "
        f"where it fits, {candidates}"
    )


def _invariant_case(fn: Callable[..., Any], cluster: Cluster, job: Job, exclude: np.ndarray | None) -> None:
    want = reference_placement.best_fit(cluster, job, exclude)
    got = _call_placer(fn, cluster, job, exclude)
    shown = f"best_fit(cluster, {_describe_job(job)})\n{describe_cluster(cluster, exclude)}"
    if want is None:
        assert got is None, f"{shown}\n  the job fits nowhere (the reference returns None), yours returned {got}"
        return
    assert got is not None, f"{shown}\n  the job fits (for example {want}), yours returned None"
    if job.num_gpus == 0:
        _check_cpu_only(cluster, job, exclude, got, shown)
        return
    try:
        cluster.check(job, got)
    except PlacementError as exc:
        raise AssertionError(f"{shown}\n  yours returned {got}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{shown}\n  yours returned {got!r}, not a tuple of (node, gpu, milli): {exc}") from None
    nodes = sorted({n for n, _, _ in got})
    bad = [n for n in nodes if cluster.reserved[n] or (exclude is not None and exclude[n])]
    assert not bad, f"{shown}\n  yours returned {got}: node(s) {bad} are reserved or excluded"
    if not cluster.spans_nodes(job) and not job.fractional and len(nodes) == 1:
        node = nodes[0]
        size = int(cluster.domain_size[node])
        whole = cluster.exists[node] & (cluster.free[node] == FULL_GPU)
        room = [
            d for d in range(cluster.width // size + 1) if (whole & (cluster.domain[node] == d)).sum() >= job.num_gpus
        ]
        used = {int(cluster.domain[node, g]) for _, g, _ in got}
        if job.num_gpus <= size and room:
            assert len(used) == 1, (
                f"{shown}\n  yours returned {got}: it spans NVLink domains {sorted(used)} of node {node}, "
                f"but domain(s) {room} have {job.num_gpus} whole free GPUs: GPUs in different domains talk "
                "over PCIe, several times slower"
            )


def check_best_fit_invariants(fn: Callable[..., Any], max_examples: int = 200) -> None:
    """Legal placements, never on excluded/reserved/dead nodes, None exactly when the reference finds
    nothing, and one NVLink domain whenever the chosen node has a domain with room."""
    for case in _explicit_placement_cases():
        _invariant_case(fn, *case)

    @hypothesis_settings(max_examples)
    @given(_placement_cases())
    def test(case: tuple[Cluster, Job, np.ndarray | None]) -> None:
        _invariant_case(fn, *case)

    run_property(test)


def _compare_case(fn: Callable[..., Any], cluster: Cluster, job: Job, exclude: np.ndarray | None) -> None:
    want = reference_placement.best_fit(cluster, job, exclude)
    got = _call_placer(fn, cluster, job, exclude)
    assert got == (None if want is None else _as_placement(want)), (
        f"best_fit(cluster, {_describe_job(job)}{', exclude' if exclude is not None else ''})\n"
        f"{describe_cluster(cluster, exclude)}\n  reference: {want}\n  yours:     {got}"
    )


def compare_best_fit(fn: Callable[..., Any], max_examples: int = 200) -> None:
    """The same placement as the reference (node, GPUs and shares) on hand-made and generated clusters and jobs."""
    for case in _explicit_placement_cases():
        _compare_case(fn, *case)

    @hypothesis_settings(max_examples)
    @given(_placement_cases())
    def test(case: tuple[Cluster, Job, np.ndarray | None]) -> None:
        _compare_case(fn, *case)

    run_property(test)


# --- exercise 2: EASY backfill ------------------------------------------------------------------

# CPU-only jobs (data preparation, evaluation) among 1- to 16-GPU jobs: the 16-GPU heads reserve nodes that
# are empty now, and CPU-only jobs, which fit on any node, are placed beside and on reserved nodes.
CPU_AND_WIDE = Mix(((0, 0), (1, FULL_GPU), (4, FULL_GPU), (8, FULL_GPU), (16, FULL_GPU)), (0.25, 0.35, 0.1, 0.2, 0.1))

# (name, synthetic() arguments, placer): overloaded 2-rack clusters of 4 nodes x 8 GPUs, where the
# head of the line is blocked often; estimates are exact or up to twice the true duration.
WORKLOADS: list[tuple[str, dict, str]] = [
    ("heavy8, seed 1", dict(n_jobs=150, mix="heavy8", rate=1 / 120, seed=1), "best_fit"),
    (
        "heavy8, seed 2, estimates up to 2x",
        dict(n_jobs=150, mix="heavy8", rate=1 / 120, seed=2, overestimate=2.0),
        "best_fit",
    ),
    (
        "published (16-GPU jobs), seed 3, estimates up to 2x",
        dict(n_jobs=150, mix="published", rate=1 / 60, seed=3, overestimate=2.0),
        "best_fit",
    ),
    ("sharing (fractional GPUs), seed 4", dict(n_jobs=150, mix="sharing", rate=1 / 30, seed=4), "best_fit"),
    (
        "CPU-only and 16-GPU jobs, seed 7, estimates up to 2x",
        dict(n_jobs=150, mix=CPU_AND_WIDE, rate=1 / 90, seed=7, overestimate=2.0),
        "best_fit",
    ),
]
# Extra workloads for the comparison only: the same policy under the other placers.
OTHER_PLACERS: list[tuple[str, dict, str]] = [
    ("heavy8, seed 5, first-fit placement", dict(n_jobs=150, mix="heavy8", rate=1 / 120, seed=5), "first_fit"),
    (
        "published, seed 6, topology-aware placement",
        dict(n_jobs=150, mix="published", rate=1 / 60, seed=6, overestimate=1.5),
        "topology",
    ),
]


def _simulate(scheduler: Callable[..., Any], kwargs: dict, placer: str) -> dict[int, Job]:
    cluster = Cluster.build(racks=2, nodes_per_rack=2)
    sim = Simulation(
        cluster,
        synthetic(**kwargs),
        scheduler=scheduler,
        placer=placer,
        config=SimConfig(check_invariants=True, sample_every=1e9),
    )
    sim.run()
    return sim.jobs


def _started_on(job: Job) -> str | None:
    """The nodes ``job`` first started on, as the simulator logged them (None if it never started)."""
    return next((what for _, what in job.events if what.startswith("started on nodes")), None)


@cache
def _reference_run(index: int, extra: bool) -> dict[int, tuple[float | None, float | None, float | None, str | None]]:
    name, kwargs, placer = (OTHER_PLACERS if extra else WORKLOADS)[index]
    jobs = _simulate(reference_schedulers.easy_backfill, kwargs, placer)
    return {jid: (j.start, j.reserved_start, j.jct, _started_on(j)) for jid, j in jobs.items()}


def _student_run(fn: Callable[..., Any], name: str, kwargs: dict, placer: str) -> dict[int, Job]:
    try:
        return _simulate(fn, kwargs, placer)
    except NotImplementedError:
        raise
    except (PlacementError, AssertionError) as exc:
        raise AssertionError(f"workload {name!r}: the simulation stopped: {exc}") from None


def _job_line(job: Job) -> str:
    return (
        f"job {job.id} ({job.num_gpus} GPU{'s' if job.num_gpus != 1 else ''}"
        f"{f' x {job.gpu_milli} milli' if job.fractional else ''}, submitted t={job.submit:.0f}, "
        f"estimate {job.estimate:.0f} s)"
    )


def check_backfill_keeps_promises(fn: Callable[..., Any]) -> None:
    """On every workload: bookkeeping stays sound, every job finishes, blocked heads get reservations,
    and no job starts later than the first start its reservation promised."""
    for index, (name, kwargs, placer) in enumerate(WORKLOADS):
        jobs = _student_run(fn, name, kwargs, placer)
        unfinished = [j.id for j in jobs.values() if j.end is None]
        assert len(jobs) == kwargs["n_jobs"] and not unfinished, (
            f"workload {name!r}: jobs {unfinished[:10]} never finished: a scheduling pass must start the jobs that fit"
        )
        promised = [j for j in jobs.values() if j.reserved_start is not None]
        reference_promised = sum(1 for _, r, _, _ in _reference_run(index, False).values() if r is not None)
        assert promised or not reference_promised, (
            f"workload {name!r}: no job was ever given a reservation, but the head of the line was blocked "
            f"(the reference reserves for {reference_promised} jobs): call view.reservation(head)"
        )
        late = sorted(
            (j for j in promised if j.start > j.reserved_start + 1e-6), key=lambda j: j.start - j.reserved_start
        )
        if late:
            j = late[-1]
            raise AssertionError(
                f"workload {name!r}: {len(late)} job(s) started later than promised, e.g. {_job_line(j)} was promised "
                f"t={j.reserved_start:.0f} but started at t={j.start:.0f}: a backfilled job took GPUs the head was "
                "waiting for and did not end (by its estimate) before the reserved start"
            )


def compare_backfill(fn: Callable[..., Any]) -> None:
    """Every job of every workload starts at the same time, on the same nodes, as under the reference EASY backfill."""
    cases = [(i, False, w) for i, w in enumerate(WORKLOADS)] + [(i, True, w) for i, w in enumerate(OTHER_PLACERS)]
    for index, extra, (name, kwargs, placer) in cases:
        want = _reference_run(index, extra)
        jobs = _student_run(fn, name, kwargs, placer)
        got = {jid: j.start for jid, j in jobs.items()}
        differ = [jid for jid in sorted(want) if got.get(jid) != want[jid][0]]
        elsewhere = [jid for jid in sorted(want) if jid in jobs and _started_on(jobs[jid]) != want[jid][3]]
        if not differ and elsewhere:
            job = jobs[elsewhere[0]]
            raise AssertionError(
                f"workload {name!r} ({placer}): every job starts on time, but {len(elsewhere)} start on other nodes "
                f"than under the reference; the first is {_job_line(job)} at t={job.start:.0f}: reference "
                f"{want[job.id][3]}, yours {_started_on(job)}. Start a later job on view.place(job) when it cannot "
                "delay the head; only otherwise try view.place(job, exclude=res.nodes)"
            )
        if differ:
            first = min(differ, key=lambda jid: min(v for v in (got.get(jid), want[jid][0]) if v is not None))
            done = [j for j in jobs.values() if j.jct is not None]
            start = got.get(first)
            raise AssertionError(
                f"workload {name!r} ({placer}): {len(differ)} of {len(want)} jobs start at other times than under "
                f"the reference; the first is {_job_line(jobs[first])}: reference start "
                f"t={want[first][0]:.0f}, yours {'never' if start is None else f't={start:.0f}'}. "
                f"Mean JCT: yours {np.mean([j.jct for j in done]):.0f} s over {len(done)} finished jobs, reference "
                f"{np.mean([v[2] for v in want.values()]):.0f} s"
            )


# --- exercise 3: stranded ratio --------------------------------------------------------------------


@st.composite
def _stranded_cases(draw: st.DrawFn) -> tuple[Cluster, list[Job]]:
    cluster = draw(_clusters())
    n = draw(st.integers(0, 4))
    queued = [draw(_jobs(job_id=i)) for i in range(n)]
    if draw(st.integers(0, 5)) == 0:
        queued.append(Job(99, 0.0, 60.0, num_gpus=0, cpu_milli=1000))  # a CPU-only job strands nothing
    if cluster.num_nodes > 1 and draw(st.integers(0, 2)) == 0:
        # A job wider than a node beside empty nodes, some of them reserved for another job: only the
        # unreserved ones count toward the whole nodes it needs.
        for n in draw(st.lists(st.integers(0, cluster.num_nodes - 1), min_size=2, unique=True)):
            cluster.free[n] = np.where(cluster.exists[n], FULL_GPU, 0)
            cluster.reserved[n] = draw(st.booleans())
        width = cluster.node_width
        queued.append(Job(98, 0.0, 60.0, num_gpus=draw(st.sampled_from([width + 1, 2 * width, 3 * width]))))
    return cluster, queued


def _explicit_stranded_cases() -> list[tuple[Cluster, list[Job]]]:
    """Hand-made cases run before the generated ones: reserved empty nodes beside a wide job, CPU-only queues."""
    held = Cluster.build(racks=1, nodes_per_rack=3, gpus_per_node=8, nvlink_domain=4)
    held.reserved[1] = True  # empty, but held for another job: a 16-GPU job has one empty node, not two
    held.free[2, :2] = 0
    wide = Job(1, 0.0, 60.0, num_gpus=16)
    return [
        (held, [wide]),
        (held, [wide, Job(2, 0.0, 60.0, num_gpus=4)]),
        (held, [Job(3, 0.0, 60.0, num_gpus=0, cpu_milli=1_000)]),
        (held, [Job(3, 0.0, 60.0, num_gpus=0), wide]),
    ]


def _compare_stranded_case(fn: Callable[..., Any], cluster: Cluster, queued: list[Job]) -> None:
    want = reference_stranded_ratio(cluster, list(queued))
    mine = _clone(cluster)
    got = fn(mine, list(queued))
    assert np.array_equal(mine.free, cluster.free) and np.array_equal(mine.reserved, cluster.reserved), (
        "stranded_ratio must only read the cluster, not change it"
    )
    ok = isinstance(got, (int, float, np.integer, np.floating)) and math.isclose(
        float(got), want, rel_tol=1e-9, abs_tol=1e-12
    )
    assert ok, (
        f"stranded_ratio(cluster, queued=[{', '.join(_describe_job(j) for j in queued)}])\n"
        f"{describe_cluster(cluster)}\n  free GPUs on live nodes: {cluster.free_gpus():g}\n"
        f"  reference: {want!r}\n  yours:     {got!r}"
    )


def compare_stranded(fn: Callable[..., Any], max_examples: int = 200) -> None:
    """``fn(cluster, queued)`` equals the reference stranded ratio (within 1e-9) on hand-made and generated states."""
    for case in _explicit_stranded_cases():
        _compare_stranded_case(fn, *case)

    @hypothesis_settings(max_examples)
    @given(_stranded_cases())
    def test(case: tuple[Cluster, list[Job]]) -> None:
        _compare_stranded_case(fn, *case)

    run_property(test)
