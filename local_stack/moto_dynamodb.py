"""moto's DynamoDB, made atomic per item operation as the real service is.

moto evaluates an UpdateItem's condition, then creates the item empty, then applies the update, in separate
steps with no lock: two concurrent conditional claims of one fact can both win, and a concurrent read can see an
item without its attributes. Real DynamoDB applies each conditional write atomically. Every process that runs
moto for this project (the local stack, the component tests, the benchmark's endpoint) calls::

    make_atomic()      # idempotent: one lock around each item operation of moto's DynamoDB backend

Batch operations stay what they are on AWS: a sequence of item operations, each atomic on its own.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb.models import DynamoDBBackend

_LOCK = threading.RLock()
_OPERATIONS = ("put_item", "get_item", "update_item", "delete_item", "query", "scan", "transact_write_items")


def make_atomic() -> None:
    """Serialize moto's DynamoDB item operations in this process (patches its backend class once)."""
    for name in _OPERATIONS:
        method = getattr(DynamoDBBackend, name)
        if getattr(method, "_atomic", False):
            continue
        setattr(DynamoDBBackend, name, _locked(method))


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return method(*args, **kwargs)

    locked._atomic = True  # type: ignore[attr-defined]
    return locked
