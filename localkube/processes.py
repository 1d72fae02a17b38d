"""The child processes of the demo, the benchmarks, the e2e tests and the control plane.

Each runs in its own session (so its process group is its own), writes stdout and
stderr to one log file, can be waited on for a line it prints when it is ready, and
is stopped with its whole group: SIGTERM, a grace period, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self


class ProcessError(RuntimeError):
    """A process exited, or stayed silent, before it was ready; the message has its log."""


def wait_until(what: str, probe: Callable[[], Any], timeout: float, interval: float,
               error: type[Exception] = TimeoutError) -> Any:
    """Poll `probe` until it returns something truthy (returned): waits for an
    observable outcome, never a fixed time. `error` says what a timeout is to the
    caller (a failed assertion in a test, a failed run in a benchmark)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise error(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Process:
    """A started process and its log; `Process.spawn(cmd, log)` starts one."""

    proc: subprocess.Popen[Any]
    log: Path

    @classmethod
    def spawn(cls, cmd: Sequence[str], log: Path, *, env: Mapping[str, str] | None = None,
              append: bool = False) -> Self:
        """Start `cmd` in a new session, stdout and stderr to `log` (appended to with
        `append`, else truncated)."""
        with open(log, "ab" if append else "wb") as out:
            proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env)
        return cls(proc=proc, log=log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def program(self) -> str:
        """The command's file name (`etcd`, `stemedb-sim`, ...)."""
        args = self.proc.args
        first = args[0] if isinstance(args, list | tuple) else args
        return Path(str(first)).name

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def poll(self) -> int | None:
        return self.proc.poll()

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_line(self, prefix: str, timeout: float = 120.0) -> str:
        """The rest of the first complete log line that starts with `prefix`; raises
        ProcessError if the process exits first or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc.poll() is not None
            text = self.logs()
            for line in text[: text.rfind("\n") + 1].splitlines():
                if line.startswith(prefix):
                    return line[len(prefix):]
            if exited:
                raise ProcessError(f"{self.program} exited with {self.proc.returncode} "
                                   f"before printing {prefix!r}:\n{log_tail(self.log)}")
            if time.monotonic() > deadline:
                raise ProcessError(f"{self.program} printed no {prefix!r} line in "
                                   f"{timeout:.0f}s:\n{log_tail(self.log)}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """Signal the process group; SIGKILL it if the process outlives `timeout`."""
        stop_all([self], sig, timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def stop_all(procs: Iterable[Process], sig: int = signal.SIGTERM,
             timeout: float = 20.0) -> None:
    """Signal the group of each process still running, in the given order, then wait
    for each in turn; the group of one still running after `timeout` gets SIGKILL."""
    running = [p for p in procs if p.proc.poll() is None]
    for p in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.proc.pid, sig)
    for p in running:
        try:
            p.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.proc.pid, signal.SIGKILL)
            p.proc.wait()
