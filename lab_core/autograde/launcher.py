"""The kernel command of warm kernels: ``python launcher.py SOCKET -f CONNECTION_FILE [kernel args]``.

Jupyter's kernel manager starts this small process as if it were the kernel. It asks the zygote
(:mod:`lab_core.autograde.zygote`) to fork a kernel with its own arguments, folder and
environment, passes on the signals the manager sends (SIGINT interrupts a cell on timeout), and
exits when the kernel does, with its status. If the manager kills it, the zygote sees the
connection drop and kills the kernel. It imports nothing heavy, so it starts in milliseconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys


def _read_line(conn: socket.socket, buffer: bytearray) -> dict:
    while b"\n" not in buffer:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("the warm-kernel zygote closed the connection")
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return json.loads(line)


def main(argv: list[str]) -> int:
    """Start one kernel through the zygote at ``argv[0]``; return its exit status."""
    path, kernel_argv = argv[0], argv[1:]
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    conn.sendall(json.dumps({"argv": kernel_argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode() + b"\n")
    buffer = bytearray()
    answer = _read_line(conn, buffer)
    if "pid" not in answer:
        print(f"warm kernel refused: {answer.get('error')}", file=sys.stderr)
        return 1
    pid = answer["pid"]

    def forward(signum: int, _frame: object) -> None:
        # To the kernel's process group, as Jupyter signals a kernel it started itself.
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, forward)
    try:
        status = _read_line(conn, buffer)["exit"]
    except ConnectionError:
        return 1
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
