"""Running many submissions of one notebook in one process tree: a cell they share runs once.

The course's submissions (the reference, the blank, the mutants) differ in a cell or two; every
cell before the first difference is the same code on the same state. The tree process runs the
notebook's imports once, then runs cells with :class:`~lab_core.autograde.cellrun.CellRunner`;
where the submissions it carries stop agreeing, it forks a child per distinct next cell and waits
for each in turn, so each child continues from exactly the state the shared cells left.

A fork copies memory, not threads, child processes, sockets' peers or pending asyncio work, so the
tree forks only where none of those exist (:func:`fork_safe`). Where the state is not safe, a child
carries on with one branch alone and the nearest safe ancestor re-runs the shared cells for the
others: slower, never different. Children run one at a time and the files they write (their working
folder and their temporary folder) are restored between siblings, so no submission sees another's
state. A child that dies is retried alone, and a submission whose process dies alone is reported
as failed, as nbgrader reports a dead kernel.

Run as ``python -m lab_core.autograde.forktree PLAN.json`` (see :func:`main`); the parent side is
:mod:`lab_core.autograde.fastpath`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

from jupyter_client.jsonutil import json_default

from lab_core.autograde import sandbox
from lab_core.autograde.cellrun import CellRunner
from lab_core.autograde.zygote import CACHE_ENV, preload

_INET_TABLES = ("tcp", "tcp6", "udp", "udp6")


def _socket_inodes() -> list[int]:
    inodes = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.append(int(target[8:-1]))
    return inodes


def _inet_inodes() -> set[int]:
    found: set[int] = set()
    for table in _INET_TABLES:
        try:
            lines = Path(f"/proc/self/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        found.update(int(line.split()[9]) for line in lines if len(line.split()) > 9)
    return found


def _children() -> list[str]:
    try:
        return Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()
    except OSError:  # no CONFIG_PROC_CHILDREN: look the other way round
        mine = str(os.getpid())
        kids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if stat.rsplit(")", 1)[1].split()[1] == mine:
                    kids.append(entry)
        return kids


def fork_safe(runner: CellRunner, unix_sockets: int) -> str | None:
    """Why forking now would give a child a state a cold kernel would not have, or None if it would not."""
    threads = len(os.listdir("/proc/self/task"))
    if threads > 1:
        return f"{threads} threads"
    if _children():
        return "child processes"
    if runner.pending_tasks():
        return "pending asyncio tasks"
    sockets = _socket_inodes()
    if set(sockets) & _inet_inodes():
        return "open network sockets"
    if len(sockets) > unix_sockets:
        return "open sockets"
    return None


class _Folders:
    """The files a child may change (its working and temporary folders), saved and put back."""

    def __init__(self, folders: list[Path], store: Path) -> None:
        self.folders, self.store = folders, store
        self.count = 0

    def save(self) -> Path:
        self.count += 1
        snap = self.store / f"{os.getpid()}-{self.count}"
        for i, folder in enumerate(self.folders):
            shutil.copytree(folder, snap / str(i), symlinks=True)
        return snap

    def restore(self, snap: Path) -> None:
        for i, folder in enumerate(self.folders):
            # The folder itself stays (it is this process's working folder); its contents are replaced.
            for entry in list(folder.iterdir()):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
            shutil.copytree(snap / str(i), folder, symlinks=True, dirs_exist_ok=True)

    def drop(self, snap: Path) -> None:
        shutil.rmtree(snap, ignore_errors=True)


class Tree:
    """The submissions' code cells and where their outputs go; :meth:`explore` runs them all."""

    def __init__(self, cells: dict[str, list[str]], results: Path, folders: _Folders, timeout: float) -> None:
        self.cells, self.results, self.folders = cells, results, folders
        self.runner = CellRunner(timeout)
        self.unix_sockets = len(_socket_inodes())
        self.records: dict[str, list[list[dict]]] = {name: [] for name in cells}

    def _write(self, name: str) -> None:
        path = self.results / f"{name}.json"
        path.with_suffix(".tmp").write_text(json.dumps(self.records[name], default=json_default))
        path.with_suffix(".tmp").replace(path)

    def _done(self, name: str) -> bool:
        return (self.results / f"{name}.json").exists() or (self.results / f"{name}.failed").exists()

    def _fail(self, name: str, why: str) -> None:
        (self.results / f"{name}.failed").write_text(why)

    def explore(self, group: list[str], depth: int) -> None:
        """Finish every submission in ``group``, whose first ``depth`` cells this process has run.

        Where the state is safe, the process forks before each cell the group shares (a checkpoint
        to come back to) and at each cell where the group divides (one child per branch)."""
        forked_here = True
        while group:
            for name in [n for n in group if depth == len(self.cells[n])]:
                self._write(name)
            group = [n for n in group if depth < len(self.cells[n])]
            if not group:
                return
            branches: dict[str, list[str]] = {}
            for name in group:
                branches.setdefault(self.cells[name][depth], []).append(name)
            worth_forking = len(branches) > 1 or (len(group) > 1 and not forked_here)
            if worth_forking and fork_safe(self.runner, self.unix_sockets) is None:
                for branch in branches.values():
                    self._fork(branch, depth)
                return
            # Not safe to fork (or nothing to share): go on with one branch; whoever forked this
            # process finishes the others from its own, safe, state.
            group = next(iter(branches.values()))
            outputs = self.runner.run(self.cells[group[0]][depth])
            for name in group:
                self.records[name].append(outputs)
            depth += 1
            forked_here = False

    def _fork(self, branch: list[str], depth: int) -> None:
        remaining, alone = list(branch), False
        snap = self.folders.save()
        try:
            while remaining:
                batch = remaining[:1] if alone else remaining
                status = self._child(batch, depth)
                self.folders.restore(snap)
                finished = [n for n in batch if self._done(n)]
                remaining = [n for n in remaining if n not in finished]
                if finished:
                    continue
                if len(batch) == 1:
                    self._fail(batch[0], f"its process ended ({_describe(status)}) before the notebook finished")
                    remaining.remove(batch[0])
                alone = True
        finally:
            self.folders.drop(snap)

    def _child(self, batch: list[str], depth: int) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self.runner.after_fork()
                self.explore(batch, depth)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        return status


def _describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"signal {-code}" if code < 0 else f"exit {code}"


def main(argv: list[str] | None = None) -> int:
    """Run a plan: ``{"folder", "tmp", "results", "preload", "timeout", "cells": {name: [code, ...]}}``.

    Writes ``results/NAME.json`` (per code cell, its outputs) or ``results/NAME.failed`` (why).
    """
    parser = argparse.ArgumentParser(prog="python -m lab_core.autograde.forktree")
    parser.add_argument("plan", help="JSON file describing the run")
    parser.add_argument("--no-sandbox", action="store_true", help="let cells write anywhere")
    args = parser.parse_args(argv)
    plan = json.loads(Path(args.plan).read_text())
    folder, tmp, results = Path(plan["folder"]), Path(plan["tmp"]), Path(plan["results"])
    for problem in preload(plan["preload"]):
        print(f"forktree: preload failed: {problem}", file=sys.stderr)
    os.chdir(folder)
    os.environ.update(TMPDIR=str(tmp), TMP=str(tmp), TEMP=str(tmp))
    tempfile.tempdir = None  # found again from TMPDIR: the preload may have looked it up already
    if sys.path and sys.path[0] != "":
        sys.path[0] = ""  # as in a kernel: the notebook's folder, whatever it is, is importable
    random.seed()
    if not args.no_sandbox:
        sandbox.limit_resources()
        cache = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sysdesign-lab")
        cache.mkdir(parents=True, exist_ok=True)
        sandbox.restrict_writes([folder, tmp, results, Path(plan["store"]), Path("/dev"), cache])
    tree = Tree(plan["cells"], results, _Folders([folder, tmp], Path(plan["store"])), float(plan["timeout"]))
    tree.explore(list(plan["cells"]), 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
