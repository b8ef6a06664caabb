"""A server in a child process on a free loopback port: the child writes its port as the first line of its stdout
and serves until its stdin closes (so it also ends should its parent die first). The tests' dynalite
(``tests/support/dynalite.py``) and the benchmark's moto server (``bench/aws_endpoint.py``) run this way::

    child = PortChild([node, "-e", LAUNCHER, module], name="dynalite")
    port = child.start()              # waits for the first line; PortChildError when it is not a port
    child.exchange("ledger")          # one line to the child, its one-line answer (if it speaks that way)
    child.stop()                      # closes stdin, waits, kills it after ``stop_timeout_s``
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path


class PortChildError(RuntimeError):
    """The child did not start (it exited, or its first line was not a port), or is not running."""


class PortChild:
    """A child process speaking text lines on stdin/stdout; ``start`` answers the port it listens on."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        cwd: Path | None = None,
        capture_stderr: bool = False,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.name = name
        self._argv = list(argv)
        self._cwd = cwd
        self._stderr = subprocess.PIPE if capture_stderr else None
        self._stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> int:
        """Start the child and wait for its first line: the port it listens on."""
        self._process = subprocess.Popen(  # noqa: S603 - argv from our own callers (node, our interpreter)
            self._argv,
            cwd=self._cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise PortChildError(f"{self.name} did not start (said {line!r})")
        return int(line)

    def exchange(self, line: str) -> str:
        """Write one line to the child and read its one-line answer."""
        process = self._process
        if process is None or process.stdin is None or process.stdout is None:
            raise PortChildError(f"{self.name} is not running")
        process.stdin.write(f"{line}\n")
        process.stdin.flush()
        return process.stdout.readline()

    def stop(self) -> None:
        """Close the child's stdin (it exits) and wait for it; kill it if it has not exited in time."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=self._stop_timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
