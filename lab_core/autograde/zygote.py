"""The warm parent of graded kernels: imports a notebook's libraries once, then forks a kernel per request.

A cold Jupyter kernel spends most of a short notebook importing torch, Panel and HoloViews. The
zygote runs those imports (the notebook's own import statements, nothing else) and the kernel
machinery once, stays single-threaded, and on each request forks a child that becomes an
ordinary ipykernel: its own process, session and process group, the requester's working folder,
environment and arguments, fresh random seeds, a private temporary folder, and the sandbox of
:mod:`lab_core.autograde.sandbox`. Children share nothing writable with the zygote or with each other.

Protocol (one Unix socket, one connection per kernel, JSON lines): the launcher sends
``{"argv", "cwd", "env"}``; the zygote answers ``{"pid"}`` and, when the kernel ends,
``{"exit": status}``. A launcher that disconnects takes its kernel's whole process group with it.

Run as ``python -m lab_core.autograde.zygote --socket PATH --preload FILE``.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import importlib.util
import json
import os
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from lab_core.autograde import sandbox

# The project's embedding cache (lab_core.rag.system.cache_path) stays writable, as under plain
# nbgrader: it is keyed by the text's hash, and re-embedding the corpus in every kernel would
# cost the RAG lab tens of seconds per notebook. It is the one place outside its folder a kernel writes.
CACHE_ENV = "SYSLAB_CACHE"


@dataclass
class _Kernel:
    conn: socket.socket
    buffer: bytes = b""
    pid: int | None = None
    tmp: Path | None = None
    extra: dict = field(default_factory=dict)


def preload(statements: list[str]) -> list[str]:
    """Run each import statement in a throwaway namespace; return the ones that failed, with why.

    Warnings raised while importing are not shown: a cold kernel shows them in the (ungraded)
    cell that first imports, which does not change any score.
    """
    failed = []
    for statement in statements:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                exec(compile(statement, "<preload>", "exec"), {})
        except Exception as exc:  # the notebook itself will meet the same error, in its own cell
            failed.append(f"{statement}: {type(exc).__name__}: {exc}")
    return failed


def _prepare_kernel_machinery() -> None:
    """Import ipykernel and create IPython's profile folder while writes are still allowed."""
    from IPython.core.profiledir import ProfileDir
    from IPython.paths import get_ipython_dir

    importlib.import_module("ipykernel.kernelapp")

    try:
        ProfileDir.create_profile_dir_by_name(get_ipython_dir(), "default")
    except Exception:  # a read-only home: the kernel then runs without a profile folder, as a cold one would
        pass


def _shared_cache(env: dict[str, str]) -> list[Path]:
    """The project's embedding cache, as :func:`lab_core.rag.system.cache_path` finds it (created),
    or nothing where it cannot be created (the notebook then meets that itself, as a cold kernel would)."""
    folder = Path(env.get(CACHE_ENV) or Path(env.get("HOME", str(Path.home()))) / ".cache" / "sysdesign-lab")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return []
    return [folder]


def _become_kernel(request: dict, tmp: Path, confine: bool) -> None:
    """In the forked child: take the request's folder, environment and arguments, then run ipykernel."""
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cwd = Path(request["cwd"]).resolve()
    os.chdir(cwd)
    env = dict(request["env"])
    env.update(TMPDIR=str(tmp), TMP=str(tmp), TEMP=str(tmp), MPLCONFIGDIR=str(tmp / "matplotlib"))
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None
    # As `python -m ipykernel_launcher` leaves it: the launcher drops the folder `-m` put first.
    del sys.path[0]
    sys.argv = [importlib.util.find_spec("ipykernel_launcher").origin, *request["argv"]]
    import random

    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    sandbox.limit_resources()
    if confine:
        sandbox.restrict_writes([cwd, tmp, Path("/dev"), *_shared_cache(env)])
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(request["argv"])
    sandbox.cap_output(app.shell, (sys.stdout, sys.stderr))
    app.start()


class Zygote:
    """The fork server: accepts launcher connections and forks one kernel per connection."""

    def __init__(self, path: str, confine: bool) -> None:
        self.confine = confine
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.kernels: dict[int, _Kernel] = {}  # by connection fd
        self.running = True

    def _spawn(self, kernel: _Kernel) -> None:
        line, _, kernel.buffer = kernel.buffer.partition(b"\n")
        try:
            request = json.loads(line)
            if not (
                isinstance(request.get("argv"), list)
                and isinstance(request.get("cwd"), str)
                and isinstance(request.get("env"), dict)
            ):
                raise ValueError("a request needs argv (list), cwd (str) and env (object)")
        except (ValueError, AttributeError) as exc:  # not a launcher: answer and hang up, keep serving
            kernel.conn.sendall(json.dumps({"error": str(exc)}).encode() + b"\n")
            self._close(kernel, None)
            return
        kernel.tmp = Path(tempfile.mkdtemp(prefix="syslab-kernel-"))
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                _die_with_parent(signal.SIGKILL)
                self.selector.close()
                self.listener.close()
                for other in self.kernels.values():
                    other.conn.close()
                _become_kernel(request, kernel.tmp, self.confine)
                status = 0
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        kernel.pid = pid
        kernel.conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")

    def _close(self, kernel: _Kernel, status: int | None) -> None:
        if status is not None:
            try:
                kernel.conn.sendall(json.dumps({"exit": status}).encode() + b"\n")
            except OSError:
                pass
        self.selector.unregister(kernel.conn)
        self.kernels.pop(kernel.conn.fileno(), None)
        kernel.conn.close()
        if kernel.pid is not None:
            _kill_group(kernel.pid)
        if kernel.tmp is not None:
            shutil.rmtree(kernel.tmp, ignore_errors=True)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for kernel in list(self.kernels.values()):
                if kernel.pid == pid:
                    kernel.pid = None
                    _kill_group(pid)  # what the notebook started, as a kernel manager would on shutdown
                    self._close(kernel, os.waitstatus_to_exitcode(status))

    def serve(self) -> None:
        """Serve until SIGTERM; then kill every kernel this zygote started."""
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "running", False))
        while self.running:
            for key, _ in self.selector.select(timeout=0.1):
                if key.fileobj is self.listener:
                    conn, _ = self.listener.accept()
                    self.kernels[conn.fileno()] = _Kernel(conn)
                    self.selector.register(conn, selectors.EVENT_READ)
                    continue
                kernel = self.kernels[key.fileobj.fileno()]
                data = kernel.conn.recv(1 << 20)
                if not data:  # the launcher is gone (killed by its kernel manager): so is the kernel
                    self._close(kernel, None)
                    continue
                kernel.buffer += data
                if kernel.pid is None and b"\n" in kernel.buffer:
                    self._spawn(kernel)
            self._reap()
        for kernel in list(self.kernels.values()):
            self._close(kernel, None)
        self._reap()


def _die_with_parent(signum: int) -> None:
    """Have Linux send ``signum`` to this process when its parent dies (elsewhere: nothing)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signum)  # PR_SET_PDEATHSIG


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Preload, report what failed, then serve kernels on the socket."""
    parser = argparse.ArgumentParser(prog="python -m lab_core.autograde.zygote")
    parser.add_argument("--socket", required=True, help="path of the Unix socket to serve on")
    parser.add_argument("--preload", required=True, help="JSON file: a list of import statements")
    parser.add_argument("--no-sandbox", action="store_true", help="let kernels write anywhere (trusted code only)")
    args = parser.parse_args(argv)
    owner = os.getppid()
    _die_with_parent(signal.SIGTERM)  # an owner killed outright must not leave a zygote behind
    if os.getppid() != owner:
        return 1
    for problem in preload(json.loads(Path(args.preload).read_text())):
        print(f"zygote: preload failed: {problem}", file=sys.stderr)
    _prepare_kernel_machinery()
    zygote = Zygote(args.socket, confine=not args.no_sandbox)
    print(
        f"zygote: ready ({os.getpid()}), sandbox: landlock ABI {sandbox.landlock_abi() if zygote.confine else 'off'}",
        flush=True,
    )
    zygote.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
