"""Warm kernels: the same notebook view as a cold ipykernel, isolation between kernels, the sandbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from lab_core.autograde import sandbox
from lab_core.autograde.warm import preload_statements, warm_kernels

PROBE = """
import os, sys, json, random
print(json.dumps({"cwd": os.getcwd(), "path0": sys.path[0], "argv0": os.path.basename(sys.argv[0]),
                  "name": __name__, "shell": type(get_ipython()).__name__,
                  "cache": os.environ.get("SYSLAB_CACHE"), "fast": os.environ.get("SYSLAB_FAST")}))
"""


def _notebook(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(s)) for s in sources]
    return nb


def _run(nb: nbformat.NotebookNode, folder: Path, env: dict[str, str], timeout: int = 60) -> nbformat.NotebookNode:
    """Execute ``nb`` in ``folder`` with a kernel found through ``env`` (JUPYTER_PATH), as nbgrader does."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        NotebookClient(
            nb,
            timeout=timeout,
            allow_errors=True,
            kernel_name="python3",
            interrupt_on_timeout=True,
            resources={"metadata": {"path": str(folder)}},
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


def _text(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _error(cell: nbformat.NotebookNode) -> str | None:
    return next((f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error"), None)


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    env = {**os.environ, "SYSLAB_FAST": "1", "SYSLAB_CACHE": str(tmp_path_factory.mktemp("cache"))}
    with warm_kernels(["import statistics", "import numpy as np"], env) as warm_env:
        yield warm_env


def test_a_warm_kernel_sees_what_a_cold_one_sees(warm, tmp_path):
    cold_nb = _run(_notebook(PROBE), tmp_path, {**warm, "JUPYTER_PATH": ""})
    warm_nb = _run(_notebook(PROBE), tmp_path, warm)
    assert _text(warm_nb.cells[0]) == _text(cold_nb.cells[0])
    assert '"shell": "ZMQInteractiveShell"' in _text(warm_nb.cells[0])


def test_kernels_share_no_globals_monkeypatches_threads_or_randomness(warm, tmp_path):
    first = _run(
        _notebook(
            "import statistics, threading, random, numpy as np\n"
            "statistics.mean = None\nLEAK = 1\n"
            "threading.Thread(target=__import__('time').sleep, args=(30,), daemon=True).start()\n"
            "print(random.random(), np.random.random())"
        ),
        tmp_path,
        warm,
    )
    second = _run(
        _notebook(
            "import statistics, threading, random, numpy as np\n"
            "assert statistics.mean([1, 3]) == 2, 'a monkeypatch leaked'\n"
            "assert 'LEAK' not in globals(), 'a global leaked'\n"
            "print(threading.active_count())\nprint(random.random(), np.random.random())"
        ),
        tmp_path,
        warm,
    )
    assert _error(first.cells[0]) is None and _error(second.cells[0]) is None, _error(second.cells[0])
    count, draws = _text(second.cells[0]).splitlines()
    baseline = _run(_notebook("import threading; print(threading.active_count())"), tmp_path, warm)
    assert count == _text(baseline.cells[0]).strip(), "a thread from another kernel survived"
    assert draws != _text(first.cells[0]).strip(), "two kernels drew the same random numbers"


@pytest.mark.skipif(
    sandbox.landlock_abi() == 0, reason="this Linux kernel has no Landlock: the sandbox cannot confine writes"
)
def test_writes_outside_the_folder_fail_and_harm_nothing(warm, tmp_path):
    outside = tmp_path / "gradebook.db"
    outside.write_text("precious")
    folder = tmp_path / "student"
    folder.mkdir()
    nb = _run(
        _notebook(
            f"import os; os.remove({str(outside)!r})",
            f"open({str(tmp_path / 'new.txt')!r}, 'w')",
            "open('mine.txt', 'w').write('ok'); import tempfile; open(tempfile.mktemp(), 'w').write('ok')",
            "os.kill(os.getppid(), 9)",
        ),
        folder,
        warm,
    )
    assert "PermissionError" in _error(nb.cells[0]) and "PermissionError" in _error(nb.cells[1])
    assert _error(nb.cells[2]) is None and (folder / "mine.txt").read_text() == "ok"
    if sandbox.landlock_abi() >= 6:
        assert "PermissionError" in _error(nb.cells[3]), "a kernel could signal the zygote"
    assert outside.read_text() == "precious" and not (tmp_path / "new.txt").exists()


def test_a_cell_that_prints_too_much_fails_and_the_next_cell_runs(warm, tmp_path):
    nb = _run(
        _notebook(
            "print('x' * (sandbox.DEFAULT_OUTPUT_LIMIT + 10))".replace(
                "sandbox.DEFAULT_OUTPUT_LIMIT", str(sandbox.DEFAULT_OUTPUT_LIMIT)
            ),
            "print('after')",
        ),
        tmp_path,
        warm,
    )
    assert _error(nb.cells[0]).startswith("OutputLimitExceeded")
    assert _text(nb.cells[1]) == "after\n"


def test_a_loop_is_interrupted_at_the_timeout_and_the_kernel_goes_on(warm, tmp_path):
    nb = _run(_notebook("while True:\n    pass", "print('alive')"), tmp_path, warm, timeout=3)
    assert _error(nb.cells[0]) is not None
    assert _text(nb.cells[1]) == "alive\n"


def test_a_kernel_that_exits_ends_only_itself(warm, tmp_path):
    nb = _notebook("import os; os._exit(3)")
    with pytest.raises(Exception, match="(?i)dead|died"):
        NotebookClient(
            nb, timeout=30, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}, env=warm
        ).execute()
    again = _run(_notebook("print('next')"), tmp_path, warm)
    assert _text(again.cells[0]) == "next\n"


def test_killing_the_launcher_kills_its_kernel(warm, tmp_path, monkeypatch):
    """What a kernel manager does to a kernel that will not shut down: SIGKILL the process it started."""
    from jupyter_client import KernelManager

    monkeypatch.setenv("JUPYTER_PATH", warm["JUPYTER_PATH"])
    km = KernelManager(kernel_name="python3")
    assert km.kernel_spec.argv[1].endswith("launcher.py")
    km.start_kernel(cwd=str(tmp_path))
    kc = km.client()
    try:
        kc.start_channels()
        kc.wait_for_ready(timeout=30)
        pidfile = tmp_path / "pid"
        kc.execute_interactive(f"import os; open({str(pidfile)!r}, 'w').write(str(os.getpid()))", timeout=30)
        kernel_pid = int(pidfile.read_text())
        launcher = km.provisioner.process
        assert launcher.pid != kernel_pid and _alive(kernel_pid)
        os.kill(launcher.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(kernel_pid):
            time.sleep(0.1)
        assert not _alive(kernel_pid), "the kernel outlived its launcher"
    finally:
        kc.stop_channels()
        km.cleanup_resources()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "zombie" in status.read_text())


def test_preload_takes_imports_of_ungraded_cells_only():
    def cell(source, **meta):
        c = nbformat.v4.new_code_cell(source)
        if meta:
            c.metadata["nbgrader"] = meta
        return c

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        cell("import os\nimport numpy as np\nfrom lab_core import labs\nx = 1\ndef f():\n    import json"),
        cell("import hypothesis", grade=True, grade_id="t", points=1),
        cell("import torch", solution=True, grade_id="s"),
        cell("import hypothesis\nimport pandas as pd\nfrom . import sibling"),
        cell("%matplotlib inline\nimport scipy"),
    ]
    assert preload_statements(nb) == [
        "import os",
        "import numpy as np",
        "from lab_core import labs",
        "import pandas as pd",
    ]


def test_the_sandbox_in_a_plain_process(tmp_path):
    """restrict_writes on its own, in a child process: the rule follows the process's children too."""
    if sandbox.landlock_abi() == 0:
        pytest.skip("this Linux kernel has no Landlock")
    inside = tmp_path / "in"
    inside.mkdir()
    script = textwrap.dedent(f"""
        import subprocess, sys
        from lab_core.autograde import sandbox
        sandbox.restrict_writes([{str(inside)!r}])
        open({str(inside / "a")!r}, 'w').write('ok')
        try:
            open({str(tmp_path / "b")!r}, 'w')
        except PermissionError:
            print('denied')
        rc = subprocess.run(['touch', {str(tmp_path / "c")!r}]).returncode
        print('child', rc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["denied", "child", "1"], out.stderr
    assert (inside / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_the_zygote_refuses_a_malformed_request_and_keeps_serving(warm, tmp_path):
    import json
    import socket

    spec = Path(warm["JUPYTER_PATH"].split(os.pathsep)[0]) / "kernels" / "python3" / "kernel.json"
    path = json.loads(spec.read_text())["argv"][2]
    for junk in (b"not json\n", b'{"argv": "x"}\n', b"[1, 2]\n"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(10)
            conn.connect(path)
            conn.sendall(junk)
            assert "error" in json.loads(conn.makefile().readline())
    nb = _run(_notebook("print('still serving')"), tmp_path, warm)
    assert _text(nb.cells[0]) == "still serving\n"
