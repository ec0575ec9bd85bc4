"""The `syslab` command's contract: subcommands exist, bad arguments exit 2 with a clear message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab_core.cli import build_parser, main
from lab_core.labs import LABS

SYSLAB = str(Path(sys.executable).with_name("syslab"))


def test_every_documented_subcommand_exists():
    out = subprocess.run([SYSLAB, "--help"], capture_output=True, text=True, check=True).stdout
    for sub in ("serve", "demo", "check", "bench"):
        assert sub in out


def test_demo_lists_the_rate_limiter_with_its_options():
    out = subprocess.run([SYSLAB, "demo", "ratelimit", "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--rules", "--redis-url", "--port"):
        assert option in out


@pytest.mark.parametrize("name", sorted(LABS))
def test_every_lab_demo_prints_its_help(name):
    proc = subprocess.run([SYSLAB, "demo", name, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "--port" in proc.stdout and "--host" in proc.stdout and "Traceback" not in proc.stderr


def _labs_loaded_by_parsing(*argv: str) -> list[str]:
    """The labs whose ``lab_core`` packages building and running the parser on ``argv`` imported."""
    code = (
        "import json, sys\n"
        "from lab_core.cli import build_parser\n"
        "from lab_core.labs import LABS\n"
        "build_parser(sys.argv[1:]).parse_known_args(sys.argv[1:])\n"
        "print(json.dumps(sorted(n for n in LABS if f'lab_core.{n}' in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_the_parser_loads_only_the_lab_it_runs():
    assert _labs_loaded_by_parsing("check", "ratelimit") == []
    assert _labs_loaded_by_parsing("demo", "feed", "--port", "1") == ["feed"]
    assert _labs_loaded_by_parsing("demo", "cluster") == ["cluster"]


@pytest.mark.parametrize("argv", [["check", "nosuchlab"], ["bench", "nosuchlab"]])
def test_unknown_lab_is_a_clear_error(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unknown lab 'nosuchlab'" in err and "ratelimit" in err


def test_serve_rejects_unknown_lab():
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["serve", "--lab", "nosuchlab"])
    assert exc.value.code == 2


def test_demo_with_bad_rules_file_exits_2_naming_the_rule(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: broken, scope: user, limit: -5, period: 60}\n")
    proc = subprocess.run(
        [SYSLAB, "demo", "ratelimit", "--rules", str(rules), "--port", "1"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "broken" in proc.stderr and "limit" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_allows_training_runs_only_when_asked():
    from lab_core.cli import build_parser

    assert not build_parser(["serve"]).parse_args(["serve"]).allow_training_runs
    assert build_parser(["serve"]).parse_args(["serve", "--allow-training-runs"]).allow_training_runs
