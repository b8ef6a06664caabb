"""A workspace's delivery health in the table: the hourly buckets every function adds its tallies to.

``health`` decides what is counted and how it is shown (pure); this module keeps it (``pk = HEALTH#<workspace>``,
``sk`` = the hour, kept ``BUCKET_TTL_S``)::

    ledger = HealthLedger(dynamodb_client, "table")
    ledger.write_due(recorder, now_ms=now)                         # {workspace: error} of the tallies lost
    ledger.health("demo", now_ms=now)                              # a connection's GET: summary of the last 24 h
    ledger.add("demo", tally, hour="2026-11-30T07", now_s=now_s)   # one UpdateItem; DedupUnavailableError
    ledger.buckets("demo", since_hour="2026-11-29T07")             # [Bucket, ...]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .health import BUCKET_TTL_S, WINDOW_MS, Bucket, HealthRecorder, Tally, hour_of, summary
from .table import TABLE_ERRORS, DedupUnavailableError, Item, condition_failed, failed_on, number, unavailable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
else:
    DynamoDBClient = Any

_COUNTERS = "delivered :delivered, messages :messages, failed :failed, parked :parked"
_HEALTH_ATTEMPTS = 3


def _bucket_update(tally: Tally, now_s: int, stored: Mapping[str, Any]) -> dict[str, Any]:
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
    if tally.last_delivery_at is not None and tally.last_delivery_at >= number(stored, "last_delivery_at"):
        sets.append("last_delivery_at = :delivery_at, last_delivery_messages = :delivery_messages")
        conditions.append("(attribute_not_exists(last_delivery_at) OR last_delivery_at <= :delivery_at)")
        values[":delivery_at"] = {"N": str(tally.last_delivery_at)}
        values[":delivery_messages"] = {"N": str(tally.last_delivery_messages)}
    if tally.last_failure_at is not None and tally.last_failure_at >= number(stored, "last_failure_at"):
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
    """Hourly buckets of each workspace's delivery health, summed from every function's tallies, kept two days."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def write_due(self, recorder: HealthRecorder, *, now_ms: int) -> dict[str, DedupUnavailableError]:
        """Write the recorder's tallies that are due into their workspaces' buckets of this hour (best effort:
        health is evidence, not state). The workspaces whose tally could not be written, with the error."""
        lost: dict[str, DedupUnavailableError] = {}
        for workspace, tally in recorder.due(now_ms=now_ms).items():
            try:
                self.add(workspace, tally, hour=hour_of(now_ms), now_s=now_ms // 1000)
            except DedupUnavailableError as exc:
                lost[workspace] = exc
        return lost

    def health(self, workspace_id: str, *, now_ms: int) -> dict[str, Any]:
        """The workspace's health as its connection's GET shows it (``health.summary`` of the last 24 hours'
        buckets, one Query). Raises DedupUnavailableError."""
        return summary(self.buckets(workspace_id, since_hour=hour_of(now_ms - WINDOW_MS)), now_ms=now_ms)

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
                    **_bucket_update(tally, now_s, stored),
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return
            except TABLE_ERRORS as exc:
                if not condition_failed(exc):
                    raise unavailable(exc) from exc
                try:  # the bucket as it stands: leave out what it holds later
                    stored = failed_on(self._client, self._table, key, exc)
                except TABLE_ERRORS as read_error:
                    raise unavailable(read_error) from read_error
        raise DedupUnavailableError("health bucket contended")

    def buckets(self, workspace_id: str, *, since_hour: str) -> list[Bucket]:
        """The workspace's buckets from ``since_hour`` on (one Query)."""
        try:
            answer = self._client.query(
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND sk >= :since",
                ExpressionAttributeValues={":pk": {"S": f"HEALTH#{workspace_id}"}, ":since": {"S": since_hour}},
            )
        except TABLE_ERRORS as exc:
            raise unavailable(exc) from exc
        return [
            Bucket(
                hour=str(item["sk"]["S"]),
                delivered=number(item, "delivered"),
                messages=number(item, "messages"),
                failed=number(item, "failed"),
                parked=number(item, "parked"),
                last_delivery_at=number(item, "last_delivery_at") or None,
                last_delivery_messages=number(item, "last_delivery_messages"),
                last_failure_at=number(item, "last_failure_at") or None,
                last_failure_reason=item.get("last_failure_reason", {}).get("S", ""),
            )
            for item in answer.get("Items", [])
        ]
