"""moto's DynamoDB, made to behave as the real service does where the product depends on it.

Every process that runs moto for this project (the local stack, the component tests) calls::

    make_strict()      # idempotent; make_atomic() alone is what the benchmark's endpoint uses

**Atomic item operations** (``make_atomic``). moto evaluates an UpdateItem's condition, then creates the item empty,
then applies the update, in separate steps with no lock: two concurrent conditional claims of one fact can both
win, and a concurrent read can see an item without its attributes. Real DynamoDB applies each conditional write
atomically; here one lock is held around each item operation. Batch operations stay what they are on AWS: a
sequence of item operations, each atomic on its own.

**Batch limits** (always on after ``make_strict``). BatchWriteItem takes 1 to 25 requests per table and 25 in all,
never two requests for one item (puts and deletes alike, compared by key); BatchGetItem at most 100 keys per table
and in all, without duplicates. Anything else is refused whole with AWS's ValidationException messages.

**Stale reads** (off until asked for). An eventually consistent read (GetItem, BatchGetItem, Query and Scan
without ``ConsistentRead``) may answer an item as it was up to ``lag_ms`` ago, absent if it did not exist then:
with ``probability``, per partition and read, a moment within the lag is drawn and the partition is read as it
stood then. Every write (PutItem, UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems) keeps the item's
versions of the last ``lag_ms``. Consistent reads, conditions and transactions always see the latest version::

    with stale_reads(lag_ms=500, probability=0.5, seed=7):     # or set_stale_reads(...) / set_stale_reads(0)
        ...

**Engine faults** (off until asked for): a share of the item operations throttled
(ProvisionedThroughputExceededException or ThrottlingException, as an on-demand table under a hot key or over
its limits answers), and a share of each BatchWriteItem's requests and BatchGetItem's keys returned unprocessed
(all of them unprocessed is a ProvisionedThroughputExceededException, as on AWS)::

    with engine_faults(throttle=0.02, unprocessed=0.1, seed=3):   # or set_engine_faults(...)
        ...
    counters()        # {"throttled": 4, "unprocessed": 17, "stale_reads": 9, "eventual_reads": 120, ...}

The same from the environment of the process that runs moto (``configure_from_environment``, which the local stack
calls when it starts)::

    LOCAL_DYNAMODB_STALE_READS="lag_ms=500,probability=0.5,seed=7"
    LOCAL_DYNAMODB_FAULTS="throttle=0.02,unprocessed=0.1,seed=3"

and over HTTP on the local stack's AWS endpoint (``control_middleware`` wraps moto's WSGI application)::

    GET    <aws endpoint>/_local/dynamodb     -> {"stale_reads": {...}, "faults": {...}, "counters": {...}}
    POST   <aws endpoint>/_local/dynamodb     {"stale_reads": {"lag_ms": 500, "probability": 0.5},
                                               "faults": {"throttle": 0.02, "unprocessed": 0.1}}   (either part)
    DELETE <aws endpoint>/_local/dynamodb     -> both off
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import json
import math
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException, MockValidationException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler, validate_put_has_empty_keys

_LOCK = threading.RLock()
_OPERATIONS = ("put_item", "get_item", "update_item", "delete_item", "query", "scan", "transact_write_items")

BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100
STALE_READS_VARIABLE = "LOCAL_DYNAMODB_STALE_READS"
FAULTS_VARIABLE = "LOCAL_DYNAMODB_FAULTS"
CONTROL_PATH = "/_local/dynamodb"
# Item operations a table's throughput limits apply to (never the control plane: CreateTable, DescribeTable, ...).
DATA_OPERATIONS = (
    "get_item",
    "put_item",
    "update_item",
    "delete_item",
    "query",
    "scan",
    "batch_get_item",
    "batch_write_item",
    "transact_get_items",
    "transact_write_items",
)
THROTTLE_MESSAGES = {
    "ProvisionedThroughputExceededException": (
        "The level of configured provisioned throughput for the table was exceeded. "
        "Consider increasing your provisioning level with the UpdateTable API."
    ),
    "ThrottlingException": (
        "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your "
        "table or index so please try again shortly. If exceptions persist, check if you have a hot key: "
        "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html"
    ),
}


# -- settings ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StaleReads:
    """Eventually consistent reads answer a partition as it stood up to ``lag_ms`` ago, with ``probability``."""

    lag_ms: float = 0.0
    probability: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (self.lag_ms >= 0 and math.isfinite(self.lag_ms)):
            raise ValueError(f"lag_ms must be a finite number >= 0, not {self.lag_ms!r}")
        if not 0 <= self.probability <= 1:
            raise ValueError(f"probability must be within 0..1, not {self.probability!r}")

    @property
    def on(self) -> bool:
        """Whether any read can be stale."""
        return self.lag_ms > 0 and self.probability > 0


@dataclass(frozen=True, slots=True)
class EngineFaults:
    """``throttle``: share of item operations refused as throttled; ``unprocessed``: share of each batch's
    requests (BatchWriteItem) and keys (BatchGetItem) returned unprocessed."""

    throttle: float = 0.0
    unprocessed: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("throttle", "unprocessed"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within 0..1, not {getattr(self, name)!r}")

    @property
    def on(self) -> bool:
        """Whether any fault can happen."""
        return self.throttle > 0 or self.unprocessed > 0


class _State:
    """What is switched on, the random draws, and the counters (all under ``lock``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stale = StaleReads()
        self.faults = EngineFaults()
        self.stale_rng = random.Random()  # noqa: S311 - seeded simulation, not crypto
        self.fault_rng = random.Random()  # noqa: S311 - seeded simulation, not crypto
        self.counters: Counter[str] = Counter()

    def count(self, name: str, by: int = 1) -> None:
        with self.lock:
            self.counters[name] += by

    def draw(self, rng: random.Random) -> float:
        with self.lock:
            return rng.random()


_STATE = _State()


def set_stale_reads(lag_ms: float, probability: float = 1.0, seed: int | None = None) -> StaleReads:
    """Turn stale reads on (``lag_ms`` > 0) or off (0); the settings before."""
    return _set_stale(StaleReads(float(lag_ms), float(probability), seed))


def _set_stale(settings: StaleReads) -> StaleReads:
    with _LOCK:  # no read or write is half-way while the history is dropped
        with _STATE.lock:
            before, _STATE.stale = _STATE.stale, settings
            _STATE.stale_rng = random.Random(settings.seed)  # noqa: S311 - seeded simulation, not crypto
        if not settings.on:
            _HISTORY.clear()
    return before


@contextlib.contextmanager
def stale_reads(lag_ms: float, probability: float = 1.0, seed: int | None = None) -> Iterator[StaleReads]:
    """``with stale_reads(lag_ms=300, probability=0.5): ...``: stale reads inside, the former settings after."""
    before = set_stale_reads(lag_ms, probability, seed)
    try:
        yield _STATE.stale
    finally:
        _set_stale(before)


def set_engine_faults(throttle: float = 0.0, unprocessed: float = 0.0, seed: int | None = None) -> EngineFaults:
    """Set the shares of throttled operations and unprocessed batch entries (0 and 0: off); the settings before."""
    return _set_faults(EngineFaults(float(throttle), float(unprocessed), seed))


def _set_faults(settings: EngineFaults) -> EngineFaults:
    with _STATE.lock:
        before, _STATE.faults = _STATE.faults, settings
        _STATE.fault_rng = random.Random(settings.seed)  # noqa: S311 - seeded simulation, not crypto
    return before


@contextlib.contextmanager
def engine_faults(throttle: float = 0.0, unprocessed: float = 0.0, seed: int | None = None) -> Iterator[EngineFaults]:
    """``with engine_faults(throttle=0.1): ...``: faults inside, the former settings after."""
    before = set_engine_faults(throttle, unprocessed, seed)
    try:
        yield _STATE.faults
    finally:
        _set_faults(before)


def counters() -> dict[str, int]:
    """What happened since the last ``reset_counters``: ``eventual_reads`` (item reads without ConsistentRead while
    stale reads were on), ``stale_reads`` (those that answered an older version), ``throttled`` (operations
    refused), ``unprocessed`` (batch requests and keys returned unprocessed)."""
    with _STATE.lock:
        return {name: _STATE.counters[name] for name in ("eventual_reads", "stale_reads", "throttled", "unprocessed")}


def reset_counters() -> None:
    """Counters back to zero."""
    with _STATE.lock:
        _STATE.counters.clear()


def describe() -> dict[str, Any]:
    """The settings and counters, as ``GET /_local/dynamodb`` answers them."""
    with _STATE.lock:
        stale, faults = _STATE.stale, _STATE.faults
    return {"stale_reads": asdict(stale), "faults": asdict(faults), "counters": counters()}


def _parse_pairs(variable: str, raw: str, kind: type[StaleReads] | type[EngineFaults]) -> dict[str, Any]:
    names = {f.name for f in fields(kind)}
    values: dict[str, Any] = {}
    for pair in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise ValueError(f"{variable}: {pair!r} is not one of {', '.join(sorted(names))} as name=value")
        try:
            values[name] = int(value) if name == "seed" else float(value)
        except ValueError:
            raise ValueError(f"{variable}: {name}={value.strip()!r} is not a number") from None
    return values


def configure_from_environment(environ: Mapping[str, str] | None = None) -> None:
    """Apply ``LOCAL_DYNAMODB_STALE_READS`` and ``LOCAL_DYNAMODB_FAULTS`` (``name=value`` pairs separated by
    commas) when set; ValueError names a malformed one. Unset variables change nothing."""
    environ = os.environ if environ is None else environ
    stale_raw = environ.get(STALE_READS_VARIABLE, "").strip()
    faults_raw = environ.get(FAULTS_VARIABLE, "").strip()
    stale = StaleReads(**_parse_pairs(STALE_READS_VARIABLE, stale_raw, StaleReads)) if stale_raw else None
    faults = EngineFaults(**_parse_pairs(FAULTS_VARIABLE, faults_raw, EngineFaults)) if faults_raw else None
    if stale is not None:
        _set_stale(stale)
    if faults is not None:
        _set_faults(faults)


# -- patching ---------------------------------------------------------------------------------------------------


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


def make_strict() -> None:
    """``make_atomic`` plus the batch limits, and the stale reads and engine faults (off until set). Idempotent."""
    make_atomic()
    if getattr(DynamoHandler, "_strict", False):
        return
    backend_wrappers: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
        "put_item": _recording(_put_keys),
        "update_item": _recording(_key_argument),
        "delete_item": _recording(_key_argument),
        "transact_write_items": _recording(_transact_keys),
        "get_item": _reading,
        "query": _reading,
        "scan": _reading,
    }
    for name, wrap in backend_wrappers.items():
        setattr(DynamoDBBackend, name, _locked(wrap(getattr(DynamoDBBackend, name))))
    DynamoHandler.batch_write_item = _strict_batch_write_item  # type: ignore[method-assign]
    DynamoHandler.batch_get_item = _strict_batch_get_item(DynamoHandler.batch_get_item)  # type: ignore[method-assign]
    for name in ("get_item", "query", "scan"):
        setattr(DynamoHandler, name, _single_table_read(getattr(DynamoHandler, name)))
    for name in DATA_OPERATIONS:
        setattr(DynamoHandler, name, _throttled(getattr(DynamoHandler, name)))
    DynamoHandler._strict = True  # type: ignore[attr-defined]


# -- batch limits and unprocessed entries --------------------------------------------------------------------------


_READ_OPERATIONS = frozenset({"get_item", "query", "scan", "batch_get_item", "transact_get_items"})


class _Throttled(DynamodbException):
    """A throttled call, with ThrottlingReasons as AWS gives them (``Table<Read|Write><limit>`` per table)."""

    def __init__(self, code: str, operation: str, table_arns: Iterable[str] = ()) -> None:
        super().__init__(ERROR_TYPE_PREFIX + code, THROTTLE_MESSAGES[code])
        body: dict[str, Any] = {"__type": self.error_type, "message": self.message}
        kind = "Read" if operation in _READ_OPERATIONS else "Write"
        limit = (
            "KeyRangeThroughputExceeded" if code == "ProvisionedThroughputExceededException" else "AccountLimitExceeded"
        )
        reasons = [{"reason": f"Table{kind}{limit}", "resource": arn} for arn in table_arns]
        if reasons:
            body["ThrottlingReasons"] = reasons
        self.description = json.dumps(body)


def _throttled(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def throttled(self: DynamoHandler, *args: Any, **kwargs: Any) -> Any:
        share = _STATE.faults.throttle
        if share > 0 and _STATE.draw(_STATE.fault_rng) < share:
            _STATE.count("throttled")
            codes = sorted(THROTTLE_MESSAGES)
            with _STATE.lock:
                code = _STATE.fault_rng.choice(codes)
            raise _Throttled(code, method.__name__, _table_arns(self))
        return method(self, *args, **kwargs)

    return throttled


def _table_arns(handler: DynamoHandler) -> list[str]:
    body = getattr(handler, "body", None) or {}
    names = list(body.get("RequestItems") or {}) or [body.get("TableName")]
    arns = []
    for name in names:
        table = handler.dynamodb_backend.tables.get(name) if name else None
        if table is not None:
            arns.append(table.table_arn)
    return arns


def _unprocessed_draw(count: int) -> list[bool]:
    """For each of ``count`` batch entries, whether it is left unprocessed."""
    share = _STATE.faults.unprocessed
    if share <= 0 or not count:
        return [False] * count
    with _STATE.lock:
        return [_STATE.fault_rng.random() < share for _ in range(count)]


def _key_of(table: Table, item: Mapping[str, Any]) -> str:
    """A request's item key, comparable across puts and deletes."""
    attributes = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
    return json.dumps({name: item.get(name) for name in attributes}, sort_keys=True, default=str)


def _strict_batch_write_item(self: DynamoHandler) -> Any:
    """BatchWriteItem as AWS answers it: limits, duplicates, every request validated before any is written,
    then each request written on its own (or left unprocessed by an injected fault)."""
    from moto.core.responses import ActionResult

    table_batches: dict[str, list[dict[str, Any]]] = self.body["RequestItems"]
    for table_name, requests in table_batches.items():
        if not 1 <= len(requests) <= BATCH_WRITE_LIMIT:
            raise MockValidationException(
                f"1 validation error detected: Value '{{{table_name}=[{len(requests)} write requests]}}' at "
                "'requestItems' failed to satisfy constraint: Map value must satisfy constraint: [Member must have "
                f"length less than or equal to {BATCH_WRITE_LIMIT}, Member must have length greater than or equal "
                "to 1]"
            )
    if sum(len(requests) for requests in table_batches.values()) > BATCH_WRITE_LIMIT:
        raise MockValidationException("Too many items requested for the BatchWriteItem call")
    planned: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = []  # (table, request, type, item or key)
    seen: set[tuple[str, str]] = set()
    for table_name, requests in table_batches.items():
        table = self.dynamodb_backend.get_table(table_name)
        for request in requests:
            request_type, body = next(iter(request.items()))
            if request_type == "PutRequest":
                validate_put_has_empty_keys(
                    body["Item"],
                    table,
                    custom_error_msg="One or more parameter values are not valid. The AttributeValue for a key "
                    "attribute cannot contain an empty string value. Key: {}",
                )
                target = body["Item"]
            else:
                target = body["Key"]
            key = (table_name, _key_of(table, target))
            if key in seen:
                raise MockValidationException("Provided list of item keys contains duplicates")
            seen.add(key)
            planned.append((table_name, request, request_type, target))
    left = _unprocessed_draw(len(planned))
    if planned and all(left):
        _STATE.count("throttled")
        raise _Throttled("ProvisionedThroughputExceededException", "batch_write_item", _table_arns(self))
    unprocessed: dict[str, list[dict[str, Any]]] = {}
    for (table_name, request, request_type, target), skip in zip(planned, left, strict=True):
        if skip:
            unprocessed.setdefault(table_name, []).append(request)
        elif request_type == "PutRequest":
            self.dynamodb_backend.put_item(table_name, target)
        else:
            self.dynamodb_backend.delete_item(table_name, target)
    _STATE.count("unprocessed", sum(left))
    return ActionResult(
        {
            "ConsumedCapacity": [
                {"TableName": name, "CapacityUnits": 1.0, "Table": {"CapacityUnits": 1.0}} for name in table_batches
            ],
            "ItemCollectionMetrics": {},
            "UnprocessedItems": unprocessed,
        }
    )


def _strict_batch_get_item(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def batch_get_item(self: DynamoHandler) -> Any:
        table_batches: dict[str, dict[str, Any]] = self.body["RequestItems"]
        for table_name, request in table_batches.items():
            if len(request["Keys"]) > BATCH_GET_LIMIT:
                raise MockValidationException(
                    f"1 validation error detected: Value at 'requestItems.{table_name}.member.keys' failed to satisfy "
                    f"constraint: Member must have length less than or equal to {BATCH_GET_LIMIT}"
                )
        if sum(len(request["Keys"]) for request in table_batches.values()) > BATCH_GET_LIMIT:
            raise MockValidationException("Too many items requested for the BatchGetItem call")
        for table_name, request in table_batches.items():
            table = self.dynamodb_backend.get_table(table_name)
            keys = [_key_of(table, key) for key in request["Keys"]]
            if len(set(keys)) != len(keys):
                raise MockValidationException("Provided list of item keys contains duplicates")
        entries = [(name, key) for name, request in table_batches.items() for key in request["Keys"]]
        left = _unprocessed_draw(len(entries))
        if entries and all(left):
            _STATE.count("throttled")
            raise _Throttled("ProvisionedThroughputExceededException", "batch_write_item", _table_arns(self))
        unprocessed: dict[str, dict[str, Any]] = {}
        for (table_name, key), skip in zip(entries, left, strict=True):
            if skip:
                request = table_batches[table_name]
                unprocessed.setdefault(table_name, {**request, "Keys": []})["Keys"].append(key)
        for table_name, request in unprocessed.items():
            skipped = {id(key) for key in request["Keys"]}
            table_batches[table_name] = {
                **table_batches[table_name],
                "Keys": [key for key in table_batches[table_name]["Keys"] if id(key) not in skipped],
            }
        _STATE.count("unprocessed", sum(left))
        eventual = frozenset(name for name, request in table_batches.items() if not request.get("ConsistentRead"))
        with _eventual(eventual):
            answer = method(self)
        if unprocessed:
            answer.result.setdefault("UnprocessedKeys", {}).update(unprocessed)
        return answer

    return batch_get_item


# -- stale reads --------------------------------------------------------------------------------------------------

_READING = threading.local()  # .eventual: the tables the current request reads without ConsistentRead
_RECORDING = threading.local()  # .busy: inside a write that records its own keys (a transaction)
_NEVER = -math.inf

type _TableId = tuple[str, Any]
type _ItemKey = tuple[DynamoType, DynamoType | None]
type _Versions = list[tuple[float, Item | None]]


class _History:
    """Each recently written item's versions: [(since, item or None)], oldest first, the last one current; the
    first is what it was before the writes of the window (since -inf, or since a moment older than the window)."""

    def __init__(self) -> None:
        self.tables: dict[_TableId, dict[_ItemKey, _Versions]] = {}
        self._writes = 0

    def clear(self) -> None:
        self.tables.clear()

    def record(self, table: Table, key: _ItemKey, before: Item | None, after: Item | None, now: float) -> None:
        items = self.tables.setdefault(_table_id(table), {})
        versions = items.setdefault(key, [(_NEVER, before)])
        versions.append((now, after))
        self._writes += 1
        if self._writes % 1000 == 0:
            self.sweep(now)

    def sweep(self, now: float) -> None:
        """Forget every item not written within the lag."""
        horizon = now - _STATE.stale.lag_ms / 1000
        for table_id in list(self.tables):
            items = self.tables[table_id]
            for key in [key for key, versions in items.items() if versions[-1][0] < horizon]:
                del items[key]
            if not items:
                del self.tables[table_id]

    def views(self, table: Table, keys: Iterable[_ItemKey] | None, now: float) -> dict[_ItemKey, Item | None]:
        """The versions a stale read answers in place of the current ones (only those that differ)."""
        items = self.tables.get(_table_id(table))
        if not items:
            return {}
        settings = _STATE.stale
        horizon = now - settings.lag_ms / 1000
        wanted = items.keys() if keys is None else [key for key in keys if key in items]
        moments: dict[DynamoType, float | None] = {}  # per partition: the moment it is read at, None: now
        found: dict[_ItemKey, Item | None] = {}
        for key in list(wanted):
            versions = items[key]
            _prune(versions, horizon)
            if len(versions) == 1:  # not written within the lag: current
                del items[key]
                continue
            if key[0] not in moments:
                with _STATE.lock:
                    stale = _STATE.stale_rng.random() < settings.probability
                    moments[key[0]] = now - _STATE.stale_rng.uniform(0, settings.lag_ms / 1000) if stale else None
            moment = moments[key[0]]
            if moment is None:
                continue
            version = next((item for since, item in reversed(versions) if since <= moment), versions[0][1])
            if version is not versions[-1][1]:
                found[key] = version
        return found


def _prune(versions: _Versions, horizon: float) -> None:
    """Drop the versions replaced before ``horizon``: the one standing at ``horizon`` stays first."""
    standing = max(index for index, (since, _item) in enumerate(versions) if since <= horizon or index == 0)
    del versions[:standing]


_HISTORY = _History()


def _table_id(table: Table) -> _TableId:
    return (table.table_arn, table.created_at)  # a table deleted and created again is another table


def _copy(item: Item | None) -> Item | None:
    return None if item is None else copy.deepcopy(item)


def _current(table: Table, key: _ItemKey) -> Item | None:
    hash_key, range_key = key
    if range_key is None:
        found = table.items.get(hash_key)
        return found if isinstance(found, Item) else None
    return table.items.get(hash_key, {}).get(range_key)


def _put_keys(backend: DynamoDBBackend, call: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    table = backend.get_table(call["table_name"])
    item = call["item_attrs"]
    return [(call["table_name"], {name: item[name] for name in (table.hash_key_attr, table.range_key_attr) if name})]


def _key_argument(_backend: DynamoDBBackend, call: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(call["table_name"], call["key"])]


def _transact_keys(backend: DynamoDBBackend, call: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    keys = []
    for entry in call["transact_items"]:
        for op_type, op in entry.items():
            if op_type == "Put":
                keys += _put_keys(backend, {"table_name": op["TableName"], "item_attrs": op["Item"]})
            elif op_type in ("Update", "Delete"):
                keys.append((op["TableName"], op["Key"]))
    return keys


def _recording(
    keys_of: Callable[[DynamoDBBackend, Mapping[str, Any]], list[tuple[str, dict[str, Any]]]],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A backend write that keeps the versions of the items it writes (while stale reads are on). A write that
    fails leaves the item as it was, except a transaction's, whose items are recorded as they end up."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(method)
        transaction = method.__name__ == "transact_write_items"

        @functools.wraps(method)
        def recording(backend: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
            if not _STATE.stale.on or getattr(_RECORDING, "busy", False):
                return method(backend, *args, **kwargs)
            try:
                call = signature.bind(backend, *args, **kwargs).arguments
                targets = []
                for table_name, raw_key in keys_of(backend, call):
                    table = backend.get_table(table_name)
                    key = backend.get_keys_value(table, raw_key)
                    targets.append((table_name, key, _copy(_current(table, key))))
            except Exception:  # a request moto refuses: it raises the same below, and nothing is written
                return method(backend, *args, **kwargs)
            _RECORDING.busy = True
            written = False
            try:
                answer = method(backend, *args, **kwargs)
                written = True
                return answer
            finally:
                _RECORDING.busy = False
                if written or transaction:
                    now = time.monotonic()
                    for table_name, key, before in targets:
                        written_to = backend.tables.get(table_name)  # a failed transaction puts back a copy of it
                        if written_to is not None:
                            _HISTORY.record(written_to, key, before, _copy(_current(written_to, key)), now)

        return recording

    return wrap


@contextlib.contextmanager
def _eventual(tables: frozenset[str]) -> Iterator[None]:
    before: frozenset[str] = getattr(_READING, "eventual", frozenset())
    _READING.eventual = tables
    try:
        yield
    finally:
        _READING.eventual = before


def _single_table_read(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def read(self: DynamoHandler) -> Any:
        consistent = bool(self.body.get("ConsistentRead"))
        with _eventual(frozenset() if consistent else frozenset([self.body.get("TableName")])):
            return method(self)

    return read


def _reading(method: Callable[..., Any]) -> Callable[..., Any]:
    """A backend read (get_item, query, scan) that an eventually consistent request may answer from the past."""
    single = method.__name__ == "get_item"

    @functools.wraps(method)
    def reading(backend: DynamoDBBackend, table_name: str, *args: Any, **kwargs: Any) -> Any:
        if not _STATE.stale.on or table_name not in getattr(_READING, "eventual", ()):
            return method(backend, table_name, *args, **kwargs)
        _STATE.count("eventual_reads")
        table = backend.get_table(table_name)
        keys = [backend.get_keys_value(table, args[0] if args else kwargs["keys"])] if single else None
        past = _HISTORY.views(table, keys, time.monotonic())
        if not past:
            return method(backend, table_name, *args, **kwargs)
        _STATE.count("stale_reads")
        with _as_of(table, past):
            return method(backend, table_name, *args, **kwargs)

    return reading


@contextlib.contextmanager
def _as_of(table: Table, versions: Mapping[_ItemKey, Item | None]) -> Iterator[None]:
    """The table's items with ``versions`` in place of the current ones, put back after (under the lock)."""
    items: Any = table.items  # {hash: item}, or {hash: {range: item}} with a range key
    saved: dict[DynamoType, Any] = {}
    for (hash_key, range_key), version in versions.items():
        if hash_key not in saved:
            saved[hash_key] = items.get(hash_key)  # .get: the defaultdict makes no empty partition
            if range_key is not None:
                items[hash_key] = dict(saved[hash_key] or {})
        if range_key is None:
            if version is None:
                items.pop(hash_key, None)
            else:
                items[hash_key] = version
        elif version is None:
            items[hash_key].pop(range_key, None)
        else:
            items[hash_key][range_key] = version
    try:
        yield
    finally:
        for hash_key, former in saved.items():
            if former is None:
                items.pop(hash_key, None)
            else:
                items[hash_key] = former


# -- over HTTP ----------------------------------------------------------------------------------------------------

type _Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def control_middleware(app: _Wsgi) -> _Wsgi:
    """``app`` with ``/_local/dynamodb`` answered here (GET, POST, DELETE: see the module docstring)."""

    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != CONTROL_PATH:
            return app(environ, start_response)
        status, answer = _control(environ)
        body = json.dumps(answer).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return middleware


def _control(environ: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    method = environ.get("REQUEST_METHOD", "GET")
    if method == "DELETE":
        _set_stale(StaleReads())
        _set_faults(EngineFaults())
    elif method == "POST":
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            wanted = json.loads(environ["wsgi.input"].read(length) or b"{}")
            if not isinstance(wanted, dict) or set(wanted) - {"stale_reads", "faults", "reset_counters"}:
                raise ValueError('expected {"stale_reads": {...}, "faults": {...}, "reset_counters": true}')
            stale = StaleReads(**wanted["stale_reads"]) if wanted.get("stale_reads") is not None else None
            faults = EngineFaults(**wanted["faults"]) if wanted.get("faults") is not None else None
        except (TypeError, ValueError) as exc:
            return "400 Bad Request", {"error": str(exc)}
        if stale is not None:
            _set_stale(stale)
        if faults is not None:
            _set_faults(faults)
        if wanted.get("reset_counters"):
            reset_counters()
    elif method != "GET":
        return "405 Method Not Allowed", {"error": f"{method} is not GET, POST or DELETE"}
    return "200 OK", describe()
