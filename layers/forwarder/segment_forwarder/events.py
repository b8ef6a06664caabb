"""The domain: validated requests become events with dedup keys, and events become Segment messages.

Nothing here knows Lambda, DynamoDB or HTTP::

    event = Event.from_body("assignment", body, received_at=now)
    event.fact_key          # "ASSIGN#t-checkout": the "once" fact this event is about (None: always sent)
    track_message(event, message_id, variant_id="b")
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from . import LIBRARY
from .validation import parse_timestamp

Kind = Literal["identify", "assignment", "conversion"]
KINDS: tuple[Kind, ...] = ("identify", "assignment", "conversion")
SCHEMAS: dict[str, str] = {
    "identify": "IdentifyRequest",
    "assignment": "AssignmentRequest",
    "conversion": "ConversionRequest",
}
# Fixed namespace of this forwarder's message ids: uuid5(NAMESPACE_URL, "segment-forwarder:message-id").
MESSAGE_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "segment-forwarder:message-id")
IDENTIFY = "IDENTIFY"


def iso_ms(moment: datetime) -> str:
    """UTC ISO-8601 with milliseconds, as Segment expects: ``2026-11-29T12:00:00.000Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def message_id(workspace_id: str, visitor_id: str, fact_key: str) -> str:
    """Deterministic Segment messageId of a dedup fact: a resend after a crash carries the same id.

    Workspace ids cannot contain a newline and visitor ids no control character, so the join is unambiguous.
    """
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{workspace_id}\n{visitor_id}\n{fact_key}"))


def link_key(user_id: str) -> str:
    """Dedup key of the Identify that links a visitor to a user id."""
    return f"{IDENTIFY}#U#{user_id}"


@dataclass(frozen=True, slots=True)
class Event:
    """One validated request of an ingest route."""

    kind: Kind
    workspace_id: str
    visitor_id: str
    user_id: str | None
    timestamp: str
    context: dict[str, Any]
    body: dict[str, Any]
    delivery_id: str | None = None

    @classmethod
    def from_body(
        cls, kind: Kind, body: dict[str, Any], received_at: datetime, delivery_id: str | None = None
    ) -> Event:
        """Build an event from a body that passed validation; ``received_at`` is the default timestamp.

        ``delivery_id`` is the messageId of a conversion without dedup key, stable across redeliveries when
        the transport provides one (the SQS message id); without it such a conversion gets a random id.
        """
        raw_ts = body.get("timestamp")
        moment = parse_timestamp(raw_ts) if raw_ts else received_at
        return cls(
            kind=kind,
            workspace_id=body["workspace_id"],
            visitor_id=body["visitor_id"],
            user_id=body.get("user_id"),
            timestamp=iso_ms(moment),
            context={**body.get("context", {}), "library": LIBRARY},
            body=body,
            delivery_id=delivery_id,
        )

    @property
    def partition_key(self) -> str:
        """DynamoDB partition key of every fact about this visitor."""
        return f"WS#{self.workspace_id}#V#{self.visitor_id}"

    @property
    def fact_key(self) -> str | None:
        """The event's own "once" fact, or None for a conversion that is forwarded on every call."""
        if self.kind == "identify":
            return IDENTIFY
        if self.kind == "assignment":
            return f"ASSIGN#{self.body['test_id']}"
        if self.body.get("one_per_visitor"):
            return f"CONV#{self.body['conversion_id']}"
        if "event_id" in self.body:
            return f"EVENT#{self.body['event_id']}"
        return None

    def message_id(self, fact_key: str) -> str:
        """Deterministic messageId of one of this visitor's facts."""
        return message_id(self.workspace_id, self.visitor_id, fact_key)

    def track_message_id(self) -> str:
        """messageId of the event's Track: from its fact, else the transport's delivery id, else random."""
        key = self.fact_key
        if key is not None:
            return self.message_id(key)
        return self.delivery_id or str(uuid.uuid4())


def _ids(event: Event, user_id: str | None) -> dict[str, str]:
    ids = {"anonymousId": event.visitor_id}
    if user_id:
        ids["userId"] = user_id
    return ids


def identify_message(event: Event, message_id: str, user_id: str | None) -> dict[str, Any]:
    """Identify of the visitor (``anonymousId``), linked to ``user_id`` when given."""
    return {
        "type": "identify",
        "messageId": message_id,
        **_ids(event, user_id),
        "timestamp": event.timestamp,
        "context": event.context,
    }


def track_message(event: Event, message_id: str, variant_id: str | None = None) -> dict[str, Any]:
    """The event's Track: "Experiment Viewed" (with the A/B spec names) or "Conversion Triggered".

    ``variant_id`` overrides the body's variant when the dedup state already records one.
    """
    body = event.body
    if event.kind == "assignment":
        variant = variant_id or body["variant_id"]
        properties: dict[str, Any] = {
            "test_id": body["test_id"],
            "variant_id": variant,
            "experiment_id": body["test_id"],
            "variation_id": variant,
        }
        for ours, spec in (("test_name", "experiment_name"), ("variant_name", "variation_name")):
            if ours in body and variant == body["variant_id"]:
                properties[ours] = properties[spec] = body[ours]
        name = "Experiment Viewed"
    elif event.kind == "conversion":
        properties = {
            "conversion_id": body["conversion_id"],
            "conversion_type": body["conversion_type"],
            "origin_url": body["origin_url"],
        }
        name = "Conversion Triggered"
    else:  # pragma: no cover - identify events have no Track
        raise ValueError("identify events have no track message")
    return {
        "type": "track",
        "event": name,
        "messageId": message_id,
        **_ids(event, event.user_id),
        "properties": properties,
        "timestamp": event.timestamp,
        "context": event.context,
    }
