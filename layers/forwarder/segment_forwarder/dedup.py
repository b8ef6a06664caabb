"""Dedup and delivery state in DynamoDB: one item per "once" fact (§6). The only module that talks to the table.

A claim is one conditional PutItem. It wins when the item is absent, expired (TTL deletion lags), or PENDING
with an expired lease (a crashed attempt); otherwise the old item comes back with the error (ALL_OLD)::

    store = DedupStore(dynamodb_client, "table", lease_seconds=90)
    claim = store.claim(Fact(pk, "ASSIGN#t1", message_id, ttl_seconds, variant_id="b"))
    if claim.state is ClaimState.CLAIMED:
        ...send...
        store.mark_sent([claim])        # one BatchWriteItem per 25 facts
    # or, when delivery failed:
        store.release([claim])          # the retry can claim again at once
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from botocore.exceptions import ClientError

PENDING, SENT = "PENDING", "SENT"
_CLAIM_CONDITION = "attribute_not_exists(pk) OR expires_at < :now OR (#status = :pending AND lease_until < :now)"
_BATCH_WRITE_LIMIT = 25
_UNPROCESSED_RETRIES = 5


class DedupUnavailableError(Exception):
    """DynamoDB could not be reached or refused the request (throttled, ...): retry later."""


class ClaimState(enum.Enum):
    """Outcome of a claim."""

    CLAIMED = "claimed"  # this attempt owns the fact and must send it
    SENT = "sent"  # already delivered: a duplicate
    IN_FLIGHT = "in_flight"  # another attempt holds a live lease


@dataclass(frozen=True, slots=True)
class Fact:
    """A "once" fact of one visitor: the DynamoDB item it lives in and what it records."""

    pk: str
    sk: str
    message_id: str
    ttl_seconds: int
    variant_id: str | None = None
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """A fact as the table answered: ``recorded`` is the item's attributes as they stood (ALL_OLD), if any."""

    fact: Fact
    state: ClaimState
    token: str = ""
    recorded: dict[str, str] = field(default_factory=dict)


def _plain(item: dict[str, Any]) -> dict[str, str]:
    """DynamoDB attribute values (all S or N here) to plain strings."""
    return {name: next(iter(value.values())) for name, value in item.items()}


class DedupStore:
    """Claims, marks and releases facts in the dedup table. Thread-safe (boto3 clients are)."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        lease_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._table = table_name
        self._lease = lease_seconds
        self._clock = clock

    def _item(self, fact: Fact, status: str, now: int, token: str = "") -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": {"S": fact.pk},
            "sk": {"S": fact.sk},
            "status": {"S": status},
            "message_id": {"S": fact.message_id},
            "updated_at": {"N": str(now)},
            "expires_at": {"N": str(now + fact.ttl_seconds)},
        }
        if fact.variant_id is not None:
            item["variant_id"] = {"S": fact.variant_id}
        if fact.user_id is not None:
            item["user_id"] = {"S": fact.user_id}
        if status == PENDING:
            item["lease_until"] = {"N": str(now + self._lease)}
            item["claim_token"] = {"S": token}
        return item

    def claim(self, fact: Fact) -> Claim:
        """Try to own ``fact``. Raises DedupUnavailableError when DynamoDB fails.

        A reclaim of a crashed attempt keeps what that attempt recorded (the first variant of an assignment),
        so the resend carries the same content under the same message id.
        """
        now = int(self._clock())
        token = uuid.uuid4().hex
        try:
            answer = self._client.put_item(
                TableName=self._table,
                Item=self._item(fact, PENDING, now, token),
                ConditionExpression=_CLAIM_CONDITION,
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":now": {"N": str(now)}, ":pending": {"S": PENDING}},
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise DedupUnavailableError(exc.response.get("Error", {}).get("Code", "ClientError")) from exc
            recorded = _plain(exc.response.get("Item", {}))
            state = ClaimState.SENT if recorded.get("status") == SENT else ClaimState.IN_FLIGHT
            return Claim(fact, state, recorded=recorded)
        except Exception as exc:  # network errors, timeouts
            raise DedupUnavailableError(type(exc).__name__) from exc
        recorded = _plain(answer.get("Attributes", {}))
        if recorded.get("variant_id") and recorded["variant_id"] != fact.variant_id:
            fact = replace(fact, variant_id=recorded["variant_id"])
        return Claim(fact, ClaimState.CLAIMED, token, recorded)

    def mark_sent(self, claims: Sequence[Claim]) -> None:
        """Record delivered facts as SENT (BatchWriteItem, 25 a request). Raises DedupUnavailableError.

        Unconditional on purpose: the message went out under the fact's deterministic id, so SENT is true
        whoever holds the lease now.
        """
        now = int(self._clock())
        requests = [{"PutRequest": {"Item": self._item(c.fact, SENT, now)}} for c in claims]
        for start in range(0, len(requests), _BATCH_WRITE_LIMIT):
            pending = requests[start : start + _BATCH_WRITE_LIMIT]
            for attempt in range(_UNPROCESSED_RETRIES + 1):
                try:
                    answer = self._client.batch_write_item(RequestItems={self._table: pending})
                except Exception as exc:
                    raise DedupUnavailableError(type(exc).__name__) from exc
                pending = answer.get("UnprocessedItems", {}).get(self._table, [])
                if not pending:
                    break
                time.sleep(min(0.05 * 2**attempt, 0.5))
            if pending:
                raise DedupUnavailableError(f"{len(pending)} items unprocessed")

    def release(self, claims: Sequence[Claim]) -> None:
        """Give up leases after a failed delivery so a retry can claim at once (best effort, conditional)."""
        for claim in claims:
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key={"pk": {"S": claim.fact.pk}, "sk": {"S": claim.fact.sk}},
                    UpdateExpression="SET lease_until = :zero",
                    ConditionExpression="claim_token = :token AND #status = :pending",
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={
                        ":zero": {"N": "0"},
                        ":token": {"S": claim.token},
                        ":pending": {"S": PENDING},
                    },
                )
            except Exception:  # noqa: S112 - the lease then simply expires; nothing is lost
                continue
