"""The benchmark's AWS endpoint: moto's ThreadedMotoServer on a free port, in a process of its own.

Run as a child so that moto's request handling does not compete with the handlers under measurement for the
benchmark process's GIL (as real AWS does its work elsewhere)::

    with AwsEndpoint() as endpoint:
        os.environ["AWS_ENDPOINT_URL"] = endpoint.url

The child prints its port on stdout and serves until its stdin closes. It also keeps a **ledger of DynamoDB
capacity** (``DynamoDBLedger``): the read and write request units each request consumed, computed on the service's
side of the boundary as DynamoDB bills them, from the sizes of the items before and after each write
(``bench.dynamodb_units``)::

    endpoint.ledger()     # {"UpdateItem": {"requests": 30, "items": 30, "wru": 30.0, ...}, ...}; and resets it

Why there: a write is billed on the larger of the item before and after it, and a failed conditional write on the
item as it stands; neither is in the request, and reading the table from the client would add round trips to the
handlers' measured time. The ledger reads moto's table itself, under one lock, around each request.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bench.dynamodb_units import item_size, read_units, write_units
from local_stack.port_child import PortChild

ROOT = Path(__file__).resolve().parent.parent


class AwsEndpoint:
    """A moto server child process; ``url`` is its endpoint."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.url = ""
        self._child = PortChild([sys.executable, "-m", "bench.aws_endpoint", host], name="the moto server", cwd=ROOT)

    def start(self) -> Self:
        """Start the child and wait until it listens."""
        self.url = f"http://{self.host}:{self._child.start()}"
        return self

    def ledger(self) -> dict[str, dict[str, float]]:
        """The DynamoDB capacity consumed since the last call, per operation (see ``DynamoDBLedger.take``)."""
        ledger: dict[str, dict[str, float]] = json.loads(self._child.exchange("ledger"))
        return ledger

    def stop(self) -> None:
        """Close the child's stdin (it exits) and wait for it."""
        self._child.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# -- the DynamoDB ledger (runs where moto runs) -------------------------------------------------------------------

Item = dict[str, Any]
_WRITES = ("put_item", "update_item", "delete_item", "batch_write_item", "transact_write_items")
_READS = ("get_item", "batch_get_item", "query", "scan", "transact_get_items")


class DynamoDBLedger:
    """Request units consumed per DynamoDB operation, in the process that runs moto.

        ``install()`` wraps moto's DynamoDB request handlers (``moto.dynamodb.responses.DynamoHandler``): each write
        reads the items it addresses before and after (moto's backend, not counted), each read sizes the full items it
        read. Per operation: ``requests``, ``items`` (item writes or reads), ``wru`` (``wru_failed`` of them by
    conditional writes that failed), ``rru``, ``failed_conditions``,
        ``stored_bytes`` (item bytes added minus removed) and ``largest_item`` (bytes, the largest item written).
        A Query or Scan is sized from the items it returns (projections make that an underestimate).
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()  # one request's before/after reads and its write are not interleaved
        self._entries: dict[str, dict[str, float]] = {}

    def take(self) -> dict[str, dict[str, float]]:
        """The entries since the last ``take``; resets them."""
        with self._lock:
            entries, self._entries = self._entries, {}
            return entries

    def add(self, operation: str, **amounts: float) -> None:
        """Add amounts to an operation's entry (``largest_item`` keeps the maximum)."""
        with self._lock:
            entry = self._entries.setdefault(
                operation,
                {
                    "requests": 0,
                    "items": 0,
                    "wru": 0.0,
                    "wru_failed": 0.0,
                    "rru": 0.0,
                    "failed_conditions": 0,
                    "stored_bytes": 0,
                    "largest_item": 0,
                },
            )
            for name, amount in amounts.items():
                entry[name] = max(entry[name], amount) if name == "largest_item" else entry[name] + amount

    # -- wrapping moto --------------------------------------------------------------------------------------

    def install(self) -> None:
        """Wrap moto's DynamoDB handlers (once per process)."""
        from moto.dynamodb.responses import DynamoHandler

        for name in (*_WRITES, *_READS):
            method = getattr(DynamoHandler, name)
            if not getattr(method, "_ledger", False):
                setattr(DynamoHandler, name, self._wrap(name, method))

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        measure = getattr(self, f"_{name}")

        @functools.wraps(method)
        def wrapped(handler: Any) -> Any:
            with self._lock:
                return measure(handler, lambda: method(handler))

        wrapped._ledger = True  # type: ignore[attr-defined]
        return wrapped

    @staticmethod
    def _item(handler: Any, table_name: str, key_or_item: Item) -> Item:
        backend = handler.dynamodb_backend
        table = backend.get_table(table_name)
        key = {table.hash_key_attr: key_or_item[table.hash_key_attr]}
        if table.range_key_attr:
            key[table.range_key_attr] = key_or_item[table.range_key_attr]
        found = backend.get_item(table_name, key)
        return found.to_json()["Attributes"] if found else {}

    def _writes(
        self, operation: str, handler: Any, targets: list[tuple[str, Item]], call: Callable[[], Any], factor: int = 1
    ) -> Any:
        """Run a write of ``targets`` (table, key or item); bill each item on its larger version."""
        before = [item_size(self._item(handler, table, key)) for table, key in targets]
        try:
            result = call()
        except Exception as exc:
            if type(exc).__name__ in ("ConditionalCheckFailed", "TransactionCanceledException"):
                units = sum(write_units(size, 0) for size in before) * factor
                self.add(operation, requests=1, items=len(targets), wru=units, wru_failed=units, failed_conditions=1)
            raise
        after = [item_size(self._item(handler, table, key)) for table, key in targets]
        units = sum(write_units(old, new) for old, new in zip(before, after, strict=True)) * factor
        self.add(
            operation,
            requests=1,
            items=len(targets),
            wru=units,
            stored_bytes=sum(after) - sum(before),
            largest_item=max(after, default=0),
        )
        return result

    def _put_item(self, handler: Any, call: Callable[[], Any]) -> Any:
        return self._writes("PutItem", handler, [(handler.body["TableName"], handler.body["Item"])], call)

    def _update_item(self, handler: Any, call: Callable[[], Any]) -> Any:
        return self._writes("UpdateItem", handler, [(handler.body["TableName"], handler.body["Key"])], call)

    def _delete_item(self, handler: Any, call: Callable[[], Any]) -> Any:
        return self._writes("DeleteItem", handler, [(handler.body["TableName"], handler.body["Key"])], call)

    def _batch_write_item(self, handler: Any, call: Callable[[], Any]) -> Any:
        targets = [
            (table, request.get("PutRequest", {}).get("Item") or request["DeleteRequest"]["Key"])
            for table, requests in handler.body["RequestItems"].items()
            for request in requests
        ]
        return self._writes("BatchWriteItem", handler, targets, call)

    def _transact_write_items(self, handler: Any, call: Callable[[], Any]) -> Any:
        targets = []
        for action in handler.body["TransactItems"]:
            kind, spec = next(iter(action.items()))
            targets.append((spec["TableName"], spec["Item"] if kind == "Put" else spec["Key"]))
        return self._writes("TransactWriteItems", handler, targets, call, factor=2)

    def _reads(
        self, operation: str, handler: Any, keys: list[tuple[str, Item, bool]], call: Callable[[], Any], factor: int = 1
    ) -> Any:
        """Run a read of ``keys`` (table, key, consistent); each item billed on its full size."""
        result = call()
        units = sum(read_units(item_size(self._item(handler, t, k)), consistent=c) for t, k, c in keys) * factor
        self.add(operation, requests=1, items=len(keys), rru=units)
        return result

    def _get_item(self, handler: Any, call: Callable[[], Any]) -> Any:
        body = handler.body
        return self._reads(
            "GetItem", handler, [(body["TableName"], body["Key"], bool(body.get("ConsistentRead")))], call
        )

    def _batch_get_item(self, handler: Any, call: Callable[[], Any]) -> Any:
        keys = [
            (table, key, bool(spec.get("ConsistentRead")))
            for table, spec in handler.body["RequestItems"].items()
            for key in spec["Keys"]
        ]
        return self._reads("BatchGetItem", handler, keys, call)

    def _transact_get_items(self, handler: Any, call: Callable[[], Any]) -> Any:
        keys = [(a["Get"]["TableName"], a["Get"]["Key"], True) for a in handler.body["TransactItems"]]
        return self._reads("TransactGetItems", handler, keys, call, factor=2)

    def _scanned(self, operation: str, handler: Any, call: Callable[[], Any]) -> Any:
        result = call()
        items = getattr(result, "result", {}).get("Items", [])
        consistent = bool(handler.body.get("ConsistentRead"))
        self.add(
            operation,
            requests=1,
            items=len(items),
            rru=read_units(sum(item_size(i) for i in items), consistent=consistent),
        )
        return result

    def _query(self, handler: Any, call: Callable[[], Any]) -> Any:
        return self._scanned("Query", handler, call)

    def _scan(self, handler: Any, call: Callable[[], Any]) -> Any:
        return self._scanned("Scan", handler, call)


def main() -> None:
    """Child: serve on a free port, print it; answer ``ledger`` lines on stdin; exit when stdin closes."""
    import logging

    from moto.server import ThreadedMotoServer

    from local_stack.moto_dynamodb import make_atomic
    from local_stack.strict_sqs import make_strict

    make_atomic()
    make_strict()
    ledger = DynamoDBLedger()
    ledger.install()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address=sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    for line in sys.stdin:
        if line.strip() == "ledger":
            print(json.dumps(ledger.take()), flush=True)
    server.stop()


if __name__ == "__main__":
    main()
