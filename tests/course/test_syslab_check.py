"""`syslab check LAB` end to end for every lab: real nbgrader generate + autograde, and the fast path.

It is also the fidelity test of the fast path: with ``--compare 3`` the reference, the blank and
three mutants are graded both by nbgrader with cold kernels and by the fork tree
(:mod:`lab_core.autograde.fastpath`), and the check's "fast path = nbgrader" row holds only when
every cell's points are equal.

This is also where each notebook is executed in the suite: the check's rows say the reference runs
with no error in any cell and the blank student version breaks only at its exercises (both read
from the notebooks nbgrader executed), and that ``labs/`` is what nbgrader makes from ``solutions/``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab_core.course import load_mutants
from lab_core.labs import LABS, get_lab

SYSLAB = str(Path(sys.executable).with_name("syslab"))


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.timeout(480)
@pytest.mark.parametrize("name", sorted(LABS))
def test_check_proves_the_grader(name):
    lab = get_lab(name)
    mutants = load_mutants(lab)
    assert len(mutants) >= 4, "every lab's issue asks for several mutants"
    proc = subprocess.run([SYSLAB, "check", name, "--compare", "3"], capture_output=True, text=True, timeout=450)
    table = proc.stdout
    assert proc.returncode == 0, f"syslab check failed:\n{table}\n{proc.stderr[-2000:]}"
    rows = {line.split()[1]: line for line in table.splitlines() if line.startswith(f"{name} ")}
    assert " yes " in rows["student"], table  # "student notebook current"
    assert " yes " in rows["no"], table  # "no errors in the reference run"
    assert " yes " in rows["only"], table  # "only exercises break in blank"
    fidelity = rows["fast"]  # "fast path = nbgrader (5)": per-cell points equal both ways
    assert "(5)" in fidelity and " yes " in fidelity and "reference" in fidelity and "blank" in fidelity, table
    assert sum(f"mutant-{m.name}" in fidelity for m in mutants[:3]) == 3, table
    ref = rows["reference"].split()
    score, max_score = map(float, ref[2].split("/"))
    assert score == max_score > 0, table
    blank = rows["blank"].split()
    assert float(blank[2].split("/")[0]) < max_score, table
    for m in mutants:
        line = rows[f"mutant-{m.name}"]
        got = float(line.split()[2].split("/")[0])
        assert got < max_score and " yes " in line, f"mutant {m.name} was not caught:\n{table}"
