"""The benchmark runner behind ``syslab bench LAB``: figures against same-run baselines.

A lab's ``benchmarks/<lab>.py`` defines ``run(quick: bool) -> list[Figure]``. Every figure is a
measurement (``value``) and, where one exists, the same quantity for a baseline measured in the
same run (``baseline_value``), so ``ratio = value / baseline_value`` is comparable across machines
even when the absolute numbers are not. ``run_benchmark`` prints the figures as a table and writes
``benchmarks/results/<lab>.json``.

Helpers for benchmark scripts: :func:`ops_per_second` and :func:`interleaved` (timing, with
warm-up and rounds alternating between contenders so drift on a shared machine hits both alike),
and :func:`redis_server` (a throwaway ``redis-server`` on a free loopback port).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import operator
import os
import platform
import re
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab_core.labs import Lab
from lab_core.store.redis_server import local_redis_server

__all__ = [
    "Figure",
    "format_table",
    "interleaved",
    "machine_info",
    "machine_note",
    "median",
    "ops_per_second",
    "parse_target",
    "redis_server",
    "results_path",
    "run_benchmark",
]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_TARGET_RE = re.compile(r"^\s*(?:(ratio|value)\s+)?(>=|<=|>|<)\s*(\S+)\s*$")


def parse_target(target: str) -> tuple[str | None, str, float]:
    """Split a target such as ``">= 1.0"``, ``"<= 2"`` or ``"value <= 1000"`` into (subject, op, threshold).

    ``subject`` is ``"ratio"``, ``"value"`` or None when the target does not say (then it means the
    ratio for a figure with a baseline, the value otherwise). Raises ValueError for anything else.
    """
    if not isinstance(target, str):
        raise ValueError(f"target must be a string such as '>= 1.0', got {target!r}")
    m = _TARGET_RE.match(target)
    if not m:
        raise ValueError(f"target {target!r} is not of the form '[ratio|value] OP NUMBER' with OP one of >=, <=, >, <")
    subject, op, raw = m.groups()
    try:
        threshold = float(raw)
    except ValueError:
        raise ValueError(f"target {target!r}: {raw!r} is not a number") from None
    if not math.isfinite(threshold):
        raise ValueError(f"target {target!r}: the threshold must be finite")
    return subject, op, threshold


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


@dataclass(frozen=True)
class Figure:
    """One benchmark figure; ``ratio`` and ``met`` are computed, never passed.

    ``baseline`` names what ``baseline_value`` measures (same quantity, same run). ``ratio`` is
    ``value / baseline_value`` (None without a baseline value, or when it is 0 or not finite).
    ``target`` is ``"[ratio|value] OP NUMBER"``: without a subject it applies to the ratio when
    there is a baseline value, else to the value; it is stored in that explicit form. ``met`` is
    whether the target holds (None when there is no target, or nothing to test it on).
    """

    name: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    ratio: float | None = field(init=False, default=None)
    target: str | None = None
    met: bool | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"Figure.name must be a non-empty string, got {self.name!r}")
        for label in ("value", "baseline_value"):
            v = getattr(self, label)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ValueError(f"figure {self.name!r}: {label} must be a number, got {v!r}")
            if v is not None:
                object.__setattr__(self, label, float(v))
        if self.baseline_value is not None and not self.baseline:
            raise ValueError(f"figure {self.name!r}: baseline_value given without naming the baseline")
        ratio = None
        if _finite(self.value) and _finite(self.baseline_value) and self.baseline_value != 0:
            ratio = self.value / self.baseline_value
        object.__setattr__(self, "ratio", ratio)
        if self.target is None:
            return
        subject, op, threshold = parse_target(self.target)
        if subject is None:
            subject = "ratio" if self.baseline_value is not None else "value"
        if subject == "ratio" and self.baseline_value is None:
            raise ValueError(
                f"figure {self.name!r}: target {self.target!r} is on the ratio but there is no baseline_value"
            )
        object.__setattr__(self, "target", f"{subject} {op} {threshold:g}")
        tested = self.ratio if subject == "ratio" else self.value
        object.__setattr__(self, "met", _OPS[op](tested, threshold) if _finite(tested) else None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record: the eight documented keys, non-finite numbers as null."""
        out = asdict(self)
        for k in ("value", "baseline_value", "ratio"):
            if out[k] is not None and not math.isfinite(out[k]):
                out[k] = None
        return out


# ----------------------------------------------------------------------------- machine description

_NOTES: dict[str, Any] = {}


def machine_note(key: str, value: Any) -> None:
    """Add a fact about the machine to this run's results (e.g. the Redis server version measured)."""
    _NOTES[key] = value


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_avg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def machine_info() -> dict[str, Any]:
    """CPU count and model, Python, platform, plus any :func:`machine_note` from this run."""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **_NOTES,
    }


# ----------------------------------------------------------------------------- timing


def ops_per_second(
    fn: Callable[[], Any],
    *,
    duration: float | None = None,
    count: int | None = None,
    warmup: float = 0.05,
) -> float:
    """Calls of ``fn`` per second (``time.perf_counter``), after ``warmup`` seconds of untimed calls.

    Give either ``duration`` (seconds to keep calling) or ``count`` (exact number of calls). For a
    duration the clock is read once per batch, with the batch sized during warm-up to ~1 ms, so
    reading the clock does not weigh on sub-microsecond callables; warm-up lasts at least
    ``warmup`` seconds and until one batch takes 1 ms.
    """
    if (duration is None) == (count is None):
        raise ValueError("give exactly one of duration (seconds) or count (calls)")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be > 0 seconds, got {duration!r}")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError(f"count must be a positive integer, got {count!r}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0 seconds, got {warmup!r}")
    clock = time.perf_counter
    batch = 1
    start = clock()
    while True:  # warm-up: at least `warmup` seconds, and until one batch takes >= 1 ms
        t0 = clock()
        for _ in range(batch):
            fn()
        short = clock() - t0 < 1e-3 and batch < 1 << 20
        if short:
            batch *= 2
        if not short and clock() - start >= warmup:
            break
    if count is not None:
        t0 = clock()
        for _ in range(count):
            fn()
        return count / (clock() - t0)
    assert duration is not None
    n = 0
    t0 = clock()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = clock() - t0
        if elapsed >= duration:
            return n / elapsed


def interleaved(
    contenders: Mapping[str, Callable[[], Any]],
    *,
    rounds: int = 5,
    duration: float = 0.2,
    warmup: float = 0.1,
) -> dict[str, list[float]]:
    """Ops/s of each contender over ``rounds`` rounds, taking turns (A B, B A, A B, ...).

    Each contender is warmed up once, then every round times each for ``duration`` seconds;
    the order flips every round so a slow drift of the machine is shared out evenly. Take the
    :func:`statistics.median` of each list to resist the odd noisy round.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds!r}")
    names = list(contenders)
    for name in names:
        ops_per_second(contenders[name], count=1, warmup=warmup)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            out[name].append(ops_per_second(contenders[name], duration=duration, warmup=0.0))
    return out


def median(values: list[float]) -> float:
    """The median (a thin alias so benchmark scripts need one import)."""
    return float(statistics.median(values))


# ----------------------------------------------------------------------------- throwaway redis-server


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway real ``redis-server`` for one benchmark: yields its URL, records its version."""
    with local_redis_server() as server:
        machine_note("redis_server", server.version())
        yield server.url


# ----------------------------------------------------------------------------- in-process HTTP


def asgi_get(path: str, headers: Mapping[str, str] | None = None) -> dict:
    """The ASGI scope of a ``GET path`` from a loopback client, for :func:`asgi_call`."""
    raw = [(b"host", b"bench")] + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def asgi_call(app: Callable[..., Any], scope: dict) -> int:
    """Call an ASGI app directly (no HTTP client, the least noisy harness); return the status code."""
    status = 0

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


@contextlib.contextmanager
def without_redis_url() -> Iterator[None]:
    """Hide REDIS_URL so an app built without a URL really uses fakeredis."""
    saved = os.environ.pop("REDIS_URL", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["REDIS_URL"] = saved


# ----------------------------------------------------------------------------- runner


def _fmt(x: float | None, *, ratio: bool = False) -> str:
    if x is None:
        return "-"
    if not math.isfinite(x):
        return str(x)
    if ratio:
        return f"{x:.3g}" if abs(x) < 0.1 else f"{x:.2f}"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def format_table(figures: list[Figure]) -> str:
    """The figures as an aligned plain-text table."""
    header = ("figure", "value", "unit", "baseline", "baseline value", "ratio", "target", "met")
    rows = [
        (
            f.name,
            _fmt(f.value),
            f.unit,
            f.baseline or "-",
            _fmt(f.baseline_value),
            _fmt(f.ratio, ratio=True),
            f.target or "-",
            {True: "yes", False: "NO", None: "-"}[f.met],
        )
        for f in figures
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {1, 4, 5}  # numbers align right

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def _load(lab: Lab) -> Any:
    path = lab.benchmark
    if not path.is_file():
        raise ValueError(f"lab {lab.name!r} has no benchmark: {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"syslab_benchmark_{lab.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    if not callable(getattr(module, "run", None)):
        raise TypeError(f"{path} must define run(quick: bool) -> list[Figure]")
    return module


RESULTS_ENV = "SYSLAB_BENCH_RESULTS"


def results_path(lab: Lab) -> Path:
    """Where ``syslab bench`` writes the lab's JSON: ``benchmarks/results/<lab>.json``.

    The environment variable ``SYSLAB_BENCH_RESULTS`` names another folder (tests use it so a
    smoke run never overwrites the committed results).
    """
    folder = os.environ.get(RESULTS_ENV)
    return (Path(folder) if folder else lab.benchmark.parent / "results") / f"{lab.name}.json"


def run_benchmark(lab: Lab, quick: bool = False) -> int:
    """Run ``benchmarks/<lab>.py``, print its table, write its JSON; 0 unless the benchmark failed.

    A missed target is a result, not a failure: the table and the JSON say so and the status is
    still 0. The JSON goes to :func:`results_path`. An exception in the benchmark prints its traceback, writes nothing and returns 1.
    A lab without a benchmark file is a usage error (ValueError).
    """
    path = lab.benchmark
    if not path.is_file():
        raise ValueError(f"lab {lab.name!r} has no benchmark: {path} does not exist")
    _NOTES.clear()
    load_start = _load_avg()
    started = time.perf_counter()
    print(f"syslab bench {lab.name}{' --quick' if quick else ''}: running {path.name} ...", flush=True)
    try:
        module = _load(lab)
        figures = module.run(quick)
        if not isinstance(figures, list) or not all(isinstance(f, Figure) for f in figures):
            raise TypeError(f"{path.name}: run() must return a list of Figure, got {type(figures).__name__}")
        if not figures:
            raise ValueError(f"{path.name}: run() returned no figures")
    except Exception:
        traceback.print_exc()
        print(f"syslab bench {lab.name}: the benchmark failed; no results written", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    if load_start is not None:  # a busy shared machine explains noisy figures
        machine_note("load_avg_1m", [load_start, _load_avg()])
    record = {"lab": lab.name, "machine": machine_info(), "figures": [f.to_dict() for f in figures]}
    out = results_path(lab)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    tmp.replace(out)
    targeted = [f for f in figures if f.target is not None]
    met = sum(1 for f in targeted if f.met)
    m = record["machine"]
    print()
    print(format_table(figures))
    print()
    print(
        f"{met} of {len(targeted)} targets met; {len(figures)} figures in {elapsed:.1f} s "
        f"on {m['cpus']} x {m['cpu_model']}, Python {m['python']}"
        + (f", redis-server {m['redis_server']}" if "redis_server" in m else "")
        + (f"; load average {m['load_avg_1m'][0]} -> {m['load_avg_1m'][1]}" if "load_avg_1m" in m else "")
    )
    print(f"wrote {out}")
    return 0
