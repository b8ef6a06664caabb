"""The benchmark's AWS endpoint: moto's ThreadedMotoServer on a free port, in a process of its own.

Run as a child so that moto's request handling does not compete with the handlers under measurement for the
benchmark process's GIL (as real AWS does its work elsewhere)::

    with AwsEndpoint() as endpoint:
        os.environ["AWS_ENDPOINT_URL"] = endpoint.url

The child prints its port on stdout and serves until its stdin closes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Self

ROOT = Path(__file__).resolve().parent.parent


class AwsEndpoint:
    """A moto server child process; ``url`` is its endpoint."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> Self:
        """Start the child and wait until it listens."""
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.aws_endpoint", self.host],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"the moto server did not start (said {line!r})")
        self.url = f"http://{self.host}:{line}"
        return self

    def stop(self) -> None:
        """Close the child's stdin (it exits) and wait for it."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main() -> None:
    """Child: serve on a free port, print it, exit when stdin closes."""
    import logging

    from moto.server import ThreadedMotoServer

    from local_stack.moto_dynamodb import make_atomic

    make_atomic()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address=sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
