"""Validated requests of the three ingest routes as typed events (pure: nothing here knows Lambda or AWS)::

event = Event.from_body("assignment", body, received_at=now, delivery_id="…")
event.test_id, event.variant_id, event.timestamp      # "t-checkout", "b", "2026-11-29T12:00:00.000Z"
event.queue_body()                                    # the body to put on the queue: timestamp made explicit
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
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
            body=body,
        )

    def queue_body(self) -> dict[str, Any]:
        """The request body with its timestamp made explicit: what the HTTP path puts on the queue."""
        return {**self.body, "timestamp": self.timestamp}
