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
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from local_stack.port_child import PortChild, PortChildError

ROOT = Path(__file__).resolve().parents[2]
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

    def __init__(self) -> None:
        self._child: PortChild | None = None
        self.endpoint = ""

    def __enter__(self) -> DynaliteServer:
        node = shutil.which("node")
        if node is None or not (MODULE / "package.json").is_file():
            raise DynaliteError(f"dynalite is not installed: {INSTALL_HINT}")
        self._child = PortChild(
            [node, "-e", _LAUNCHER, str(MODULE)], name="dynalite", capture_stderr=True, stop_timeout_s=5
        )
        try:
            port = self._child.start()
        except PortChildError as error:
            raise DynaliteError(f"{error}; {INSTALL_HINT}") from error
        self.endpoint = f"http://127.0.0.1:{port}"
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.stop()


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
