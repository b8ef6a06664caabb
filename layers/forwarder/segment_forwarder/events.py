"""Validated requests of the three ingest routes as typed events (pure: nothing here knows Lambda or AWS)::

event = Event.from_body("assignment", body, received_at=now, delivery_id="…")
event.test_id, event.variant_id, event.timestamp      # "t-checkout", "b", "2026-11-29T12:00:00.000Z"
event.queue_text()                                    # the body to put on the queue: timestamp made explicit

Delivery ids (the messageId of a conversion without a dedup fact) are bound to the queued body: the HTTP path
draws a random nonce and its delivery id is ``bound_delivery_id(nonce, event.queue_text())``; the nonce travels
with the queued copy (message attribute ``delivery_nonce``) and the SQS path recomputes the id from the nonce and
the body it received (``record_delivery_id``). A producer may write any message attribute, but whatever it writes
can only name ids bound to its own body: two conversions with different bodies never share a messageId, and a
copied ``delivery_id`` attribute is ignored (the id then derives from the SQS message id, as for any record a
producer sends). No key is needed, so none has to be stored, rotated or given to ``make redrive``.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from .messages import iso_ms

Kind = Literal["identify", "assignment", "conversion"]
KINDS: tuple[Kind, ...] = ("identify", "assignment", "conversion")
SCHEMAS: dict[Kind, str] = {
    "identify": "IdentifyRequest",
    "assignment": "AssignmentRequest",
    "conversion": "ConversionRequest",
}


# Fixed namespace of the delivery ids derived from SQS message ids.
SQS_DELIVERY_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "segment-forwarder:sqs-message-id")


def sqs_delivery_id(sqs_message_id: str) -> str:
    """The delivery id of a record that carries none: derived from its SQS message id, so every redelivery (and a
    redrive that keeps the original message id as ``source_message_id``) sends it under the same messageId."""
    return str(uuid.uuid5(SQS_DELIVERY_ID_NAMESPACE, sqs_message_id))


# Fixed namespace of the delivery ids bound to a queued body.
BOUND_DELIVERY_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "segment-forwarder:queued-body")
_NONCE = re.compile(r"[0-9a-f]{32}")
_SQS_MESSAGE_ID = re.compile(r"[!-~]{1,128}")  # printable ASCII, bounded (SQS message ids are UUIDs)
# Characters JSON may carry raw but SQS refuses in a message body (JSON already escapes the controls below 0x20).
_NOT_SQS_TEXT = re.compile("[\ud800-\udfff\ufffe\uffff]")


def new_nonce() -> str:
    """A fresh delivery nonce (32 lowercase hex digits)."""
    return uuid.uuid4().hex


def bound_delivery_id(nonce: str, body_text: str) -> str:
    """The delivery id of a queued body under ``nonce``: a function of both, so a nonce copied onto another body
    names another id."""
    digest = hashlib.sha256(body_text.encode("utf-8", "surrogatepass")).hexdigest()
    return str(uuid.uuid5(BOUND_DELIVERY_ID_NAMESPACE, f"{nonce}:{digest}"))


def record_delivery_id(
    body_text: str,
    sqs_message_id: str,
    *,
    carried_id: object = None,
    nonce: object = None,
    source_message_id: object = None,
) -> str:
    """The delivery id of an SQS record, from attributes anyone with ``sqs:SendMessage`` may have written::

        record_delivery_id(body, "m-1", carried_id=d, nonce=n)   # d, if d == bound_delivery_id(n, body)
        record_delivery_id(body, "m-2", source_message_id="m-1")  # sqs_delivery_id("m-1"): a redriven record
        record_delivery_id(body, "m-3", carried_id="copied")      # sqs_delivery_id("m-3"): ignored

    A carried id is used only when it is the id bound to this body by the carried nonce (an HTTP attempt queued
    it); else a well-formed ``source_message_id`` (set when a record is parked, kept by a redrive) names the
    message the record first was; else the record's own SQS message id.
    """
    if isinstance(nonce, str) and _NONCE.fullmatch(nonce) and carried_id == bound_delivery_id(nonce, body_text):
        return str(carried_id)
    if isinstance(source_message_id, str) and _SQS_MESSAGE_ID.fullmatch(source_message_id):
        return sqs_delivery_id(source_message_id)
    return sqs_delivery_id(sqs_message_id)


def queue_text(body: dict[str, Any]) -> str:
    """``body`` as compact UTF-8 JSON (what a producer would send), with the few characters SQS refuses in a
    message (``U+FFFE``, ``U+FFFF``) written as ``\\u`` escapes: the same JSON, valid SQS text."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return _NOT_SQS_TEXT.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def parse_timestamp(value: str) -> datetime:
    """An ISO-8601 timestamp with a zone (already checked by validation) as an aware UTC datetime."""
    return datetime.fromisoformat(value).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Event:
    """One validated request of an ingest route.

    ``segment_anonymous_id`` is the site's Segment anonymous id (analytics.js ``ajs_anonymous_id``), used as
    ``anonymousId`` only when the workspace's ``anonymous_id`` setting is ``segment``; it never changes a dedup key
    or a messageId (those are per ``visitor_id``).

    ``delivery_id`` is the messageId of a conversion that has no dedup fact: stable across redeliveries when
    the transport provides one (derived from the SQS message id, or carried from the HTTP attempt that queued
    it); ``from_body`` gives a fresh random one when the transport has none.

    ``received_ms`` is when the event was first received (ms since the epoch; the HTTP request, or the first
    receipt a queued record carries): an erasure of the visitor after that moment drops the event.
    """

    kind: Kind
    workspace_id: str
    visitor_id: str
    timestamp: str
    user_id: str | None = None
    segment_anonymous_id: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    test_id: str = ""
    variant_id: str = ""
    test_name: str | None = None
    variant_name: str | None = None
    conversion_id: str = ""
    conversion_type: str = ""
    origin_url: str = ""
    one_per_visitor: bool = False
    event_id: str | None = None
    delivery_id: str = ""
    delivery_nonce: str = ""
    received_ms: int = 0
    body: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_body(
        cls, kind: Kind, body: dict[str, Any], received_at: datetime, delivery_id: str | None = None
    ) -> Event:
        """An event from a body that passed validation; ``received_at`` is the default timestamp."""
        raw_ts = body.get("timestamp")
        moment = parse_timestamp(raw_ts) if raw_ts else received_at
        return cls(
            kind=kind,
            workspace_id=body["workspace_id"],
            visitor_id=body["visitor_id"],
            timestamp=iso_ms(moment),
            user_id=body.get("user_id"),
            segment_anonymous_id=body.get("segment_anonymous_id"),
            context=dict(body.get("context") or {}),
            test_id=body.get("test_id", ""),
            variant_id=body.get("variant_id", ""),
            test_name=body.get("test_name"),
            variant_name=body.get("variant_name"),
            conversion_id=body.get("conversion_id", ""),
            conversion_type=body.get("conversion_type", ""),
            origin_url=body.get("origin_url", ""),
            one_per_visitor=bool(body.get("one_per_visitor", False)),
            event_id=body.get("event_id"),
            delivery_id=delivery_id or str(uuid.uuid4()),
            received_ms=int(received_at.timestamp() * 1000),
            body=body,
        )

    def queue_body(self) -> dict[str, Any]:
        """The request body with its timestamp made explicit: what the HTTP path puts on the queue."""
        return {**self.body, "timestamp": self.timestamp}

    def queue_text(self) -> str:
        """``queue_body`` as the text the HTTP path puts on the queue (compact UTF-8 JSON, ``queue_text``)."""
        return queue_text(self.queue_body())

    def bound(self, nonce: str) -> Event:
        """The event with the delivery id bound to its queued text by ``nonce`` (the HTTP path's)."""
        return replace(self, delivery_id=bound_delivery_id(nonce, self.queue_text()), delivery_nonce=nonce)
