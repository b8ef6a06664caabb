"""The table's shared parts: item keys, attribute readers, and DynamoDB's errors as ``DedupUnavailableError``.

One DynamoDB table holds three kinds of items, each written by one module: the facts deliveries claim
(``claims``), a visitor's erasure (``visitor_facts``) and the workspaces' hourly health (``health_ledger``).
This module is what they share::

    key(slot)                                   # {"pk": {"S": "WS#demo#V#v-1"}, "sk": {"S": "ASSIGN#t-1"}}
    number(item, "attempts")                    # 0 when absent
    try:
        client.update_item(...)
    except TABLE_ERRORS as exc:
        if not condition_failed(exc):
            raise unavailable(exc) from exc     # DedupUnavailableError("ProvisionedThroughputExceededException")
        old = failed_on(client, table, key, exc)  # the item the condition failed on

A fact's item: ``pk = WS#<workspace>#V#<visitor>``, ``sk`` = the fact's key (a fact id over
``MAX_KEY_NAME_BYTES`` is replaced by ``HASHED_MARKER`` and its SHA-256, the id kept in ``fact_name``; the marker
starts with a control character no valid id holds, so a literal id ``sha256:<hex>`` never shares a hashed id's
item), ``status`` (PENDING | SENT), ``message_id`` (written with SENT), ``generation`` (the visitor's generation
it was delivered in), ``content`` (JSON), ``first_attempt_at``, ``delivered_at``, ``attempts``, ``lease_until``,
``claim_token``, ``updated_at`` and ``expires_at`` (the TTL attribute). The visitor's IDENTIFY item also holds its
erasure: after an erase it is a *tombstone* ``{pk, sk, erased_at (ms), generation, expires_at}`` (no status, no
content), kept ``ERASURE_TOMBSTONE_SECONDS``.

Keys hashed before the marker changed (``KIND#sha256:<hex>``, with ``fact_name``) stay readable (``fact_key``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final, TypeGuard

from botocore.exceptions import BotoCoreError, ClientError

from .errors import UnavailableError, error_code
from .facts import Fact, Slot

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Item = dict[str, AttributeValueTypeDef]
else:
    DynamoDBClient = Any
    Item = dict[str, Any]

PENDING: Final = "PENDING"
SENT: Final = "SENT"
MAX_KEY_NAME_BYTES = 200  # a fact id longer than this (UTF-8) is hashed inside the sort key (limit 1,024 bytes)
# Marks a hashed fact id in a sort key. It starts with U+001F, a control character no valid id can hold (ids are
# refused with any of U+0000-U+001F and U+007F-U+009F), so no literal id ("sha256:…" included) shares its key.
HASHED_MARKER: Final = "\x1fsha256:"
ERASURE_TOMBSTONE_SECONDS = 21 * 86_400  # the queue keeps an event 14 days, plus a retry horizon before and after
# What a table request may raise: the service's answer, botocore's own failures, the network.
TABLE_ERRORS: Final = (ClientError, BotoCoreError, OSError)
_CONDITION_FAILED: Final = "ConditionalCheckFailedException"


class DedupUnavailableError(UnavailableError):
    """DynamoDB could not be reached or refused the request (throttled, ...): retry later."""


# -- keys ---------------------------------------------------------------------------------------------------


def partition_key(workspace_id: str, visitor_id: str) -> str:
    """The partition key of every fact of one visitor."""
    return f"WS#{workspace_id}#V#{visitor_id}"


def sort_key(fact: Fact) -> str:
    """The fact's key, with an id too long for a DynamoDB key replaced by ``HASHED_MARKER`` and its SHA-256::

    sort_key(Fact(FactKind.ASSIGNMENT, "t-1"))      # "ASSIGN#t-1"
    sort_key(Fact(FactKind.ASSIGNMENT, "é" * 101))  # "ASSIGN#\x1fsha256:<64 hex>" (the id is kept in fact_name)
    """
    if len(fact.name.encode("utf-8")) <= MAX_KEY_NAME_BYTES:
        return fact.key
    return f"{fact.kind.value}#{HASHED_MARKER}{hashlib.sha256(fact.name.encode('utf-8')).hexdigest()}"


def key(slot: Slot) -> Item:
    """The item key of a slot's fact."""
    return {"pk": {"S": partition_key(slot.workspace_id, slot.visitor_id)}, "sk": {"S": sort_key(slot.fact)}}


def fact_key(item: Mapping[str, Any]) -> str:
    """The fact key of an item: its sort key, with the original id (``fact_name``, on hashed keys of either
    marker) in place of a hash."""
    sort = str(item["sk"]["S"])
    name = item.get("fact_name", {}).get("S")
    return sort if name is None else f"{sort.rsplit('#', 1)[0]}#{name}"


# -- attributes ---------------------------------------------------------------------------------------------


def number(item: Mapping[str, Any], name: str) -> int:
    """A number attribute, 0 when absent."""
    return int(item.get(name, {}).get("N", "0"))


def content(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """The fact's recorded content (a JSON object), None when it holds none."""
    raw = item.get("content", {}).get("S")
    if raw is None:
        return None
    recorded = json.loads(raw)
    return recorded if isinstance(recorded, dict) else None


# -- errors -------------------------------------------------------------------------------------------------


def condition_failed(exc: Exception) -> TypeGuard[ClientError]:
    """Whether a write was refused by its condition (the item is there, and not as the condition wants)."""
    return isinstance(exc, ClientError) and error_code(exc) == _CONDITION_FAILED


def unavailable(exc: Exception) -> DedupUnavailableError:
    """The table failure a caller sees, named by the error's code (raise it ``from exc``)."""
    return DedupUnavailableError(error_code(exc))


def failed_on(client: DynamoDBClient, table: str, item_key: Item, failed: ClientError) -> Item:
    """The item a write's condition failed on: the one the failure carries (``ReturnValuesOnConditionCheckFailure``
    ALL_OLD), else a consistent GetItem (an engine may leave it out; the failure never says "absent"). ``{}``
    when the item is gone since. Raises what GetItem raises.

    Every condition written to the table holds on an absent item, so a failure always means the item was there.
    """
    response: Any = failed.response
    if "Item" in response:
        return dict(response["Item"] or {})
    answer = client.get_item(TableName=table, Key=item_key, ConsistentRead=True)
    return dict(answer.get("Item") or {})


# -- concurrency --------------------------------------------------------------------------------------------


class RequestPool:
    """Runs table requests concurrently on threads started at first need and kept across invocations::

    pool = RequestPool(16, "erase")
    pool.map(delete, keys)  # [result, ...] in the order of keys; one item runs on the caller's thread
    """

    def __init__(self, threads: int, name: str) -> None:
        self._threads = threads
        self._name = name
        self._pool: ThreadPoolExecutor | None = None

    def map[T, R](self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``fn`` over ``items``, concurrently."""
        if len(items) <= 1:
            return [fn(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix=self._name)
        return list(self._pool.map(fn, items))
