"""The claim store: deliveries claim, mark SENT, release and forget the facts they send, in the table.

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

The items' layout is in ``table``. Every call claims (or, for a workspace that does not forward Identify, reads)
the visitor's IDENTIFY in the same round trip as its other facts, never from memory, so an erase
(``visitor_facts``) is seen at once everywhere:

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

A claim does not look for keys hashed under the former marker (``KIND#sha256:<hex>``), so a fact with such a long
id that was recorded before the change (an id over 200 bytes: rare) is claimed anew at its next occurrence and sent
once more, under the same messageId (message ids derive from the fact, not from the sort key: Segment drops the
repeat within its deduplication window, about a day); the old item expires with its TTL.

Repeats cost no write on the SQS path: with ``precheck`` the store first reads every fact with one consistent
BatchGetItem per 100 (SENT answers, and an IDENTIFY tombstone that refuses every event, come from it); only the
rest is claimed. Nothing is remembered between calls: no memory could learn of an erase made elsewhere.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from .errors import error_code
from .facts import IDENTIFY, ClaimAnswer, ClaimRequest, ClaimState, Slot
from .table import (
    ERASURE_TOMBSTONE_SECONDS,
    PENDING,
    SENT,
    TABLE_ERRORS,
    DedupUnavailableError,
    Item,
    RequestPool,
    condition_failed,
    content,
    failed_on,
    key,
    number,
    partition_key,
    sort_key,
    unavailable,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import WriteRequestTypeDef
else:
    DynamoDBClient = Any

# A tombstone (no status) is claimable by an event received after the erasure it records.
_CLAIM_CONDITION = (
    "attribute_not_exists(pk) OR (#status = :pending AND lease_until < :now AND expires_at > :now) "
    "OR (attribute_not_exists(#status) AND erased_at <= :received)"
)
_BATCH_WRITE_LIMIT = 25
_CLAIM_ATTEMPTS = 3  # a claim that failed on an item erased before it was read claims again, this many times in all
_UNPROCESSED_RETRIES = 5
# The table refused the request itself: retrying the same request can never succeed.
PERMANENT_ERRORS = frozenset({"ValidationException", "SerializationException"})
CLAIM_THREADS = 16
_BATCH_GET_LIMIT = 100


def claim_update(*, identify: bool, hashed: bool) -> str:
    """The UpdateExpression of a claim: the lease taken, the first attempt's content and times kept, one attempt
    added. An IDENTIFY sets its expiry (it may replace a tombstone, whose short expiry must give way to a visitor
    fact's); a fact under a hashed key records its id (``fact_name``)::

        claim_update(identify=False, hashed=False)  # "SET #status = :pending, ... ADD attempts :one"
    """
    sets = [
        "#status = :pending",
        "lease_until = :lease",
        "claim_token = :token",
        "updated_at = :now",
        "content = if_not_exists(content, :content)",
        "first_attempt_at = if_not_exists(first_attempt_at, :now)",
        "expires_at = :expires" if identify else "expires_at = if_not_exists(expires_at, :expires)",
    ]
    if hashed:
        sets.append("fact_name = :name")
    return f"SET {', '.join(sets)} ADD attempts :one"


@dataclass(frozen=True, slots=True)
class Claim:
    """A claim's answer, and (for the store) the item as it stands after the claim and its lease token."""

    slot: Slot
    answer: ClaimAnswer
    item: Item = field(default_factory=dict, repr=False)
    token: str = ""


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
        self._pool = RequestPool(CLAIM_THREADS, "dedup")

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
        claims.update({claim.slot: claim for claim in self._pool.map(self.claim, [r for r in pending if not r.probe])})
        return claims

    def confirm(self, requests: Sequence[ClaimRequest]) -> dict[Slot, Claim]:
        """Read the requested IDENTIFY items again, consistently (``facts.to_confirm``): after the claims."""
        return self._read(list(requests), final=True)

    def _read(self, requests: Sequence[ClaimRequest], *, final: bool) -> dict[Slot, Claim]:
        """Answers read from the items (consistent). ``final`` (probes, confirmations): an answer for every
        request, an unreadable item UNAVAILABLE. Else (the precheck) only the facts a read settles: SENT, and an
        IDENTIFY tombstone that refuses every event of the call; the rest is claimed."""
        by_key = {(partition_key(r.slot.workspace_id, r.slot.visitor_id), sort_key(r.slot.fact)): r for r in requests}
        keys = [key(request.slot) for request in requests]
        chunks = [keys[start : start + _BATCH_GET_LIMIT] for start in range(0, len(keys), _BATCH_GET_LIMIT)]
        found: dict[Slot, Claim] = {}
        now = int(self._clock())
        failed = False
        for items, complete in self._pool.map(self._batch_get, chunks):
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
            except TABLE_ERRORS:
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
        recorded = json.dumps(request.content, separators=(",", ":"), ensure_ascii=False)
        values: Item = {
            ":pending": {"S": PENDING},
            ":lease": {"N": str(now + self._lease)},
            ":token": {"S": token},
            ":now": {"N": str(now)},
            ":content": {"S": recorded},
            ":expires": {"N": str(now + self._ttl[slot.fact.per_visitor])},
            ":one": {"N": "1"},
            ":received": {"N": str(request.received_ms)},
        }
        hashed = sort_key(slot.fact) != slot.fact.key
        if hashed:
            values[":name"] = {"S": slot.fact.name}
        update = claim_update(identify=slot.fact == IDENTIFY, hashed=hashed)
        for _ in range(_CLAIM_ATTEMPTS):
            try:
                answer = self._client.update_item(
                    TableName=self._table,
                    Key=key(slot),
                    UpdateExpression=update,
                    ConditionExpression=_CLAIM_CONDITION,
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except TABLE_ERRORS as exc:  # the service's refusals, network errors, timeouts
                if not condition_failed(exc):
                    return self._failed(slot, exc)
                try:
                    old = failed_on(self._client, self._table, key(slot), exc)
                except TABLE_ERRORS as read_error:
                    return self._failed(slot, read_error)
                if not old:
                    continue  # erased since the claim failed: claim again
                if number(old, "expires_at") <= now:
                    return self._replace_expired(request, old, values, token)
                return Claim(slot, _read_answer(old, request, now), old)
            item: Item = dict(answer.get("Attributes") or {})
            return Claim(slot, _answer(ClaimState.CLAIMED, item), item, token)
        return Claim(slot, ClaimAnswer(ClaimState.UNAVAILABLE, reason="contended"))

    def _replace_expired(self, request: ClaimRequest, old: Item, values: Item, token: str) -> Claim:
        """An item past its expiry is a fact of a former life: replace it, unless another attempt did first."""
        slot, now = request.slot, int(values[":now"]["N"])
        item: Item = {
            **key(slot),
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
        except TABLE_ERRORS as exc:
            if condition_failed(exc):
                return Claim(slot, ClaimAnswer(ClaimState.IN_FLIGHT, content(old)), old)
            return self._failed(slot, exc)
        return Claim(slot, ClaimAnswer(ClaimState.CLAIMED, request.content), item, token)

    @staticmethod
    def _failed(slot: Slot, exc: Exception) -> Claim:
        code = error_code(exc)
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
            {"DeleteRequest": {"Key": key(claim.slot)}} for claim in held if claim.slot.fact != IDENTIFY
        ]
        self._pool.map(self._to_tombstone, [claim for claim in held if claim.slot.fact == IDENTIFY])
        try:
            _batch_write(self._client, self._table, requests)
        except DedupUnavailableError:
            return

    def _to_tombstone(self, claim: Claim) -> None:
        erased_at = number(claim.item, "erased_at")
        if not erased_at:
            return  # not a visitor's new life: nothing to restore
        try:
            self._client.update_item(
                TableName=self._table,
                Key=key(claim.slot),
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
        except TABLE_ERRORS:
            return

    def release(self, claims: Sequence[Claim]) -> None:
        """Give up leases after a failed delivery so a retry can claim at once (best effort: else the lease
        simply expires). Only this attempt's lease is released (conditional on its token)."""
        self._pool.map(self._release, [claim for claim in claims if claim.token])

    def _release(self, claim: Claim) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=key(claim.slot),
                UpdateExpression="SET lease_until = :zero",
                ConditionExpression="claim_token = :token AND #status = :pending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":zero": {"N": "0"},
                    ":token": {"S": claim.token},
                    ":pending": {"S": PENDING},
                },
            )
        except TABLE_ERRORS:
            return  # the lease then simply expires; nothing is lost


def _answer(state: ClaimState, item: Mapping[str, Any], reason: str = "") -> ClaimAnswer:
    return ClaimAnswer(
        state,
        content(item),
        reason,
        generation=number(item, "generation"),
        erased_at_ms=number(item, "erased_at"),
    )


def _read_answer(item: Mapping[str, Any], request: ClaimRequest, now: int) -> ClaimAnswer:
    """What an item as it stands answers a request that does not claim it: SENT, IN_FLIGHT (PENDING), for a
    tombstone ERASED when the erasure came after every event of the call (else ABSENT: the visitor's next event
    is a first sighting), ABSENT for an expired item."""
    status = item.get("status", {}).get("S")
    if number(item, "expires_at") <= now:
        return ClaimAnswer(ClaimState.ABSENT)
    if status == SENT:
        return _answer(ClaimState.SENT, item)
    if status is None:
        erased = number(item, "erased_at") > request.received_ms
        return _answer(ClaimState.ERASED if erased else ClaimState.ABSENT, item)
    return _answer(ClaimState.IN_FLIGHT, item)


def _batch_write(client: DynamoDBClient, table: str, requests: Sequence[WriteRequestTypeDef]) -> None:
    """BatchWriteItem, 25 a request, unprocessed items retried; DedupUnavailableError when not all were written."""
    for start in range(0, len(requests), _BATCH_WRITE_LIMIT):
        pending = list(requests[start : start + _BATCH_WRITE_LIMIT])
        for attempt in range(_UNPROCESSED_RETRIES + 1):
            try:
                answer = client.batch_write_item(RequestItems={table: pending})
            except TABLE_ERRORS as exc:
                raise unavailable(exc) from exc
            pending = cast("list[WriteRequestTypeDef]", answer.get("UnprocessedItems", {}).get(table, []))
            if not pending:
                break
            time.sleep(min(0.05 * 2**attempt, 0.5))
        if pending:
            raise DedupUnavailableError(f"{len(pending)} items unprocessed")
