"""dynalite: a second DynamoDB engine for the tests (an independent implementation of DynamoDB's API on LevelDB, in
memory here), installed by ``make node-tools`` into ``node_tools/node_modules``.

The store's component tests and histories run on moto and on dynalite: two implementations disagree where one of
them (or the product) leans on a behaviour the other lacks. One server per test session, on a free port::

    with DynaliteServer() as server:              # node, tables ACTIVE at once (no CREATING/DELETING delay)
        client = boto3.client("dynamodb", endpoint_url=server.endpoint)
        wait_for_table(client, "t", present=True)

The functions reach it as boto3 does any service endpoint: ``AWS_ENDPOINT_URL_DYNAMODB`` (moto's ``mock_aws``
lets requests to a URL that is not AWS's through, so the other services stay on moto).

What dynalite lacks, as found (each is a difference the store must survive or the tests must allow for):
``UpdateTimeToLive`` is an unknown operation (its TTL never deletes anyway, like DynamoDB's days of lag), and a
failed condition comes back without the item even when ``ReturnValuesOnConditionCheckFailure=ALL_OLD`` asks for it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "node_tools" / "node_modules" / "dynalite"
INSTALL_HINT = "run `make node-tools` (node >= 20 and npm) to install dynalite into node_tools/node_modules"

# Listen on 127.0.0.1, port 0 (the CLI takes 0 as "the default, 4567"), and say the port on stdout.
_LAUNCHER = """
const dynalite = require(process.argv[1]);
const server = dynalite({createTableMs: 0, deleteTableMs: 0, updateTableMs: 0});
server.listen(0, "127.0.0.1", () => process.stdout.write(`${server.address().port}\\n`));
process.stdin.on("end", () => process.exit(0)).resume();
"""


class DynaliteError(RuntimeError):
    """dynalite is not installed, or did not start."""


class DynaliteServer:
    """A dynalite process on a free loopback port, in memory; it ends with the context (or when its stdin closes,
    should this process die first)."""

    def __init__(self, start_timeout_s: float = 15.0) -> None:
        self._timeout = start_timeout_s
        self._process: subprocess.Popen[str] | None = None
        self.endpoint = ""

    def __enter__(self) -> DynaliteServer:
        node = shutil.which("node")
        if node is None or not (MODULE / "package.json").is_file():
            raise DynaliteError(f"dynalite is not installed: {INSTALL_HINT}")
        self._process = subprocess.Popen(
            [node, "-e", _LAUNCHER, str(MODULE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.isdigit():
            self.__exit__(None, None, None)
            raise DynaliteError(f"dynalite did not start ({line!r}); {INSTALL_HINT}")
        self.endpoint = f"http://127.0.0.1:{line}"
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def wait_for_table(client: Any, name: str, *, present: bool, timeout_s: float = 10.0) -> None:
    """Until the table is ACTIVE (``present``) or gone: dynalite answers CreateTable and DeleteTable at once and
    settles the table a moment later, even with no delay configured."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status = client.describe_table(TableName=name)["Table"]["TableStatus"]
        except client.exceptions.ResourceNotFoundException:
            status = None
        if (status == "ACTIVE") if present else (status is None):
            return
        if time.monotonic() > deadline:
            raise DynaliteError(f"table {name} still {status} after {timeout_s} s")
        time.sleep(0.01)
