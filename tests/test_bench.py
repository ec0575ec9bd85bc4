"""`syslab bench`: the Figure contract, the runner and its helpers (each lab's quick run is in tests/<lab>/)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from conftest import FIGURE_KEYS, need
from lab_core.bench import (
    Figure,
    format_table,
    interleaved,
    ops_per_second,
    parse_target,
    redis_server,
    run_benchmark,
)

SYSLAB = str(Path(sys.executable).with_name("syslab"))


# ----------------------------------------------------------------------------- Figure and targets


@pytest.mark.parametrize(
    "target, expected",
    [
        (">= 1.0", (None, ">=", 1.0)),
        ("<= 2", (None, "<=", 2.0)),
        ("  >1e3 ", (None, ">", 1000.0)),
        ("value <= 1000", ("value", "<=", 1000.0)),
        ("ratio < 0.5", ("ratio", "<", 0.5)),
        (">= -1", (None, ">=", -1.0)),
    ],
)
def test_parse_target(target, expected):
    assert parse_target(target) == expected


@pytest.mark.parametrize(
    "bad", ["", "1.0", "=> 1", "== 1", ">= ", ">= one", ">= nan", "<= inf", "speed >= 1", ">= 1 2", 1.0]
)
def test_bad_target_is_a_value_error(bad):
    with pytest.raises(ValueError, match="target"):
        parse_target(bad)
    with pytest.raises(ValueError, match="target"):
        Figure("f", 1.0, "x", target=bad)


def test_parse_target_refuses_none():
    with pytest.raises(ValueError, match="target"):
        parse_target(None)  # type: ignore[arg-type]


def test_target_defaults_to_the_ratio_when_there_is_a_baseline():
    f = Figure("ours", 120.0, "ops/s", baseline="theirs", baseline_value=100.0, target=">= 1.0")
    assert f.ratio == pytest.approx(1.2)
    assert f.target == "ratio >= 1" and f.met is True
    slower = Figure("ours", 80.0, "ops/s", baseline="theirs", baseline_value=100.0, target=">= 1.0")
    assert slower.ratio == pytest.approx(0.8) and slower.met is False


def test_target_on_the_value_without_a_baseline():
    f = Figure("error", 0.5, "%", target="<= 2")
    assert f.ratio is None and f.target == "value <= 2" and f.met is True
    assert Figure("error", 3.0, "%", target="<= 2").met is False


def test_explicit_value_target_with_a_baseline():
    f = Figure("added p99", 400.0, "us", baseline="bare p99", baseline_value=200.0, target="value <= 1000")
    assert f.ratio == pytest.approx(2.0) and f.met is True


def test_no_target_means_met_is_none():
    f = Figure("info", 1.0, "x", baseline="b", baseline_value=4.0)
    assert f.target is None and f.met is None and f.ratio == 0.25


def test_ratio_target_needs_a_baseline():
    with pytest.raises(ValueError, match="no baseline_value"):
        Figure("f", 1.0, "x", target="ratio >= 1")


def test_zero_baseline_gives_no_ratio_and_no_verdict_on_it():
    f = Figure("f", 1.0, "x", baseline="b", baseline_value=0.0, target=">= 1")
    assert f.ratio is None and f.met is None


def test_bad_fields_are_named():
    with pytest.raises(ValueError, match="name"):
        Figure("", 1.0, "x")
    with pytest.raises(ValueError, match="value"):
        Figure("f", "fast", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="baseline"):
        Figure("f", 1.0, "x", baseline_value=2.0)


def test_to_dict_has_the_documented_keys_in_order_and_no_nan():
    d = Figure("f", math.nan, "x", baseline="b", baseline_value=1.0, target=">= 1").to_dict()
    assert list(d) == FIGURE_KEYS
    assert d["value"] is None and d["ratio"] is None and d["met"] is None
    json.dumps(d, allow_nan=False)


def test_table_aligns_and_marks_misses():
    figures = [
        Figure("a short one", 1.5, "x", target="<= 2"),
        Figure("a much longer figure name", 12345.0, "ops/s", baseline="theirs", baseline_value=20000.0, target=">= 1"),
    ]
    lines = format_table(figures).splitlines()
    assert lines[0].startswith("figure") and set(lines[1]) <= {"-", " "}
    assert lines[2].split()[-1] == "yes" and lines[3].split()[-1] == "NO"
    assert "12,345" in lines[3] and "0.62" in lines[3]


# ----------------------------------------------------------------------------- timing helpers


def test_ops_per_second_counts_calls():
    calls = []
    rate = ops_per_second(lambda: calls.append(1), count=1000, warmup=0.0)
    assert rate > 0 and len(calls) >= 1000
    assert ops_per_second(lambda: None, duration=0.01, warmup=0.0) > 1000
    with pytest.raises(ValueError):
        ops_per_second(lambda: None)
    with pytest.raises(ValueError):
        ops_per_second(lambda: None, duration=1.0, count=10)


def test_interleaved_gives_one_figure_per_round_for_each():
    out = interleaved({"a": lambda: None, "b": lambda: sum(range(10))}, rounds=3, duration=0.005, warmup=0.0)
    assert set(out) == {"a", "b"} and all(len(v) == 3 and min(v) > 0 for v in out.values())


def test_lab_core_bench_imports_no_ui():
    code = (
        "import sys, lab_core.bench; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'panel', 'holoviews', 'widgets', 'bokeh'}); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- the runner on stand-in labs


@dataclass
class FakeLab:
    name: str
    benchmark: Path


def test_runner_writes_json_and_returns_0_even_when_a_target_is_missed(tmp_path, monkeypatch, capsys):
    script = tmp_path / "demo.py"
    script.write_text(
        "from lab_core.bench import Figure\n"
        "def run(quick):\n"
        "    return [Figure('fast thing', 50.0, 'ops/s', baseline='other', baseline_value=100.0, target='>= 1'),\n"
        "            Figure('quick flag', float(quick), 'bool')]\n"
    )
    monkeypatch.delenv("SYSLAB_BENCH_RESULTS", raising=False)
    assert run_benchmark(FakeLab("demo", script), quick=True) == 0
    out = capsys.readouterr().out
    assert "fast thing" in out and "NO" in out and "0 of 1 targets met" in out
    record = json.loads((tmp_path / "results" / "demo.json").read_text())
    assert record["lab"] == "demo" and record["figures"][1]["value"] == 1.0
    assert record["figures"][0]["ratio"] == 0.5 and record["figures"][0]["met"] is False


def test_runner_returns_1_and_writes_nothing_when_the_benchmark_fails(tmp_path, monkeypatch, capsys):
    script = tmp_path / "broken.py"
    script.write_text("def run(quick):\n    raise RuntimeError('boom')\n")
    monkeypatch.setenv("SYSLAB_BENCH_RESULTS", str(tmp_path / "out"))
    assert run_benchmark(FakeLab("broken", script)) == 1
    assert "boom" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_runner_rejects_a_benchmark_returning_the_wrong_type(tmp_path, monkeypatch):
    script = tmp_path / "wrong.py"
    script.write_text("def run(quick):\n    return {'name': 1}\n")
    monkeypatch.setenv("SYSLAB_BENCH_RESULTS", str(tmp_path / "out"))
    assert run_benchmark(FakeLab("wrong", script)) == 1


def test_missing_benchmark_file_is_a_usage_error(tmp_path):
    with pytest.raises(ValueError, match="has no benchmark"):
        run_benchmark(FakeLab("nothing", tmp_path / "nothing.py"))


# ----------------------------------------------------------------------------- throwaway redis-server


@pytest.mark.redis_server
def test_redis_server_context_starts_and_stops_a_server():
    need("redis-server", "benchmarks start their own redis-server")
    with redis_server() as url:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        assert client.ping()
        client.close()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
