"""Running notebook cells in this process the way an ipykernel runs them, outputs as nbformat records.

What nbgrader scores is a cell's outputs: an ``error``, any ``stderr`` stream, or one
``execute_result``. :class:`CellRunner` produces those outputs as a kernel would for the same code:
IPython's own shell transforms and runs each cell (magics, top-level ``await``, tracebacks), an
asyncio loop is running while a cell runs (as in ipykernel, so ``asyncio.run`` fails there too),
Python-level and file-descriptor-level writes to stdout and stderr become stream outputs, the
display hook becomes ``execute_result``, ``display()`` becomes ``display_data``, ``input()``
raises as under ``nbgrader`` (no stdin), and a cell past its timeout is interrupted.

It differs from a kernel where no score can depend on it: there is no Jupyter connection, so
libraries that look for one (``tqdm.auto``, Panel's comms) take their console path.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import signal
import sys
import tempfile
from typing import Any

from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher
from IPython.core.error import StdinNotImplementedError
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

Output = dict[str, Any]


class _Outputs:
    """The outputs of the cell now running, in the order they were produced."""

    def __init__(self) -> None:
        self.items: list[Output] = []
        self.clear_pending = False

    def add(self, output: Output) -> None:
        if self.clear_pending:
            self.items.clear()
            self.clear_pending = False
        last = self.items[-1] if self.items else None
        if output["output_type"] == "stream" and last and last["output_type"] == "stream":
            if last["name"] == output["name"]:
                last["text"] += output["text"]
                return
        self.items.append(output)

    def clear(self, wait: bool) -> None:
        if wait:
            self.clear_pending = True
        else:
            self.items.clear()


class _Stream:
    """``sys.stdout`` / ``sys.stderr`` while a cell runs: text becomes a stream output."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, outputs: _Outputs, name: str) -> None:
        self.outputs, self.name = outputs, name

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            self.outputs.add({"output_type": "stream", "name": self.name, "text": text})
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return 1 if self.name == "stdout" else 2

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False


class _Publisher(DisplayPublisher):
    """``display()`` and ``clear_output()`` as a kernel publishes them."""

    outputs: _Outputs | None = None

    def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs) -> None:
        if self.outputs is not None and not update:
            self.outputs.add({"output_type": "display_data", "data": dict(data), "metadata": dict(metadata or {})})

    def clear_output(self, wait: bool = False) -> None:
        if self.outputs is not None:
            self.outputs.clear(wait)


class _Hook(DisplayHook):
    """The value of a cell's last expression, as an ``execute_result``."""

    outputs: _Outputs | None = None

    def write_output_prompt(self) -> None:
        pass

    def write_format_data(self, format_dict, md_dict=None) -> None:
        if self.outputs is not None:
            self.outputs.add(
                {
                    "output_type": "execute_result",
                    "execution_count": self.shell.execution_count,
                    "data": dict(format_dict),
                    "metadata": dict(md_dict or {}),
                }
            )

    def finish_displayhook(self) -> None:
        pass


class _Shell(InteractiveShell):
    """IPython's shell with tracebacks recorded as ``error`` outputs, as ipykernel's shell sends them."""

    outputs: _Outputs | None = None

    def _showtraceback(self, etype, evalue, stb) -> None:
        if self.outputs is None:
            return super()._showtraceback(etype, evalue, stb)
        self.outputs.add(
            {"output_type": "error", "ename": str(etype.__name__), "evalue": str(evalue), "traceback": list(stb)}
        )


def _no_input(*args, **kwargs):
    raise StdinNotImplementedError("raw_input was called, but this frontend does not support input requests.")


class CellRunner:
    """One notebook's namespace and event loop; :meth:`run` executes a cell and returns its outputs."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        # The kernel's matplotlib backend, so figures become display outputs rather than windows.
        os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        config = Config()
        config.HistoryManager.enabled = False  # its saving thread would make the process unsafe to fork
        config.InteractiveShell.colors = "nocolor"
        self.shell = _Shell.instance(config=config, display_pub_class=_Publisher, displayhook_class=_Hook)
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        builtins.input = _no_input

    def after_fork(self) -> None:
        """In a forked child: give the loop an epoll set of its own (the parent's is shared across fork)."""
        old = self.loop._selector  # noqa: SLF001 (asyncio keeps no public way to re-create it)
        new = type(old)()
        for key in old.get_map().values():
            new.register(key.fileobj, key.events, key.data)
        self.loop._selector = new  # noqa: SLF001

    def pending_tasks(self) -> int:
        """Tasks still scheduled on the notebook's loop (a forked child would resume them too)."""
        return len(asyncio.all_tasks(self.loop))

    async def _execute(self, code: str):
        shell = self.shell
        try:
            transformed, pre_exc = shell.transform_cell(code), None
        except Exception:
            transformed, pre_exc = code, sys.exc_info()
        if shell.should_run_async(code, transformed_cell=transformed, preprocessing_exc_tuple=pre_exc):
            try:
                return await shell.run_cell_async(
                    code,
                    store_history=True,
                    silent=False,
                    transformed_cell=transformed,
                    preprocessing_exc_tuple=pre_exc,
                )
            finally:
                shell.events.trigger("post_execute")
        return shell.run_cell(code, store_history=True, silent=False)

    def run(self, code: str) -> list[Output]:
        """Execute ``code`` as the next cell; its outputs (stream, display_data, execute_result, error)."""
        outputs = _Outputs()
        shell = self.shell
        shell.outputs = shell.display_pub.outputs = shell.displayhook.outputs = outputs
        saved = sys.stdout, sys.stderr
        with tempfile.TemporaryFile() as fd_out, tempfile.TemporaryFile() as fd_err:
            saved_fds = os.dup(1), os.dup(2)
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(fd_out.fileno(), 1)
            os.dup2(fd_err.fileno(), 2)
            sys.stdout, sys.stderr = _Stream(outputs, "stdout"), _Stream(outputs, "stderr")
            previous = signal.signal(signal.SIGALRM, self._on_timeout)
            signal.setitimer(signal.ITIMER_REAL, self.timeout)
            try:
                self.loop.run_until_complete(self._execute(code))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
                sys.stdout, sys.stderr = saved
                os.dup2(saved_fds[0], 1)
                os.dup2(saved_fds[1], 2)
                os.close(saved_fds[0])
                os.close(saved_fds[1])
                shell.outputs = shell.display_pub.outputs = shell.displayhook.outputs = None
            for handle, name in ((fd_out, "stdout"), (fd_err, "stderr")):
                handle.seek(0)
                text = handle.read().decode("utf-8", errors="replace")
                if text:
                    # Written below Python (C extensions, child processes): a kernel reports it too.
                    outputs.add({"output_type": "stream", "name": name, "text": text})
        return self._ordered(outputs.items)

    @staticmethod
    def _ordered(items: list[Output]) -> list[Output]:
        # A kernel sends a cell's execute_result when the cell's code has finished, so it comes
        # after any stream written by the code (descriptor-level text is only read at the end here).
        results = [o for o in items if o["output_type"] == "execute_result"]
        return [o for o in items if o["output_type"] != "execute_result"] + results

    def _on_timeout(self, signum, frame) -> None:
        raise KeyboardInterrupt(f"the cell ran past its {self.timeout:g} s timeout")
