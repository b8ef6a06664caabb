"""The function's SQS queues: queue an event the HTTP path could not deliver, push a failed record's next
receive back, park records in the dead-letter queue with their reason. The only module that talks to SQS::

    queues = Queues(sqs_client, queue_url="…", dlq_url="…")
    queues.enqueue(event.queue_text(), delivery_id=event.delivery_id, nonce=event.delivery_nonce,
                   received_ms=now_ms)                  # QueueUnavailableError
    failed = queues.enqueue_many([Queued(text, delivery_id, nonce, now_ms), ...])   # indexes not queued
    queues.delay([(record.receipt_handle, 450)])            # its next receive in 450 s (best effort)
    not_parked = queues.park([Parked(record, "invalid_value", "visitor_id …", "visitor_id")])  # records.SqsRecord

Message attributes (all String; valid SQS text of bounded length, at most 10, whatever the input held; their
names are declared in ``records``):

* on every queued or parked event: ``delivery_id`` (the messageId of a conversion without dedup key) and
  ``delivery_nonce`` (what binds that id to the body: ``events.record_delivery_id``), ``first_received_at`` (ms
  since the epoch of the event's first receipt), ``retry_since`` (ms since the epoch the retry horizon counts
  from; a redrive sets it anew; left out of a parked record when it equals ``first_received_at``);
* on parked records, their reason: ``error_code``, ``error_message``, ``error_field``, and ``source_message_id``,
  ``receive_count``, ``source_kind`` (identify | assignment | conversion); for a body cut to fit
  (``parked_message``), ``body_bytes`` and ``body_sha256`` of the whole body.

Producers may write any attribute (they only need ``sqs:SendMessage``): nothing here or in the handler believes
one that is not well-formed (``records.read_record`` reads each record once and checks: times by
``records.attribute_ms``, the nonce and source id by their form, a delivery id only when bound to the body).
Parked messages, and the events of an HTTP batch queued together, are grouped by bytes, never only by count
(``Queues.park``, ``Queues.enqueue_many``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from .errors import UnavailableError
from .records import (
    BODY_BYTES,
    BODY_SHA256,
    DELIVERY_ID,
    DELIVERY_NONCE,
    ERROR_CODE,
    ERROR_FIELD,
    ERROR_MESSAGE,
    FIRST_RECEIVED_AT,
    RECEIVE_COUNT,
    RETRY_SINCE,
    SOURCE_KIND,
    SOURCE_MESSAGE_ID,
    SqsRecord,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import (
        ChangeMessageVisibilityBatchRequestEntryTypeDef,
        MessageAttributeValueTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )
else:
    SQSClient = Any

MAX_ATTRIBUTE_CHARS = 1000
MAX_ATTRIBUTES = 10  # SQS refuses a message with more
# SQS's limits, in bytes of body plus attributes: a message (the queues' MaximumMessageSize; the template leaves
# it at SQS's default, which is at least this) and a SendMessageBatch request (the sum of its messages).
MAX_MESSAGE_BYTES = 262_144
MAX_REQUEST_BYTES = 262_144
_BATCH_LIMIT = 10
# SQS accepts #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF in bodies and attribute values.
_NOT_SQS_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class QueueUnavailableError(UnavailableError):
    """SQS could not be reached or refused the message."""


def sqs_text(value: str, limit: int | None = MAX_ATTRIBUTE_CHARS) -> str:
    """``value`` as text SQS accepts: characters it refuses (lone surrogates, most control characters) become
    U+FFFD, and at most ``limit`` characters are kept (all of them when None)."""
    return _NOT_SQS_TEXT.sub("\ufffd", value if limit is None else value[:limit])


@dataclass(frozen=True, slots=True)
class Parked:
    """A record to park in the dead-letter queue, and why."""

    record: SqsRecord
    code: str
    message: str
    field: str | None = None
    delivery_id: str | None = None
    kind: str | None = None

    @property
    def message_id(self) -> str:
        """The SQS message id of the record."""
        return self.record.message_id

    def attributes(self, *, truncated: bool = False) -> dict[str, str]:
        """The reason as message attributes (valid SQS text, bounded, at most ``MAX_ATTRIBUTES``). What the record
        carried is kept only when well-formed (``records.read_record`` checked it: a producer may have written
        it). ``truncated``: the body is cut, so the delivery id and its nonce (bound to the whole body) are left
        out."""
        record = self.record
        first = record.first_receipt_ms
        since = record.retry_since_ms
        attributes: dict[str, str | None] = {
            ERROR_CODE: self.code,
            ERROR_MESSAGE: self.message or self.code,
            ERROR_FIELD: self.field,
            # a redriven record keeps the id of the message it was first (its delivery id derives from that)
            SOURCE_MESSAGE_ID: record.source_message_id or record.message_id,
            SOURCE_KIND: self.kind,
            RECEIVE_COUNT: str(record.receive_count),
            FIRST_RECEIVED_AT: None if first is None else str(first),
            RETRY_SINCE: None if since is None or since == first else str(since),
            DELIVERY_ID: None if truncated else self.delivery_id,
            DELIVERY_NONCE: None if truncated else record.nonce,
        }
        kept = {name: sqs_text(value) or "-" for name, value in attributes.items() if value}
        return dict(list(kept.items())[:MAX_ATTRIBUTES])


def _string_attributes(values: Mapping[str, str]) -> dict[str, MessageAttributeValueTypeDef]:
    return {name: {"DataType": "String", "StringValue": value} for name, value in values.items()}


def message_bytes(body: str, attributes: Mapping[str, str]) -> int:
    """What SQS counts of a message against its size limits: the body and each attribute's name, data type
    (``String``) and value, in UTF-8 bytes."""
    size = len(body.encode("utf-8"))
    return size + sum(len(n.encode()) + len("String") + len(v.encode("utf-8")) for n, v in attributes.items())


def parked_message(item: Parked) -> tuple[str, dict[str, str]]:
    """The body and attributes that park ``item``: its body as it came, or, when that with the attributes is over
    ``MAX_MESSAGE_BYTES``, its first bytes with the whole body's size and SHA-256 in ``body_bytes`` and
    ``body_sha256`` (the body can never be delivered: its record was refused as too large)."""
    body = sqs_text(item.record.body, None) or "(empty body)"
    attributes = item.attributes()
    if message_bytes(body, attributes) <= MAX_MESSAGE_BYTES:
        return body, attributes
    whole = body.encode("utf-8")
    facts = {BODY_BYTES: str(len(whole)), BODY_SHA256: hashlib.sha256(whole).hexdigest()}
    reason = list(item.attributes(truncated=True).items())  # the error code and message first
    attributes = dict([*reason[:2], *facts.items(), *reason[2:]][:MAX_ATTRIBUTES])
    room = MAX_MESSAGE_BYTES - message_bytes("", attributes)
    return whole[:room].decode("utf-8", "ignore"), attributes


@dataclass(frozen=True, slots=True)
class Queued:
    """An event to queue: its queue text, the delivery id its attempt used and the nonce binding that id to the
    text, and its receipt time (ms since the epoch: its retry horizon starts there)."""

    body: str
    delivery_id: str
    nonce: str
    received_ms: int

    def attributes(self) -> dict[str, str]:
        """Its message attributes (``delivery_id``, ``delivery_nonce``, ``first_received_at``, ``retry_since``)."""
        return {
            DELIVERY_ID: self.delivery_id,
            DELIVERY_NONCE: self.nonce,
            FIRST_RECEIVED_AT: str(self.received_ms),
            RETRY_SINCE: str(self.received_ms),
        }


class Queues:
    """The function's own queue and its dead-letter queue."""

    def __init__(self, client: SQSClient, queue_url: str, dlq_url: str) -> None:
        self._client = client
        self._queue_url = queue_url
        self._dlq_url = dlq_url

    def enqueue(self, body: str, *, delivery_id: str, nonce: str, received_ms: int) -> None:
        """Put an event's queue text on the function's queue, with the delivery id its first attempt used, the
        nonce that binds that id to the body, and its receipt time (where its retry horizon starts)."""
        attributes = Queued(body, delivery_id, nonce, received_ms).attributes()
        try:
            self._client.send_message(
                QueueUrl=self._queue_url,
                MessageBody=body,
                MessageAttributes=_string_attributes(attributes),
            )
        except (ClientError, BotoCoreError) as exc:
            raise QueueUnavailableError(type(exc).__name__) from None

    def enqueue_many(self, events: Sequence[Queued]) -> list[int]:
        """Put several events on the function's queue (each as ``enqueue`` would) with SendMessageBatch: requests
        of at most 10 messages and ``MAX_REQUEST_BYTES``, in order. Returns the indexes (in ``events``) of those
        SQS did not take, the whole request's when it refused or could not be reached."""
        failed: list[int] = []
        messages = [(index, event.body, event.attributes()) for index, event in enumerate(events)]
        for group in _groups(messages):
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {"Id": str(position), "MessageBody": body, "MessageAttributes": _string_attributes(attributes)}
                for position, (_, body, attributes) in enumerate(group)
            ]
            try:
                answer = self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
            except (ClientError, BotoCoreError):
                failed.extend(index for index, _, _ in group)
                continue
            failed.extend(group[int(entry["Id"])][0] for entry in answer.get("Failed", []))
        return sorted(failed)

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
        """Move records to the dead-letter queue with their reason; return the SQS message ids of those that could
        not be moved. Requests hold at most 10 messages and ``MAX_REQUEST_BYTES``; a body too large to park even
        alone is truncated (``parked_message``); when SQS refuses a request of several, each is tried alone, so
        one record never keeps its neighbours from being parked."""
        messages = [(item, *parked_message(item)) for item in parked]
        failed: list[str] = []
        for group in _groups(messages):
            refused = self._send_to_dlq(group)
            if refused is None:  # the request was refused: each alone (one alone is not tried twice)
                alone = [self._send_to_dlq([one]) if len(group) > 1 else None for one in group]
                refused = [one[0] for one, answer in zip(group, alone, strict=True) if answer is None]
                refused += [item for answer in alone if answer for item in answer]
            failed.extend(item.message_id for item in refused)
        return failed

    def _send_to_dlq(self, group: Sequence[tuple[Parked, str, dict[str, str]]]) -> list[Parked] | None:
        """Send one SendMessageBatch; the items SQS did not take, or None when it refused the request."""
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {"Id": str(index), "MessageBody": body, "MessageAttributes": _string_attributes(attributes)}
            for index, (_, body, attributes) in enumerate(group)
        ]
        try:
            answer = self._client.send_message_batch(QueueUrl=self._dlq_url, Entries=entries)
        except (ClientError, BotoCoreError):
            return None
        return [group[int(entry["Id"])][0] for entry in answer.get("Failed", [])]


def _groups[T](messages: Sequence[tuple[T, str, dict[str, str]]]) -> list[list[tuple[T, str, dict[str, str]]]]:
    """The messages (anything, body, attributes) in requests of at most 10 and ``MAX_REQUEST_BYTES`` each, in order
    (a message that fits no request with others goes alone)."""
    groups: list[list[tuple[T, str, dict[str, str]]]] = []
    size = 0
    for message in messages:
        bytes_ = message_bytes(message[1], message[2])
        if not groups or len(groups[-1]) >= _BATCH_LIMIT or size + bytes_ > MAX_REQUEST_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(message)
        size += bytes_
    return groups
