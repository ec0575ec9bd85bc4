"""Limits on one graded kernel: where it may write, whom it may signal, how much it may print.

A submission runs as the grader's own user (often root on a grading box), so file permissions do
not protect the course folder, the gradebook or the other submissions. Linux Landlock (5.13+)
lets an unprivileged process give up rights for itself and its children: the kernel keeps
reading everything (the venv, the lab's data) but may write only below its submission folder
and a private temporary folder, and (Landlock ABI 6+) may not signal processes outside its own
sandbox, such as the grader or another submission's kernel. Where Landlock is missing the
sandbox says so and grading goes on without it.
"""

from __future__ import annotations

import ctypes
import os
import resource
import sys
from collections.abc import Iterable

# Landlock's system calls have the same numbers on every architecture (added after the unification).
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Write-side file-system rights by the ABI version that introduced them. Reading and executing
# are not handled, so they stay allowed everywhere.
_WRITE_RIGHTS = {
    1: (1 << 1) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12),
    2: 1 << 13,  # REFER: rename or link across folders
    3: 1 << 14,  # TRUNCATE
}
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1

DEFAULT_OUTPUT_LIMIT = 8 * 2**20
DEFAULT_FILE_SIZE_LIMIT = 2 * 2**30


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class OutputLimitExceeded(RuntimeError):
    """Raised in the cell that printed more than the grader keeps."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The running kernel's Landlock ABI version, 0 where Landlock is unavailable."""
    if not sys.platform.startswith("linux"):
        return 0
    version = _libc().syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(0, int(version))


def restrict_writes(writable: Iterable[str | os.PathLike[str]]) -> int:
    """Allow this process and its future threads and children to write only below ``writable``
    and, with ABI 6+, to signal only processes inside the same sandbox. Returns the ABI used (0: none)."""
    abi = landlock_abi()
    if abi == 0:
        return 0
    libc = _libc()
    rights = 0
    for version, bits in _WRITE_RIGHTS.items():
        if abi >= version:
            rights |= bits
    attr = _RulesetAttr(rights, 0, _SCOPE_SIGNAL | _SCOPE_ABSTRACT_UNIX_SOCKET if abi >= 6 else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        for folder in writable:
            fd = os.open(folder, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneathAttr(rights, fd)
                if (
                    libc.syscall(
                        _ADD_RULE,
                        ctypes.c_int(ruleset),
                        ctypes.c_int(_RULE_PATH_BENEATH),
                        ctypes.byref(rule),
                        ctypes.c_uint32(0),
                    )
                    < 0
                ):
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule {folder}: {os.strerror(ctypes.get_errno())}")
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.syscall(_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) < 0:
            raise OSError(ctypes.get_errno(), f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)
    return abi


def limit_resources(file_size: int = DEFAULT_FILE_SIZE_LIMIT) -> None:
    """No file larger than ``file_size`` bytes (an ``OSError`` in the cell that writes it), no core dumps."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def cap_output(shell: object, streams: Iterable[object], limit: int = DEFAULT_OUTPUT_LIMIT) -> None:
    """Make a cell that writes more than ``limit`` characters to ``streams`` raise
    ``OutputLimitExceeded`` (so a graded cell scores zero) instead of filling the grader's memory."""
    written = [0]

    def reset(*_: object) -> None:
        written[0] = 0

    shell.events.register("pre_run_cell", reset)  # type: ignore[attr-defined]
    for stream in streams:
        original = stream.write  # type: ignore[attr-defined]

        def write(text: str, _original=original) -> int:
            written[0] += len(text)
            if written[0] > limit:
                raise OutputLimitExceeded(f"this cell printed more than {limit // 2**20} MiB; the grader stops it here")
            return _original(text)

        stream.write = write  # type: ignore[attr-defined]
