"""A visitor's facts, for the people who run the service: list them (``make lookup``) and erase the visitor.

An erase (``VisitorFacts.erase``) replaces the visitor's IDENTIFY item with a *tombstone* ``{pk, sk, erased_at
(ms), generation, expires_at}`` (no status, no content; kept ``ERASURE_TOMBSTONE_SECONDS``, longer than any queue
keeps an event) and then deletes the visitor's other facts page by page. Claims (``claims``) read the IDENTIFY in
every call, so the erase takes effect at once everywhere: an event received before it is dropped, the visitor's
next event is a first sighting in a new generation::

    facts = VisitorFacts(dynamodb_client, "table")
    facts.list("demo", "v-1")        # [FactRecord, ...]
    facts.erase("demo", "v-1", time_left_s=lambda: context.get_remaining_time_in_millis() / 1000)
    # Erasure(erased=3, in_flight=0, retry_after_s=0, complete=True): the visitor is unknown from then on

Keys hashed under the former marker (``KIND#sha256:<hex>``, with ``fact_name``) are listed and deleted as any.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from .facts import IDENTIFY
from .table import (
    ERASURE_TOMBSTONE_SECONDS,
    PENDING,
    TABLE_ERRORS,
    DedupUnavailableError,
    Item,
    RequestPool,
    condition_failed,
    content,
    fact_key,
    failed_on,
    number,
    partition_key,
    unavailable,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
else:
    DynamoDBClient = Any

ERASE_PAGE = 100  # facts read (and deleted, concurrently) per step of an erase
ERASE_THREADS = 16
ERASE_SAFETY_S = 2.0  # time kept for answering when an erase stops early
_ERASE_ATTEMPTS = 3  # deletes of one fact whose lease ended between the refused delete and the read
_TOMBSTONE_ATTEMPTS = 3
_NOT_HELD = "NOT (#status = :pending AND lease_until >= :now)"


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


def retry_after_s(leases: Sequence[int], now: int) -> int:
    """When to erase again: a second after the last of the leases that held facts back ends (at least 1 s), 0 when
    none did::

        retry_after_s([1_000, 1_030], now=1_000)  # 31
        retry_after_s([], now=1_000)              # 0
    """
    return max(max(leases) - now + 1, 1) if leases else 0


@dataclass(frozen=True, slots=True)
class _Tombstone:
    generation: int  # the visitor's new generation
    identify_erased: bool  # the IDENTIFY it replaced was a fact (not a tombstone)


@dataclass(frozen=True, slots=True)
class _Held:
    lease_until: int


class VisitorFacts:
    """What the table knows of one visitor, for the people who run the service (see the module's example).

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
        self._pool = RequestPool(ERASE_THREADS, "erase")

    def _query(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return cast("dict[str, Any]", self._client.query(**params))
        except TABLE_ERRORS as exc:
            raise unavailable(exc) from exc

    def _pages(self, workspace_id: str, visitor_id: str, **options: Any) -> Iterator[tuple[list[Item], bool]]:
        """The visitor's items, one consistent Query page at a time, each with whether it is the last. The next
        page is read only when asked for, so a caller that stops reads no more."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": partition_key(workspace_id, visitor_id)}},
            "ConsistentRead": True,
            **options,
        }
        while True:
            answer = self._query(params)
            start = answer.get("LastEvaluatedKey")
            yield answer.get("Items", []), not start
            if not start:
                return
            params = {**params, "ExclusiveStartKey": start}

    def list(self, workspace_id: str, visitor_id: str) -> list[FactRecord]:
        """The visitor's facts, by key (a consistent read); an erasure's tombstone is not a fact."""
        return [
            FactRecord(
                key=fact_key(item),
                status=item.get("status", {}).get("S", ""),
                message_id=item.get("message_id", {}).get("S", ""),
                first_attempt_at=number(item, "first_attempt_at") or None,
                delivered_at=number(item, "delivered_at") or None,
                attempts=number(item, "attempts"),
                content=content(item),
            )
            for items, _ in self._pages(workspace_id, visitor_id)
            for item in items
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
            return Erasure(0, 1, retry_after_s([tombstone.lease_until], now), complete=False)
        generation = tombstone.generation
        erased, held = int(tombstone.identify_erased), list[int]()
        for items, last in self._pages(workspace_id, visitor_id, Limit=ERASE_PAGE, ProjectionExpression="pk, sk"):
            keys = [{"pk": i["pk"], "sk": i["sk"]} for i in items if i["sk"]["S"] != IDENTIFY.key]
            for result in self._pool.map(lambda item_key: self._delete(item_key, now, generation), keys):
                if result is None:
                    erased += 1
                elif result >= 0:
                    held.append(result)
            if not last and time_left_s() < ERASE_SAFETY_S:
                return Erasure(erased, len(held), retry_after_s(held, now), complete=False)
        return Erasure(erased, len(held), retry_after_s(held, now), complete=not held)

    def _tombstone(self, workspace_id: str, visitor_id: str, now: int) -> _Tombstone | _Held:
        """Replace the visitor's IDENTIFY by a tombstone of the next generation (conditional on the item read, so
        a claim or another erase in between is seen); ``_Held`` when a delivery holds it (nothing done)."""
        item_key: Item = {"pk": {"S": partition_key(workspace_id, visitor_id)}, "sk": {"S": IDENTIFY.key}}
        for _ in range(_TOMBSTONE_ATTEMPTS):
            found = self._query(
                {
                    "TableName": self._table,
                    "KeyConditionExpression": "pk = :pk AND sk = :sk",
                    "ExpressionAttributeValues": {":pk": item_key["pk"], ":sk": item_key["sk"]},
                    "ConsistentRead": True,
                }
            ).get("Items", [])
            old = found[0] if found else None
            lease = number(old or {}, "lease_until")
            if old is not None and old.get("status", {}).get("S") == PENDING and lease >= now:
                return _Held(lease)
            generation = number(old or {}, "generation") + 1
            values: Item = {":pending": {"S": PENDING}, ":now": {"N": str(now)}}
            params: dict[str, Any] = {
                "TableName": self._table,
                "Item": {
                    **item_key,
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
            except TABLE_ERRORS as exc:
                if not condition_failed(exc):
                    raise unavailable(exc) from exc
                continue  # claimed or erased meanwhile: read it again
            return _Tombstone(generation, old is not None and "status" in old and number(old, "expires_at") > now)
        raise DedupUnavailableError("the visitor's IDENTIFY item is contended")

    def _delete(self, item_key: Item, now: int, generation: int) -> int | None:
        """Delete one fact unless a live lease holds it or it was delivered in ``generation`` (after this erase):
        None when deleted, its lease when held, -1 when gone or of the new generation. The item a refused delete
        met is the one the failure carries, else read consistently (``failed_on``)."""
        for _ in range(_ERASE_ATTEMPTS):
            try:
                answer = self._client.delete_item(
                    TableName=self._table,
                    Key=item_key,
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
            except TABLE_ERRORS as exc:
                if not condition_failed(exc):
                    raise unavailable(exc) from exc
                try:
                    old = failed_on(self._client, self._table, item_key, exc)
                except TABLE_ERRORS as read_error:
                    raise unavailable(read_error) from read_error
                if not old or number(old, "generation") >= generation:
                    return -1
                lease = number(old, "lease_until")
                if old.get("status", {}).get("S") == PENDING and lease >= now:
                    return lease
                continue  # settled or released since the delete was refused: delete it now
            return None if answer.get("Attributes") else -1
        return now  # its lease keeps changing hands: held, erase again in a moment
