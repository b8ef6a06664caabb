"""The dedup table (DynamoDB): one item per "once" fact. The only module that talks to the table.

A claim is one conditional UpdateItem. It wins when the item is absent or PENDING with an expired lease (a
crashed or failed attempt); an item past its expiry (TTL deletion lags by days) is replaced as if absent. The
first claim records the fact's content and message id; a later claim keeps them (``if_not_exists``), so every
resend carries what the first attempt recorded. A claim that loses gets the item as it stands (ALL_OLD; read with a
consistent GetItem where the failure comes back without it, as from engines that ignore ALL_OLD)::

    store = DedupStore(dynamodb_client, "table", lease_seconds=90, visitor_ttl_seconds=..., event_ttl_seconds=...)
    claims = store.claim_all(claim_requests(events), precheck=True)    # {slot: Claim}, concurrently
    claims[slot].answer.state                                # CLAIMED / SENT / IN_FLIGHT / UNAVAILABLE / INVALID
    store.mark_sent([(claims[slot], message_id)])           # BatchWriteItem, 25 a request
    store.release([claims[slot]])                           # a retry can claim at once

Item: ``pk = WS#<workspace>#V#<visitor>``, ``sk`` = the fact's key (a fact id over ``MAX_KEY_NAME_BYTES`` is
replaced by ``HASHED_MARKER`` and its SHA-256, the id kept in ``fact_name``; the marker starts with a control
character no valid id holds, so a literal id ``sha256:<hex>`` never shares a hashed id's item), ``status``
(PENDING | SENT), ``message_id``, ``content`` (JSON),
``first_attempt_at``, ``delivered_at``, ``attempts``, ``lease_until``, ``claim_token``, ``updated_at`` and
``expires_at`` (the TTL attribute).

Keys hashed before the marker changed (``KIND#sha256:<hex>``, with ``fact_name``) stay readable: ``make lookup``
and erasure list and delete them as before. A claim does not look for them, so a fact with such a long id that
was recorded before the change (an id over 200 bytes: rare) is claimed anew at its next occurrence and sent once
more, under the same messageId (message ids derive from the fact, not from the sort key: Segment drops the
repeat within its deduplication window, about a day); the old item expires with its TTL.

Repeats cost no write: SENT only ever changes by expiry (days) or erasure, so a fact known SENT needs no claim.
The store remembers the facts it saw SENT (``SentCache``, per execution environment, bounded, entries for
``SENT_CACHE_SECONDS``), and with ``precheck`` (the SQS path) it first reads the rest with one eventually
consistent BatchGetItem per 100: a SENT item is answered from it, anything else (absent, PENDING, or a read
that is stale) falls through to the conditional write, which alone can claim.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast

from botocore.exceptions import BotoCoreError, ClientError

from .facts import ClaimAnswer, ClaimRequest, ClaimState, Fact, Slot
from .health import BUCKET_TTL_S, Bucket, Tally

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, WriteRequestTypeDef

    Item = dict[str, AttributeValueTypeDef]
else:
    DynamoDBClient = Any
    Item = dict[str, Any]

PENDING: Final = "PENDING"
SENT: Final = "SENT"
_CLAIM_UPDATE = (
    "SET #status = :pending, lease_until = :lease, claim_token = :token, updated_at = :now, "
    "message_id = if_not_exists(message_id, :message_id), content = if_not_exists(content, :content), "
    "first_attempt_at = if_not_exists(first_attempt_at, :now), expires_at = if_not_exists(expires_at, :expires) "
    "ADD attempts :one"
)
_CLAIM_CONDITION = "attribute_not_exists(pk) OR (#status = :pending AND lease_until < :now AND expires_at > :now)"
_BATCH_WRITE_LIMIT = 25
_CLAIM_ATTEMPTS = 3  # a claim that failed on an item erased before it was read claims again, this many times in all
_UNPROCESSED_RETRIES = 5
MAX_KEY_NAME_BYTES = 200  # a fact id longer than this (UTF-8) is hashed inside the sort key (limit 1,024 bytes)
# Marks a hashed fact id in a sort key. It starts with U+001F, a control character no valid id can hold (ids are
# refused with any of U+0000-U+001F and U+007F-U+009F), so no literal id ("sha256:…" included) shares its key.
HASHED_MARKER: Final = "\x1fsha256:"
# The table refused the request itself: retrying the same request can never succeed.
PERMANENT_ERRORS = frozenset({"ValidationException", "SerializationException"})
CLAIM_THREADS = 16
_BATCH_GET_LIMIT = 100
SENT_CACHE_ENTRIES = 100_000
SENT_CACHE_SECONDS = 300  # an erased visitor may read as known to a warm function for this long
_ERASE_ATTEMPTS = 3  # deletes of one fact whose lease ended between the refused delete and the read
_GONE: Final = -1  # an erase found nothing to delete


class DedupUnavailableError(Exception):
    """DynamoDB could not be reached or refused the request (throttled, ...): retry later."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A claim's answer, and (for the store) the item as it stands after the claim and its lease token."""

    slot: Slot
    answer: ClaimAnswer
    item: Item = field(default_factory=dict, repr=False)
    token: str = ""


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


def _key(slot: Slot) -> Item:
    return {"pk": {"S": partition_key(slot.workspace_id, slot.visitor_id)}, "sk": {"S": sort_key(slot.fact)}}


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


def _content(item: Mapping[str, Any]) -> dict[str, Any] | None:
    raw = item.get("content", {}).get("S")
    if raw is None:
        return None
    content = json.loads(raw)
    return content if isinstance(content, dict) else None


def _number(item: Mapping[str, Any], name: str) -> int:
    return int(item.get(name, {}).get("N", "0"))


def _failed_on(client: DynamoDBClient, table: str, key: Item, failed: ClientError) -> Item:
    """The item a write's condition failed on: the one the failure carries (``ReturnValuesOnConditionCheckFailure``
    ALL_OLD), else a consistent GetItem (an engine may leave it out; the failure never says "absent"). ``{}``
    when the item is gone since. Raises what GetItem raises.

    Every condition of this module holds on an absent item, so a failure always means the item was there.
    """
    response: Any = failed.response
    if "Item" in response:
        return dict(response["Item"] or {})
    answer = client.get_item(TableName=table, Key=key, ConsistentRead=True)
    return dict(answer.get("Item") or {})


class SentCache:
    """Facts known SENT, with their recorded content: at most ``entries``, each for ``max_age_s`` (LRU)::

    cache = SentCache()
    cache.put(slot, content)
    cache.get(slot)          # the content, or None when unknown or too old
    """

    def __init__(
        self,
        entries: int = SENT_CACHE_ENTRIES,
        max_age_s: float = SENT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries = entries
        self._max_age_s = max_age_s
        self._clock = clock
        self._known: OrderedDict[Slot, tuple[float, dict[str, Any] | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, slot: Slot) -> tuple[bool, dict[str, Any] | None]:
        """(known SENT, its recorded content)."""
        with self._lock:
            found = self._known.get(slot)
            if found is None or self._clock() - found[0] > self._max_age_s:
                return False, None
            self._known.move_to_end(slot)
            return True, found[1]

    def put(self, slot: Slot, content: dict[str, Any] | None) -> None:
        """Remember ``slot`` as SENT."""
        with self._lock:
            self._known[slot] = (self._clock(), content)
            self._known.move_to_end(slot)
            while len(self._known) > self._entries:
                self._known.popitem(last=False)


class DedupStore:
    """Claims, marks and releases facts in the dedup table. Thread-safe (boto3 clients are)."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        lease_seconds: int,
        visitor_ttl_seconds: int,
        event_ttl_seconds: int,
        clock: Callable[[], float] = time.time,
        sent: SentCache | None = None,
    ) -> None:
        self._client = client
        self._table = table_name
        self._lease = lease_seconds
        self._ttl = {True: visitor_ttl_seconds, False: event_ttl_seconds}
        self._clock = clock
        self._sent = sent if sent is not None else SentCache()
        self._pool: ThreadPoolExecutor | None = None

    def _map[T, R](self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``fn`` over ``items`` concurrently (one thread pool per store, kept across invocations)."""
        if len(items) <= 1:
            return [fn(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=CLAIM_THREADS, thread_name_prefix="dedup")
        return list(self._pool.map(fn, items))

    # -- claims --------------------------------------------------------------------------------------------

    def claim_all(self, requests: Sequence[ClaimRequest], *, precheck: bool = False) -> dict[Slot, Claim]:
        """Claim every requested fact not known SENT, concurrently (first reading them, with ``precheck``).

        Never raises: failures are UNAVAILABLE / INVALID answers.
        """
        claims: dict[Slot, Claim] = {}
        unknown: list[ClaimRequest] = []
        for request in requests:
            known, content = self._sent.get(request.slot)
            if known:
                claims[request.slot] = Claim(request.slot, ClaimAnswer(ClaimState.SENT, content))
            else:
                unknown.append(request)
        if precheck and unknown:
            sent = self._read_sent([request.slot for request in unknown])
            claims.update({slot: claim for slot, claim in sent.items()})
            unknown = [request for request in unknown if request.slot not in sent]
        claims.update({claim.slot: claim for claim in self._map(self.claim, unknown)})
        return claims

    def _read_sent(self, slots: Sequence[Slot]) -> dict[Slot, Claim]:
        """The slots whose items read as SENT (eventually consistent; a failed read just finds nothing)."""
        by_key = {(partition_key(s.workspace_id, s.visitor_id), sort_key(s.fact)): s for s in slots}
        keys = [_key(slot) for slot in slots]
        chunks = [keys[start : start + _BATCH_GET_LIMIT] for start in range(0, len(keys), _BATCH_GET_LIMIT)]
        found: dict[Slot, Claim] = {}
        now = int(self._clock())
        for items in self._map(self._batch_get, chunks):
            for item in items:
                if item.get("status", {}).get("S") != SENT or _number(item, "expires_at") <= now:
                    continue
                slot = by_key[(item["pk"]["S"], item["sk"]["S"])]
                content = _content(item)
                self._sent.put(slot, content)
                found[slot] = Claim(slot, ClaimAnswer(ClaimState.SENT, content), item)
        return found

    def _batch_get(self, keys: list[Item]) -> list[Item]:
        items: list[Item] = []
        pending = keys
        for attempt in range(_UNPROCESSED_RETRIES + 1):
            try:
                answer = self._client.batch_get_item(
                    RequestItems={
                        self._table: {
                            "Keys": pending,
                            "ConsistentRead": False,
                            "ProjectionExpression": "pk, sk, #status, content, expires_at",
                            "ExpressionAttributeNames": {"#status": "status"},
                        }
                    }
                )
            except (ClientError, BotoCoreError, OSError):
                return items  # the claims decide without it
            items.extend(answer.get("Responses", {}).get(self._table, []))
            unprocessed = answer.get("UnprocessedKeys", {}).get(self._table)
            if not unprocessed:
                break
            pending = unprocessed["Keys"]
            time.sleep(min(0.05 * 2**attempt, 0.5))
        return items

    def claim(self, request: ClaimRequest) -> Claim:
        """Try to own one fact, recording ``request.content`` if the claim creates it."""
        slot, now = request.slot, int(self._clock())
        token = uuid.uuid4().hex
        content = json.dumps(request.content, separators=(",", ":"), ensure_ascii=False)
        values: Item = {
            ":pending": {"S": PENDING},
            ":lease": {"N": str(now + self._lease)},
            ":token": {"S": token},
            ":now": {"N": str(now)},
            ":message_id": {"S": slot.message_id},
            ":content": {"S": content},
            ":expires": {"N": str(now + self._ttl[slot.fact.per_visitor])},
            ":one": {"N": "1"},
        }
        update = _CLAIM_UPDATE
        if sort_key(slot.fact) != slot.fact.key:
            update = update.replace(" ADD", ", fact_name = :name ADD")
            values[":name"] = {"S": slot.fact.name}
        for _ in range(_CLAIM_ATTEMPTS):
            try:
                answer = self._client.update_item(
                    TableName=self._table,
                    Key=_key(slot),
                    UpdateExpression=update,
                    ConditionExpression=_CLAIM_CONDITION,
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                if _error_code(exc) != "ConditionalCheckFailedException":
                    return self._failed(slot, exc)
                try:
                    old = _failed_on(self._client, self._table, _key(slot), exc)
                except (ClientError, BotoCoreError, OSError) as read_error:
                    return self._failed(slot, read_error)
                if not old:
                    continue  # erased since the claim failed: claim again
                if _number(old, "expires_at") <= now:
                    return self._replace_expired(request, old, values, token)
                state = ClaimState.SENT if old.get("status", {}).get("S") == SENT else ClaimState.IN_FLIGHT
                if state is ClaimState.SENT:
                    self._sent.put(slot, _content(old))
                return Claim(slot, ClaimAnswer(state, _content(old)), old)
            except (BotoCoreError, OSError) as exc:  # network errors, timeouts
                return self._failed(slot, exc)
            item: Item = dict(answer.get("Attributes") or {})
            return Claim(slot, ClaimAnswer(ClaimState.CLAIMED, _content(item)), item, token)
        return Claim(slot, ClaimAnswer(ClaimState.UNAVAILABLE, reason="contended"))

    def _replace_expired(self, request: ClaimRequest, old: Item, values: Item, token: str) -> Claim:
        """An item past its expiry is a fact of a former life: replace it, unless another attempt did first."""
        slot, now = request.slot, int(values[":now"]["N"])
        item: Item = {
            **_key(slot),
            "status": {"S": PENDING},
            "message_id": values[":message_id"],
            "content": values[":content"],
            "first_attempt_at": {"N": str(now)},
            "updated_at": {"N": str(now)},
            "expires_at": values[":expires"],
            "lease_until": values[":lease"],
            "claim_token": {"S": token},
            "attempts": {"N": "1"},
        }
        if ":name" in values:
            item["fact_name"] = values[":name"]
        try:
            self._client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR expires_at = :old",
                ExpressionAttributeValues={":old": old.get("expires_at", {"N": "0"})},
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return Claim(slot, ClaimAnswer(ClaimState.IN_FLIGHT, _content(old)), old)
            return self._failed(slot, exc)
        except (BotoCoreError, OSError) as exc:
            return self._failed(slot, exc)
        return Claim(slot, ClaimAnswer(ClaimState.CLAIMED, request.content), item, token)

    @staticmethod
    def _failed(slot: Slot, exc: Exception) -> Claim:
        code = _error_code(exc)
        state = ClaimState.INVALID if code in PERMANENT_ERRORS else ClaimState.UNAVAILABLE
        return Claim(slot, ClaimAnswer(state, reason=code))

    # -- settling ------------------------------------------------------------------------------------------

    def mark_sent(self, marks: Iterable[tuple[Claim, str]]) -> None:
        """Record facts as SENT by the message with the given id (BatchWriteItem, 25 a request).

        Unconditional on purpose: the message went out under the fact's one id with its recorded content, so
        SENT is true whoever holds the lease now. Raises DedupUnavailableError when not every item was written.
        """
        marks = list(marks)
        now = str(int(self._clock()))
        requests: list[WriteRequestTypeDef] = []
        for claim, message_id in marks:
            item = {k: v for k, v in claim.item.items() if k not in ("lease_until", "claim_token")}
            item.update(
                status={"S": SENT},
                message_id={"S": message_id},
                delivered_at={"N": now},
                updated_at={"N": now},
            )
            requests.append({"PutRequest": {"Item": item}})
        _batch_write(self._client, self._table, requests)
        for claim, _ in marks:
            self._sent.put(claim.slot, claim.answer.content)

    def release(self, claims: Sequence[Claim]) -> None:
        """Give up leases after a failed delivery so a retry can claim at once (best effort: else the lease
        simply expires). Only this attempt's lease is released (conditional on its token)."""
        self._map(self._release, [claim for claim in claims if claim.token])

    def _release(self, claim: Claim) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(claim.slot),
                UpdateExpression="SET lease_until = :zero",
                ConditionExpression="claim_token = :token AND #status = :pending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":zero": {"N": "0"},
                    ":token": {"S": claim.token},
                    ":pending": {"S": PENDING},
                },
            )
        except (ClientError, BotoCoreError, OSError):
            return  # the lease then simply expires; nothing is lost


def _batch_write(client: DynamoDBClient, table: str, requests: Sequence[WriteRequestTypeDef]) -> None:
    """BatchWriteItem, 25 a request, unprocessed items retried; DedupUnavailableError when not all were written."""
    for start in range(0, len(requests), _BATCH_WRITE_LIMIT):
        pending = list(requests[start : start + _BATCH_WRITE_LIMIT])
        for attempt in range(_UNPROCESSED_RETRIES + 1):
            try:
                answer = client.batch_write_item(RequestItems={table: pending})
            except (ClientError, BotoCoreError, OSError) as exc:
                raise DedupUnavailableError(_error_code(exc)) from exc
            pending = cast("list[WriteRequestTypeDef]", answer.get("UnprocessedItems", {}).get(table, []))
            if not pending:
                break
            time.sleep(min(0.05 * 2**attempt, 0.5))
        if pending:
            raise DedupUnavailableError(f"{len(pending)} items unprocessed")


# -- operators: one visitor's facts -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FactRecord:
    """One of a visitor's facts as the table holds it: its key (with the original id where the stored key is
    hashed), ``PENDING`` or ``SENT``, the messageId, times in seconds since the epoch, the recorded content."""

    key: str
    status: str
    message_id: str
    first_attempt_at: int | None
    delivered_at: int | None
    attempts: int
    content: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erase did: the facts removed, and those a delivery holds right now (PENDING under a live lease),
    left in place because that delivery records them again when it ends; erase again after ``retry_after_s``."""

    erased: int
    in_flight: int = 0
    retry_after_s: int = 0


class VisitorFacts:
    """What the table knows of one visitor, for the people who run the service::

        facts = VisitorFacts(dynamodb_client, "table")
        facts.list("demo", "v-1")        # [FactRecord, ...]
        facts.erase("demo", "v-1")       # Erasure(erased=3, in_flight=0, ...): the visitor is unknown from then on

    Raises DedupUnavailableError when DynamoDB fails.
    """

    def __init__(self, client: DynamoDBClient, table_name: str, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._table = table_name
        self._clock = clock

    def _items(self, workspace_id: str, visitor_id: str, projection: str | None = None) -> list[Item]:
        items: list[Item] = []
        start: Item | None = None
        while True:
            params: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": partition_key(workspace_id, visitor_id)}},
                "ConsistentRead": True,
            }
            if projection:
                params["ProjectionExpression"] = projection
                if "#status" in projection:
                    params["ExpressionAttributeNames"] = {"#status": "status"}
            if start:
                params["ExclusiveStartKey"] = start
            try:
                answer = self._client.query(**params)
            except (ClientError, BotoCoreError, OSError) as exc:
                raise DedupUnavailableError(_error_code(exc)) from exc
            items.extend(answer.get("Items", []))
            start = answer.get("LastEvaluatedKey")
            if not start:
                return items

    def list(self, workspace_id: str, visitor_id: str) -> list[FactRecord]:
        """The visitor's facts, by key (a consistent read)."""
        return [
            FactRecord(
                key=_fact_key(item),
                status=item.get("status", {}).get("S", ""),
                message_id=item.get("message_id", {}).get("S", ""),
                first_attempt_at=_number(item, "first_attempt_at") or None,
                delivered_at=_number(item, "delivered_at") or None,
                attempts=_number(item, "attempts"),
                content=_content(item),
            )
            for item in self._items(workspace_id, visitor_id)
        ]

    def erase(self, workspace_id: str, visitor_id: str) -> Erasure:
        """Delete every fact of the visitor (its user ids sit in keys too), except those a delivery holds now.

        A delivery marks its facts SENT with an unconditional write when it ends, so deleting a fact it holds would
        only bring it back: facts known SENT (final) are deleted in batches, any other one by a DeleteItem on
        condition that no live lease holds it.
        """
        now = int(self._clock())
        items = self._items(workspace_id, visitor_id, projection="pk, sk, #status, expires_at")
        settled = [item for item in items if _settled(item, now)]
        _batch_write(
            self._client, self._table, [{"DeleteRequest": {"Key": {"pk": i["pk"], "sk": i["sk"]}}} for i in settled]
        )
        leases = [
            self._delete_unless_held({"pk": item["pk"], "sk": item["sk"]}, now)
            for item in items
            if not _settled(item, now)
        ]
        held = [lease for lease in leases if lease is not None and lease != _GONE]
        erased = len(settled) + sum(lease is None for lease in leases)
        return Erasure(erased, len(held), max((retry_after_s(lease, now) for lease in held), default=0))

    def _delete_unless_held(self, key: Item, now: int) -> int | None:
        """Delete one fact unless a live lease holds it: None when deleted, the lease's end (``>= now``) when held,
        ``_GONE`` when there was nothing to delete."""
        for _ in range(_ERASE_ATTEMPTS):
            try:
                answer = self._client.delete_item(
                    TableName=self._table,
                    Key=key,
                    ConditionExpression="NOT (#status = :pending AND lease_until >= :now)",
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={":pending": {"S": PENDING}, ":now": {"N": str(now)}},
                    ReturnValues="ALL_OLD",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                if _error_code(exc) != "ConditionalCheckFailedException":
                    raise DedupUnavailableError(_error_code(exc)) from exc
                try:
                    item = _failed_on(self._client, self._table, key, exc)
                except (ClientError, BotoCoreError, OSError) as read_error:
                    raise DedupUnavailableError(_error_code(read_error)) from read_error
                if not item:
                    return _GONE
                lease = _number(item, "lease_until")
                if item.get("status", {}).get("S") == PENDING and lease >= now:
                    return lease
                continue  # settled or released since the delete was refused: delete it now
            except (BotoCoreError, OSError) as exc:
                raise DedupUnavailableError(_error_code(exc)) from exc
            return None if answer.get("Attributes") else _GONE
        return now  # its lease keeps changing hands: held, erase again in a moment


def retry_after_s(lease_until: int, now: int) -> int:
    """Seconds until a lease held at ``now`` is over: at least 1 (whole seconds: a lease ending at second ``t``
    is over once the clock passes ``t``)."""
    return max(lease_until - now, 0) + 1


def _settled(item: Mapping[str, Any], now: int) -> bool:
    """Whether an item is a fact known SENT and not expired: final, nothing writes it again but an erase."""
    return item.get("status", {}).get("S") == SENT and _number(item, "expires_at") > now


def _fact_key(item: Mapping[str, Any]) -> str:
    """The fact key of an item: its sort key, with the original id (``fact_name``, on hashed keys of either
    marker) in place of a hash."""
    key = str(item["sk"]["S"])
    name = item.get("fact_name", {}).get("S")
    return key if name is None else f"{key.rsplit('#', 1)[0]}#{name}"


# -- workspace health --------------------------------------------------------------------------------------


_COUNTERS = "delivered :delivered, messages :messages, failed :failed, parked :parked"
_HEALTH_ATTEMPTS = 3


def _health_update(tally: Tally, now_s: int, stored: Mapping[str, Any]) -> dict[str, Any]:
    """The UpdateItem parameters adding ``tally`` to a bucket: each "latest" moment set on condition that the bucket
    holds none later, and left out when ``stored`` (the bucket as last read) already does."""
    sets, conditions = ["expires_at = :expires"], []
    values: Item = {
        ":delivered": {"N": str(tally.delivered)},
        ":messages": {"N": str(tally.messages)},
        ":failed": {"N": str(tally.failed)},
        ":parked": {"N": str(tally.parked)},
        ":expires": {"N": str(now_s + BUCKET_TTL_S)},
    }
    if tally.last_delivery_at is not None and tally.last_delivery_at >= _number(stored, "last_delivery_at"):
        sets.append("last_delivery_at = :delivery_at, last_delivery_messages = :delivery_messages")
        conditions.append("(attribute_not_exists(last_delivery_at) OR last_delivery_at <= :delivery_at)")
        values[":delivery_at"] = {"N": str(tally.last_delivery_at)}
        values[":delivery_messages"] = {"N": str(tally.last_delivery_messages)}
    if tally.last_failure_at is not None and tally.last_failure_at >= _number(stored, "last_failure_at"):
        sets.append("last_failure_at = :failure_at, last_failure_reason = :failure_reason")
        conditions.append("(attribute_not_exists(last_failure_at) OR last_failure_at <= :failure_at)")
        values[":failure_at"] = {"N": str(tally.last_failure_at)}
        values[":failure_reason"] = {"S": tally.last_failure_reason[:300] or "-"}
    update: dict[str, Any] = {
        "UpdateExpression": f"ADD {_COUNTERS} SET " + ", ".join(sets),
        "ExpressionAttributeValues": values,
    }
    if conditions:
        update["ConditionExpression"] = " AND ".join(conditions)
    return update


class HealthLedger:
    """Hourly buckets of each workspace's delivery health (``pk = HEALTH#<workspace>``, ``sk`` = the hour),
    summed from every function's tallies, kept two days::

        ledger = HealthLedger(dynamodb_client, "table")
        ledger.add("demo", tally, hour="2026-11-30T07", now_s=now)    # one UpdateItem; DedupUnavailableError
        ledger.buckets("demo", since_hour="2026-11-29T07")            # [Bucket, ...]
    """

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def add(self, workspace_id: str, tally: Tally, *, hour: str, now_s: int) -> None:
        """Add a tally to its hour's bucket: counters added, the latest delivery and failure set unless the bucket
        holds later ones (a tally kept for a minute is written after other functions' newer ones)."""
        stored: Item = {}
        key: Item = {"pk": {"S": f"HEALTH#{workspace_id}"}, "sk": {"S": hour}}
        for _ in range(_HEALTH_ATTEMPTS):
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=key,
                    **_health_update(tally, now_s, stored),
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return
            except ClientError as exc:
                if _error_code(exc) != "ConditionalCheckFailedException":
                    raise DedupUnavailableError(_error_code(exc)) from exc
                try:  # the bucket as it stands: leave out what it holds later
                    stored = _failed_on(self._client, self._table, key, exc)
                except (ClientError, BotoCoreError, OSError) as read_error:
                    raise DedupUnavailableError(_error_code(read_error)) from read_error
            except (BotoCoreError, OSError) as exc:
                raise DedupUnavailableError(_error_code(exc)) from exc
        raise DedupUnavailableError("health bucket contended")

    def buckets(self, workspace_id: str, *, since_hour: str) -> list[Bucket]:
        """The workspace's buckets from ``since_hour`` on (one Query)."""
        try:
            answer = self._client.query(
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND sk >= :since",
                ExpressionAttributeValues={":pk": {"S": f"HEALTH#{workspace_id}"}, ":since": {"S": since_hour}},
            )
        except (ClientError, BotoCoreError, OSError) as exc:
            raise DedupUnavailableError(_error_code(exc)) from exc
        return [
            Bucket(
                hour=str(item["sk"]["S"]),
                delivered=_number(item, "delivered"),
                messages=_number(item, "messages"),
                failed=_number(item, "failed"),
                parked=_number(item, "parked"),
                last_delivery_at=_number(item, "last_delivery_at") or None,
                last_delivery_messages=_number(item, "last_delivery_messages"),
                last_failure_at=_number(item, "last_failure_at") or None,
                last_failure_reason=item.get("last_failure_reason", {}).get("S", ""),
            )
            for item in answer.get("Items", [])
        ]
