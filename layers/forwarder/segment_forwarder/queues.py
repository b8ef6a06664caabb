"""The function's SQS queues: queue an event the HTTP path could not deliver, push a failed record's next
receive back, park records in the dead-letter queue with their reason. The only module that talks to SQS::

    queues = Queues(sqs_client, queue_url="…", dlq_url="…")
    queues.enqueue(event.queue_body(), delivery_id=event.delivery_id, received_ms=now_ms)   # QueueUnavailableError
    queues.delay([(record["receiptHandle"], 450)])          # its next receive in 450 s (best effort)
    not_parked = queues.park([Parked(record, "invalid_value", "visitor_id …", "visitor_id")])

Message attributes (all String; valid SQS text of bounded length, whatever the input held):

* on every queued or parked event: ``delivery_id`` (the messageId of a conversion without dedup key),
  ``first_received_at`` (ms since the epoch of the event's first receipt), ``retry_since`` (ms since the epoch the
  retry horizon counts from; a redrive sets it anew);
* on parked records, their reason: ``error_code``, ``error_message``, ``error_field``, and ``source_message_id``,
  ``receive_count``, ``source_kind`` (identify | assignment | conversion).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from .retries import FIRST_RECEIVED_AT, RETRY_SINCE

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import (
        ChangeMessageVisibilityBatchRequestEntryTypeDef,
        MessageAttributeValueTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )
else:
    SQSClient = Any

DELIVERY_ID_ATTRIBUTE = "delivery_id"
SOURCE_KIND_ATTRIBUTE = "source_kind"
MAX_ATTRIBUTE_CHARS = 1000
_BATCH_LIMIT = 10
# SQS accepts #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF in bodies and attribute values.
_NOT_SQS_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class QueueUnavailableError(Exception):
    """SQS could not be reached or refused the message."""


def sqs_text(value: str, limit: int | None = MAX_ATTRIBUTE_CHARS) -> str:
    """``value`` as text SQS accepts: characters it refuses (lone surrogates, most control characters) become
    U+FFFD, and at most ``limit`` characters are kept (all of them when None)."""
    return _NOT_SQS_TEXT.sub("\ufffd", value if limit is None else value[:limit])


@dataclass(frozen=True, slots=True)
class Parked:
    """A record to park in the dead-letter queue, and why."""

    record: Mapping[str, Any]
    code: str
    message: str
    field: str | None = None
    delivery_id: str | None = None
    kind: str | None = None

    @property
    def message_id(self) -> str:
        """The SQS message id of the record."""
        return str(self.record["messageId"])

    def attributes(self) -> dict[str, str]:
        """The reason as message attributes (valid SQS text, bounded)."""
        carried = self.record.get("messageAttributes", {})
        attributes = {
            "error_code": self.code,
            "error_message": self.message or self.code,
            # a redriven record keeps the id of the message it was first (its delivery id derives from that)
            "source_message_id": carried.get("source_message_id", {}).get("stringValue") or self.message_id,
            "receive_count": str(self.record.get("attributes", {}).get("ApproximateReceiveCount", "1")),
        }
        if self.field:
            attributes["error_field"] = self.field
        if self.delivery_id:
            attributes[DELIVERY_ID_ATTRIBUTE] = self.delivery_id
        if self.kind:
            attributes[SOURCE_KIND_ATTRIBUTE] = self.kind
        for name in (FIRST_RECEIVED_AT, RETRY_SINCE):
            value = carried.get(name, {}).get("stringValue")
            if value:
                attributes[name] = value
        if FIRST_RECEIVED_AT not in attributes:
            first = self.record.get("attributes", {}).get("ApproximateFirstReceiveTimestamp")
            if first:
                attributes[FIRST_RECEIVED_AT] = str(first)
        return {name: sqs_text(value) or "-" for name, value in attributes.items()}


def _string_attributes(values: Mapping[str, str]) -> dict[str, MessageAttributeValueTypeDef]:
    return {name: {"DataType": "String", "StringValue": value} for name, value in values.items()}


class Queues:
    """The function's own queue and its dead-letter queue."""

    def __init__(self, client: SQSClient, queue_url: str, dlq_url: str) -> None:
        self._client = client
        self._queue_url = queue_url
        self._dlq_url = dlq_url

    def enqueue(self, body: Mapping[str, Any], *, delivery_id: str, received_ms: int) -> None:
        """Put an event on the function's queue, with the delivery id its first attempt used and its receipt time
        (where its retry horizon starts)."""
        attributes = {
            DELIVERY_ID_ATTRIBUTE: delivery_id,
            FIRST_RECEIVED_AT: str(received_ms),
            RETRY_SINCE: str(received_ms),
        }
        try:
            self._client.send_message(
                QueueUrl=self._queue_url,
                MessageBody=json.dumps(body),
                MessageAttributes=_string_attributes(attributes),
            )
        except (ClientError, BotoCoreError) as exc:
            raise QueueUnavailableError(type(exc).__name__) from None

    def delay(self, receipts: Sequence[tuple[str, int]]) -> int:
        """Push the next receive of failed records (receipt handle, seconds) back; 10 a request, best effort (a
        record whose visibility could not be changed comes back after the queue's visibility timeout). Returns
        how many were changed."""
        changed = 0
        for start in range(0, len(receipts), _BATCH_LIMIT):
            chunk = receipts[start : start + _BATCH_LIMIT]
            entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
                {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": seconds}
                for index, (handle, seconds) in enumerate(chunk)
            ]
            try:
                answer = self._client.change_message_visibility_batch(QueueUrl=self._queue_url, Entries=entries)
            except (ClientError, BotoCoreError):
                continue
            changed += len(answer.get("Successful", []))
        return changed

    def park(self, parked: Sequence[Parked]) -> list[str]:
        """Move records to the dead-letter queue with their reason (10 a request); return the SQS message ids
        of those that could not be moved."""
        failed: list[str] = []
        for start in range(0, len(parked), _BATCH_LIMIT):
            chunk = parked[start : start + _BATCH_LIMIT]
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {
                    "Id": str(index),
                    "MessageBody": sqs_text(str(item.record.get("body") or ""), None) or "(empty body)",
                    "MessageAttributes": _string_attributes(item.attributes()),
                }
                for index, item in enumerate(chunk)
            ]
            try:
                answer = self._client.send_message_batch(QueueUrl=self._dlq_url, Entries=entries)
            except (ClientError, BotoCoreError):
                failed.extend(item.message_id for item in chunk)
                continue
            failed.extend(chunk[int(entry["Id"])].message_id for entry in answer.get("Failed", []))
        return failed
