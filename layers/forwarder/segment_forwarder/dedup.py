"""The dedup table (DynamoDB): one item per "once" fact. The only module that talks to the table.

A claim is one conditional UpdateItem. It wins when the item is absent or PENDING with an expired lease (a
crashed or failed attempt); an item past its expiry (TTL deletion lags by days) is replaced as if absent. The
first claim records the fact's content; a later claim keeps it (``if_not_exists``), so every resend carries what
the first attempt recorded. A claim that loses gets the item as it stands (ALL_OLD; read with a
consistent GetItem where the failure comes back without it, as from engines that ignore ALL_OLD)::

    store = DedupStore(dynamodb_client, "table", lease_seconds=90, visitor_ttl_seconds=..., event_ttl_seconds=...)
    claims = store.claim_all(claim_requests(events), precheck=True)    # {slot: Claim}, concurrently
    claims[slot].answer.state                       # CLAIMED / SENT / IN_FLIGHT / ERASED / UNAVAILABLE / INVALID
    store.confirm([requests of to_confirm(answers)])  # the visitors' IDENTIFY items, read again (consistent)
    store.mark_sent([(claims[slot], message_id, generation)])   # BatchWriteItem, 25 a request
    store.release([claims[slot]])                    # a retry can claim at once
    store.forget([claims[slot]])                     # claimed for an erased visitor's event: deleted

Item: ``pk = WS#<workspace>#V#<visitor>``, ``sk`` = the fact's key (a fact id over ``MAX_KEY_NAME_BYTES`` is
replaced by ``HASHED_MARKER`` and its SHA-256, the id kept in ``fact_name``; the marker starts with a control
character no valid id holds, so a literal id ``sha256:<hex>`` never shares a hashed id's item), ``status``
(PENDING | SENT), ``message_id`` (written with SENT), ``generation`` (the visitor's generation it was delivered
in), ``content`` (JSON), ``first_attempt_at``, ``delivered_at``, ``attempts``, ``lease_until``, ``claim_token``,
``updated_at`` and ``expires_at`` (the TTL attribute).

**Erasure.** The visitor's IDENTIFY item also holds its erasure: an erase (``VisitorFacts.erase``) replaces it
with a *tombstone* ``{pk, sk, erased_at (ms), generation, expires_at}`` (no status, no content; kept
``ERASURE_TOMBSTONE_DAYS``, longer than any queue keeps an event) and then deletes the visitor's other facts
page by page. Every call claims (or, for a workspace that does not forward Identify, reads) the visitor's
IDENTIFY in the same round trip as its other facts, never from memory, so an erase is seen at once everywhere:

* a claim of a tombstone wins only for an event received after ``erased_at`` (it keeps ``erased_at`` and
  ``generation``: the visitor's next event is a first sighting again); else it answers ``ERASED`` and the event
  is dropped (``skipped``/``erased``): a retry of an event received before the erase is never sent again;
* messageIds derive from ``generation`` (``messages.message_id``), so an erased visitor's new facts carry ids
  Segment has never seen (it drops a repeated messageId for about a day);
* a fact found SENT in an older generation (the erase has not deleted it yet) sends nothing: the event comes
  back (``erase_in_progress``) once the erase has removed it;
* an erase may come between a call's IDENTIFY claim and its claim of another fact: a call that claimed a fact
  without holding the visitor's IDENTIFY reads that item again (consistently) before sending anything
  (``facts.to_confirm``). An erase cannot take an IDENTIFY a delivery holds (it answers ``in_flight``).

Keys hashed before the marker changed (``KIND#sha256:<hex>``, with ``fact_name``) stay readable: ``make lookup``
and erasure list and delete them as before. A claim does not look for them, so a fact with such a long id that
was recorded before the change (an id over 200 bytes: rare) is claimed anew at its next occurrence and sent once
more, under the same messageId (message ids derive from the fact, not from the sort key: Segment drops the
repeat within its deduplication window, about a day); the old item expires with its TTL.

Repeats cost no write on the SQS path: with ``precheck`` the store first reads every fact with one consistent
BatchGetItem per 100 (SENT answers, and an IDENTIFY tombstone that refuses every event, come from it); only the
rest is claimed. Nothing is remembered between calls: no memory could learn of an erase made elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast

from botocore.exceptions import BotoCoreError, ClientError

from .errors import UnavailableError
from .facts import IDENTIFY, ClaimAnswer, ClaimRequest, ClaimState, Fact, Slot
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
    "content = if_not_exists(content, :content), "
    "first_attempt_at = if_not_exists(first_attempt_at, :now), expires_at = if_not_exists(expires_at, :expires) "
    "ADD attempts :one"
)
# IDENTIFY may replace a tombstone, whose short expiry must give way to a visitor fact's
_IDENTIFY_CLAIM_UPDATE = _CLAIM_UPDATE.replace(
    "expires_at = if_not_exists(expires_at, :expires)", "expires_at = :expires"
)
# A tombstone (no status) is claimable by an event received after the erasure it records.
_CLAIM_CONDITION = (
    "attribute_not_exists(pk) OR (#status = :pending AND lease_until < :now AND expires_at > :now) "
    "OR (attribute_not_exists(#status) AND erased_at <= :received)"
)
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
ERASE_PAGE = 100  # facts read (and deleted, concurrently) per step of an erase
ERASE_THREADS = 16
_ERASE_ATTEMPTS = 3  # deletes of one fact whose lease ended between the refused delete and the read


class DedupUnavailableError(UnavailableError):
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
    ) -> None:
        self._client = client
        self._table = table_name
        self._lease = lease_seconds
        self._ttl = {True: visitor_ttl_seconds, False: event_ttl_seconds}
        self._clock = clock
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
        """Claim every requested fact (probes: read), concurrently; with ``precheck`` first read them all with one
        consistent BatchGetItem per 100, and claim only those not answered by the read.

        Never raises: failures are UNAVAILABLE / INVALID answers.
        """
        claims: dict[Slot, Claim] = {}
        pending = list(requests)
        if precheck and pending:
            claims.update(self._read(pending, final=False))
            pending = [request for request in pending if request.slot not in claims]
        probes = [request for request in pending if request.probe]
        if probes:
            claims.update(self._read(probes, final=True))
        claims.update({claim.slot: claim for claim in self._map(self.claim, [r for r in pending if not r.probe])})
        return claims

    def confirm(self, requests: Sequence[ClaimRequest]) -> dict[Slot, Claim]:
        """Read the requested IDENTIFY items again, consistently (``facts.to_confirm``): after the claims."""
        return self._read(list(requests), final=True)

    def _read(self, requests: Sequence[ClaimRequest], *, final: bool) -> dict[Slot, Claim]:
        """Answers read from the items (consistent). ``final`` (probes, confirmations): an answer for every
        request, an unreadable item UNAVAILABLE. Else (the precheck) only the facts a read settles: SENT, and an
        IDENTIFY tombstone that refuses every event of the call; the rest is claimed."""
        by_key = {(partition_key(r.slot.workspace_id, r.slot.visitor_id), sort_key(r.slot.fact)): r for r in requests}
        keys = [_key(request.slot) for request in requests]
        chunks = [keys[start : start + _BATCH_GET_LIMIT] for start in range(0, len(keys), _BATCH_GET_LIMIT)]
        found: dict[Slot, Claim] = {}
        now = int(self._clock())
        failed = False
        for items, complete in self._map(self._batch_get, chunks):
            failed = failed or not complete
            for item in items:
                request = by_key[(item["pk"]["S"], item["sk"]["S"])]
                answer = _read_answer(item, request, now)
                if final or answer.state in (ClaimState.SENT, ClaimState.ERASED):
                    found[request.slot] = Claim(request.slot, answer, item)
        if final:
            for request in requests:
                if request.slot not in found:
                    state = ClaimState.UNAVAILABLE if failed else ClaimState.ABSENT
                    found[request.slot] = Claim(
                        request.slot, ClaimAnswer(state, reason="read failed" if failed else "")
                    )
        return found

    def _batch_get(self, keys: list[Item]) -> tuple[list[Item], bool]:
        """The items found (consistent reads), and whether every key was read."""
        items: list[Item] = []
        pending = keys
        for attempt in range(_UNPROCESSED_RETRIES + 1):
            try:
                answer = self._client.batch_get_item(
                    RequestItems={
                        self._table: {
                            "Keys": pending,
                            "ConsistentRead": True,
                            "ProjectionExpression": "pk, sk, #status, content, expires_at, generation, erased_at",
                            "ExpressionAttributeNames": {"#status": "status"},
                        }
                    }
                )
            except (ClientError, BotoCoreError, OSError):
                return items, False  # the claims decide without it
            items.extend(answer.get("Responses", {}).get(self._table, []))
            unprocessed = answer.get("UnprocessedKeys", {}).get(self._table)
            if not unprocessed:
                return items, True
            pending = unprocessed["Keys"]
            time.sleep(min(0.05 * 2**attempt, 0.5))
        return items, False

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
            ":content": {"S": content},
            ":expires": {"N": str(now + self._ttl[slot.fact.per_visitor])},
            ":one": {"N": "1"},
            ":received": {"N": str(request.received_ms)},
        }
        update = _IDENTIFY_CLAIM_UPDATE if slot.fact == IDENTIFY else _CLAIM_UPDATE
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
                return Claim(slot, _read_answer(old, request, now), old)
            except (BotoCoreError, OSError) as exc:  # network errors, timeouts
                return self._failed(slot, exc)
            item: Item = dict(answer.get("Attributes") or {})
            return Claim(slot, _answer(ClaimState.CLAIMED, item), item, token)
        return Claim(slot, ClaimAnswer(ClaimState.UNAVAILABLE, reason="contended"))

    def _replace_expired(self, request: ClaimRequest, old: Item, values: Item, token: str) -> Claim:
        """An item past its expiry is a fact of a former life: replace it, unless another attempt did first."""
        slot, now = request.slot, int(values[":now"]["N"])
        item: Item = {
            **_key(slot),
            "status": {"S": PENDING},
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

    def mark_sent(self, marks: Iterable[tuple[Claim, str, int]]) -> None:
        """Record facts as SENT by the message with the given id, in the visitor's given generation
        (BatchWriteItem, 25 a request).

        Unconditional on purpose: the message went out under the fact's one id with its recorded content, so
        SENT is true whoever holds the lease now (an erase leaves a fact a delivery holds in place and answers
        ``in_flight``). An IDENTIFY keeps the erasure it records. Raises DedupUnavailableError when not every
        item was written.
        """
        now = str(int(self._clock()))
        requests: list[WriteRequestTypeDef] = []
        for claim, message_id, generation in marks:
            item = {k: v for k, v in claim.item.items() if k not in ("lease_until", "claim_token")}
            item.update(
                status={"S": SENT},
                message_id={"S": message_id},
                generation={"N": str(generation)},
                delivered_at={"N": now},
                updated_at={"N": now},
            )
            requests.append({"PutRequest": {"Item": item}})
        _batch_write(self._client, self._table, requests)

    def forget(self, claims: Sequence[Claim]) -> None:
        """Undo claims made with the content of an erased visitor's event: nothing of it stays in the table. A
        fact is deleted; an IDENTIFY (which holds the erasure) becomes the tombstone it was, on condition that
        this call still holds it. The call holds their leases, so nothing else wrote them since; best effort
        (else the item holds no more than the event's content, and the next erase deletes it)."""
        held = [claim for claim in claims if claim.token]
        requests: list[WriteRequestTypeDef] = [
            {"DeleteRequest": {"Key": _key(claim.slot)}} for claim in held if claim.slot.fact != IDENTIFY
        ]
        self._map(self._to_tombstone, [claim for claim in held if claim.slot.fact == IDENTIFY])
        try:
            _batch_write(self._client, self._table, requests)
        except DedupUnavailableError:
            return

    def _to_tombstone(self, claim: Claim) -> None:
        erased_at = _number(claim.item, "erased_at")
        if not erased_at:
            return  # not a visitor's new life: nothing to restore
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(claim.slot),
                UpdateExpression=(
                    "REMOVE #status, content, lease_until, claim_token, first_attempt_at, attempts, updated_at "
                    "SET expires_at = :expires"
                ),
                ConditionExpression="claim_token = :token",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":token": {"S": claim.token},
                    ":expires": {"N": str(erased_at // 1000 + ERASURE_TOMBSTONE_SECONDS)},
                },
            )
        except (ClientError, BotoCoreError, OSError):
            return

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


def _answer(state: ClaimState, item: Mapping[str, Any], reason: str = "") -> ClaimAnswer:
    return ClaimAnswer(
        state,
        _content(item),
        reason,
        generation=_number(item, "generation"),
        erased_at_ms=_number(item, "erased_at"),
    )


def _read_answer(item: Mapping[str, Any], request: ClaimRequest, now: int) -> ClaimAnswer:
    """What an item as it stands answers a request that does not claim it: SENT, IN_FLIGHT (PENDING), for a
    tombstone ERASED when the erasure came after every event of the call (else ABSENT: the visitor's next event
    is a first sighting), ABSENT for an expired item."""
    status = item.get("status", {}).get("S")
    if _number(item, "expires_at") <= now:
        return ClaimAnswer(ClaimState.ABSENT)
    if status == SENT:
        return _answer(ClaimState.SENT, item)
    if status is None:
        erased = _number(item, "erased_at") > request.received_ms
        return _answer(ClaimState.ERASED if erased else ClaimState.ABSENT, item)
    return _answer(ClaimState.IN_FLIGHT, item)


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
    """What an erase did: the facts removed; those a delivery holds right now (PENDING under a live lease), left
    in place because that delivery records them when it ends (erase again after ``retry_after_s``); and whether
    it is ``complete`` (else it ran out of time or met held facts: call again)."""

    erased: int
    in_flight: int = 0
    retry_after_s: int = 0
    complete: bool = True


_NOT_HELD = "NOT (#status = :pending AND lease_until >= :now)"
_TOMBSTONE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class _Tombstone:
    generation: int  # the visitor's new generation
    identify_erased: bool  # the IDENTIFY it replaced was a fact (not a tombstone)


@dataclass(frozen=True, slots=True)
class _Held:
    lease_until: int


ERASURE_TOMBSTONE_SECONDS = 21 * 86_400  # the queue keeps an event 14 days, plus a retry horizon before and after
ERASE_SAFETY_S = 2.0  # time kept for answering when an erase stops early


class VisitorFacts:
    """What the table knows of one visitor, for the people who run the service::

        facts = VisitorFacts(dynamodb_client, "table")
        facts.list("demo", "v-1")        # [FactRecord, ...]
        facts.erase("demo", "v-1", time_left_s=lambda: context.get_remaining_time_in_millis() / 1000)
        # Erasure(erased=3, in_flight=0, retry_after_s=0, complete=True): the visitor is unknown from then on

    Raises DedupUnavailableError when DynamoDB fails.
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        clock: Callable[[], float] = time.time,
        tombstone_seconds: int = ERASURE_TOMBSTONE_SECONDS,
    ) -> None:
        self._client = client
        self._table = table_name
        self._clock = clock
        self._tombstone_s = tombstone_seconds
        self._pool: ThreadPoolExecutor | None = None

    def _query(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return cast("dict[str, Any]", self._client.query(**params))
        except (ClientError, BotoCoreError, OSError) as exc:
            raise DedupUnavailableError(_error_code(exc)) from exc

    def _items(self, workspace_id: str, visitor_id: str) -> list[Item]:
        items: list[Item] = []
        start: Item | None = None
        while True:
            params: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": partition_key(workspace_id, visitor_id)}},
                "ConsistentRead": True,
            }
            if start:
                params["ExclusiveStartKey"] = start
            answer = self._query(params)
            items.extend(answer.get("Items", []))
            start = answer.get("LastEvaluatedKey")
            if not start:
                return items

    def list(self, workspace_id: str, visitor_id: str) -> list[FactRecord]:
        """The visitor's facts, by key (a consistent read); an erasure's tombstone is not a fact."""
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
            if "status" in item
        ]

    def erase(
        self, workspace_id: str, visitor_id: str, *, time_left_s: Callable[[], float] = lambda: float("inf")
    ) -> Erasure:
        """Erase the visitor: its IDENTIFY becomes a tombstone (the erase takes effect there, at once, for every
        function: events received before now are dropped, the next one is a first sighting in a new generation),
        then its other facts are deleted page by page while ``time_left_s()`` allows.

        Deletes only (``DeleteItem``, concurrently; the tombstone is one ``PutItem`` of a content-free item).
        A fact a delivery holds (PENDING under a live lease) is left (that delivery marks it SENT when it ends):
        ``in_flight``, erase again after ``retry_after_s``; an IDENTIFY held so stops the erase before anything
        is done. A fact of the new generation (delivered after this erase) is not touched. Each call is an erase
        of its own: it writes a new tombstone (now, next generation) and resumes deleting what is left.
        """
        now = int(self._clock())
        tombstone = self._tombstone(workspace_id, visitor_id, now)
        if isinstance(tombstone, _Held):
            return Erasure(0, 1, max(tombstone.lease_until - now + 1, 1), complete=False)
        generation = tombstone.generation
        erased, in_flight, leases = int(tombstone.identify_erased), 0, [0]
        start: Item | None = None
        while True:
            params: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": partition_key(workspace_id, visitor_id)}},
                "ConsistentRead": True,
                "Limit": ERASE_PAGE,
                "ProjectionExpression": "pk, sk",
            }
            if start:
                params["ExclusiveStartKey"] = start
            answer = self._query(params)
            keys = [{"pk": i["pk"], "sk": i["sk"]} for i in answer.get("Items", []) if i["sk"]["S"] != IDENTIFY.key]
            for result in self._map(lambda key: self._delete(key, now, generation), keys):
                if result is None:
                    erased += 1
                elif result >= 0:
                    in_flight += 1
                    leases.append(result)
            start = answer.get("LastEvaluatedKey")
            if not start:
                return Erasure(erased, in_flight, max(max(leases) - now + 1, 1) if in_flight else 0, not in_flight)
            if time_left_s() < ERASE_SAFETY_S:
                return Erasure(erased, in_flight, max(max(leases) - now + 1, 1) if in_flight else 0, complete=False)

    def _map[T, R](self, fn: Callable[[T], R], items: Sequence[T]) -> Sequence[R]:
        if len(items) <= 1:
            return [fn(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=ERASE_THREADS, thread_name_prefix="erase")
        return list(self._pool.map(fn, items))

    def _tombstone(self, workspace_id: str, visitor_id: str, now: int) -> _Tombstone | _Held:
        """Replace the visitor's IDENTIFY by a tombstone of the next generation (conditional on the item read, so
        a claim or another erase in between is seen); ``_Held`` when a delivery holds it (nothing done)."""
        key = {"pk": {"S": partition_key(workspace_id, visitor_id)}, "sk": {"S": IDENTIFY.key}}
        for _ in range(_TOMBSTONE_ATTEMPTS):
            found = self._query(
                {
                    "TableName": self._table,
                    "KeyConditionExpression": "pk = :pk AND sk = :sk",
                    "ExpressionAttributeValues": {":pk": key["pk"], ":sk": key["sk"]},
                    "ConsistentRead": True,
                }
            ).get("Items", [])
            old = found[0] if found else None
            lease = _number(old or {}, "lease_until")
            if old is not None and old.get("status", {}).get("S") == PENDING and lease >= now:
                return _Held(lease)
            generation = _number(old or {}, "generation") + 1
            values: Item = {":pending": {"S": PENDING}, ":now": {"N": str(now)}}
            params: dict[str, Any] = {
                "TableName": self._table,
                "Item": {
                    **key,
                    "erased_at": {"N": str(int(self._clock() * 1000))},
                    "generation": {"N": str(generation)},
                    "expires_at": {"N": str(now + self._tombstone_s)},
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
            if old is not None:
                same = "generation = :generation" if "generation" in old else "attribute_not_exists(generation)"
                params["ConditionExpression"] = f"attribute_exists(pk) AND {same} AND {_NOT_HELD}"
                params["ExpressionAttributeNames"] = {"#status": "status"}
                params["ExpressionAttributeValues"] = values
                if "generation" in old:
                    values[":generation"] = old["generation"]
            try:
                self._client.put_item(**params)
            except ClientError as exc:
                if _error_code(exc) != "ConditionalCheckFailedException":
                    raise DedupUnavailableError(_error_code(exc)) from exc
                continue  # claimed or erased meanwhile: read it again
            except (BotoCoreError, OSError) as exc:
                raise DedupUnavailableError(_error_code(exc)) from exc
            return _Tombstone(generation, old is not None and "status" in old and _number(old, "expires_at") > now)
        raise DedupUnavailableError("the visitor's IDENTIFY item is contended")

    def _delete(self, key: Item, now: int, generation: int) -> int | None:
        """Delete one fact unless a live lease holds it or it was delivered in ``generation`` (after this erase):
        None when deleted, its lease when held, -1 when gone or of the new generation. The item a refused delete
        met is the one the failure carries, else read consistently (``_failed_on``)."""
        for _ in range(_ERASE_ATTEMPTS):
            try:
                answer = self._client.delete_item(
                    TableName=self._table,
                    Key=key,
                    ConditionExpression=(
                        f"{_NOT_HELD} AND (attribute_not_exists(generation) OR generation < :generation)"
                    ),
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={
                        ":pending": {"S": PENDING},
                        ":now": {"N": str(now)},
                        ":generation": {"N": str(generation)},
                    },
                    ReturnValues="ALL_OLD",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                if _error_code(exc) != "ConditionalCheckFailedException":
                    raise DedupUnavailableError(_error_code(exc)) from exc
                try:
                    old = _failed_on(self._client, self._table, key, exc)
                except (ClientError, BotoCoreError, OSError) as read_error:
                    raise DedupUnavailableError(_error_code(read_error)) from read_error
                if not old or _number(old, "generation") >= generation:
                    return -1
                lease = _number(old, "lease_until")
                if old.get("status", {}).get("S") == PENDING and lease >= now:
                    return lease
                continue  # settled or released since the delete was refused: delete it now
            except (BotoCoreError, OSError) as exc:
                raise DedupUnavailableError(_error_code(exc)) from exc
            return None if answer.get("Attributes") else -1
        return now  # its lease keeps changing hands: held, erase again in a moment


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
