"""One SQS record as the ingest function reads it: the raw dict Lambda gives is read once, here, into a typed view
whose every value a producer may have written is checked (pure: the caller gives the time)::

    record = read_record(raw, now_ms=now)
    record.message_id, record.receipt_handle, record.body         # "9f1c…", "AQEB…", '{"workspace_id": …}'
    record.receive_count                                          # ApproximateReceiveCount (1 when absent)
    record.first_received_ms                                      # first_received_at, when plausible, else None
    record.delivery_id()                                          # bound to its body (events.record_delivery_id)

The names of the message attributes the function writes on queued and parked records are declared here, and only
here (``queues`` writes them, ``ops.redrive`` copies them). Producers may write any attribute (they only need
``sqs:SendMessage``): nothing is believed that is not well-formed. A time must be a plausible moment
(``attribute_ms``), a nonce and a source message id must have the form the function writes, and a carried delivery
id counts only when bound to the body by the nonce (``events.record_delivery_id``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .events import record_delivery_id

# Message attributes (all String) the function writes on every queued or parked event.
DELIVERY_ID: Final = "delivery_id"  # the messageId of a conversion without a dedup fact
DELIVERY_NONCE: Final = "delivery_nonce"  # binds that id to the body (events.bound_delivery_id)
FIRST_RECEIVED_AT: Final = "first_received_at"  # ms since the epoch of the event's first receipt
RETRY_SINCE: Final = "retry_since"  # ms since the epoch the retry horizon counts from (a redrive sets it anew)
# ... and on parked records, their reason and where they came from.
SOURCE_MESSAGE_ID: Final = "source_message_id"  # the SQS message id the record first had
SOURCE_KIND: Final = "source_kind"  # identify | assignment | conversion
ERROR_CODE: Final = "error_code"
ERROR_MESSAGE: Final = "error_message"
ERROR_FIELD: Final = "error_field"
RECEIVE_COUNT: Final = "receive_count"
BODY_BYTES: Final = "body_bytes"  # a body cut to fit: the whole body's size ...
BODY_SHA256: Final = "body_sha256"  # ... and hash

# A time read from a message attribute is believed only within this window around now: the queues keep a message
# 14 days, a redrive gives it 14 more, and a year covers many redrives; a few minutes ahead covers clock skew.
TRUSTED_PAST_MS: Final = 366 * 24 * 3600 * 1000
TRUSTED_FUTURE_MS: Final = 5 * 60 * 1000
_MILLISECONDS = re.compile(r"[0-9]{1,16}")  # ASCII digits only (str.isdigit also accepts "²" and "٣")
_NONCE = re.compile(r"[0-9a-f]{32}")
_SOURCE_ID = re.compile(r"[!-~]{1,128}")


def attribute_ms(value: object, *, now_ms: int) -> int | None:
    """A time in ms since the epoch read from a message attribute a producer may have written, or None unless it
    is 1 to 16 ASCII digits within ``TRUSTED_PAST_MS`` before and ``TRUSTED_FUTURE_MS`` after ``now_ms``::

        attribute_ms("1767225600000", now_ms=now)   # 1767225600000 (if within the window)
        attribute_ms("²", now_ms=now), attribute_ms("0", now_ms=now), attribute_ms("9" * 5000, now_ms=now)  # None
    """
    if not isinstance(value, str) or not _MILLISECONDS.fullmatch(value):
        return None
    moment = int(value)
    return moment if now_ms - TRUSTED_PAST_MS <= moment <= now_ms + TRUSTED_FUTURE_MS else None


def _sqs_int(value: object) -> int | None:
    """An integer attribute SQS set (receive count, timestamps), or None when absent or not one."""
    return int(value) if isinstance(value, str) and _MILLISECONDS.fullmatch(value) else None


@dataclass(frozen=True, slots=True)
class SqsRecord:
    """One record of an SQS batch, read once (``read_record``).

    ``carried`` holds the record's String message attributes as they came (any a producer wrote too; only
    ``parked`` copies of them are ever written back, by name); the other fields are what the function believes:
    SQS's own attributes (``receive_count``, ``first_receive_ms``, ``sent_ms``) and ours when well-formed.
    """

    message_id: str
    body: str
    receipt_handle: str = ""
    receive_count: int = 1
    first_receive_ms: int | None = None  # ApproximateFirstReceiveTimestamp: when SQS first delivered it
    sent_ms: int | None = None  # SentTimestamp: when SQS took it from its producer
    first_received_ms: int | None = None  # first_received_at, when a plausible time
    retry_since_ms: int | None = None  # retry_since, when a plausible time
    nonce: str | None = None  # delivery_nonce, when of the form the function writes
    source_message_id: str | None = None  # source_message_id, when of the form SQS writes
    carried: Mapping[str, str] = field(default_factory=dict)

    @property
    def first_receipt_ms(self) -> int | None:
        """When the event was first received, as a parked copy records it: ``first_received_at`` (the HTTP path,
        or a redrive, kept it), else when SQS took the message (``SentTimestamp``), else when SQS first delivered
        it; None when nothing says."""
        if self.first_received_ms is not None:
            return self.first_received_ms
        return self.sent_ms or self.first_receive_ms

    def received_ms(self, *, now_ms: int) -> int:
        """The moment that dates a body without a timestamp (and before which an erasure drops the event):
        ``first_received_at``, else when SQS took the message, else ``now_ms``."""
        if self.first_received_ms is not None:
            return self.first_received_ms
        return self.sent_ms or now_ms

    def horizon_start(self, *, now_ms: int) -> int:
        """Where the record's retry horizon starts (ms since the epoch): ``retry_since`` (set when a redrive moved
        it back), else ``first_received_at`` (set when the HTTP path queued it), else when SQS first delivered it
        (``now_ms`` when SQS did not say)."""
        for moment in (self.retry_since_ms, self.first_received_ms):
            if moment is not None:
                return moment
        return self.first_receive_ms or now_ms

    def delivery_id(self) -> str:
        """The record's delivery id: the one the HTTP attempt used when provably bound to this body, else derived
        from the SQS message id it first had (``events.record_delivery_id``)."""
        return record_delivery_id(
            self.body,
            self.message_id,
            carried_id=self.carried.get(DELIVERY_ID),
            nonce=self.nonce,
            source_message_id=self.source_message_id,
        )


def read_record(raw: Mapping[str, Any], *, now_ms: int) -> SqsRecord:
    """The typed view of a record as Lambda's SQS event gives it (``messageId``, ``receiptHandle``, ``body``,
    ``attributes``, ``messageAttributes``); values a producer may have written are checked against ``now_ms``."""
    system = raw.get("attributes") or {}
    carried = _string_attributes(raw.get("messageAttributes"))
    nonce = carried.get(DELIVERY_NONCE)
    source = carried.get(SOURCE_MESSAGE_ID)
    return SqsRecord(
        message_id=str(raw["messageId"]),
        body=str(raw.get("body") or ""),
        receipt_handle=str(raw.get("receiptHandle", "")),
        receive_count=_sqs_int(system.get("ApproximateReceiveCount")) or 1,
        first_receive_ms=_sqs_int(system.get("ApproximateFirstReceiveTimestamp")),
        sent_ms=_sqs_int(system.get("SentTimestamp")),
        first_received_ms=attribute_ms(carried.get(FIRST_RECEIVED_AT), now_ms=now_ms),
        retry_since_ms=attribute_ms(carried.get(RETRY_SINCE), now_ms=now_ms),
        nonce=nonce if nonce is not None and _NONCE.fullmatch(nonce) else None,
        source_message_id=source if source is not None and _SOURCE_ID.fullmatch(source) else None,
        carried=carried,
    )


def _string_attributes(carried: object) -> dict[str, str]:
    """A record's String message attributes (any a producer wrote too)."""
    if not isinstance(carried, Mapping):
        return {}
    values = {name: value.get("stringValue") for name, value in carried.items() if isinstance(value, Mapping)}
    return {str(name): value for name, value in values.items() if isinstance(value, str)}
