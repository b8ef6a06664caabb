"""The exact Segment payloads of the three calls of the customer-facing page
(``shared/seed/optibase-segment-integration.md``): Identify, Experiment Viewed, Conversion Triggered."""

from __future__ import annotations

import re
import uuid

from segment_forwarder import LIBRARY

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
CONTEXT = {"ip": "203.0.113.7", "userAgent": "Mozilla/5.0", "page": {"url": "https://shop.example.com/pricing"}}


def only_message(stack, type_: str) -> dict:
    [message] = [e["message"] for e in stack.sink.events() if e["message"]["type"] == type_]
    assert ISO_MS.match(message.pop("sentAt"))  # the sink copies the envelope's sentAt into each item
    return message


def expected_id(workspace: str, visitor: str, key: str) -> str:
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "segment-forwarder:message-id")
    return str(uuid.uuid5(namespace, f"{workspace}\n{visitor}\n{key}"))


def test_identify_payload(stack):
    stack.post(
        "identify",
        {
            "workspace_id": "ws-us",
            "visitor_id": "v-1001",
            "user_id": "u-42",
            "timestamp": "2026-11-29T13:00:00+01:00",
            "context": CONTEXT,
        },
    )

    assert only_message(stack, "identify") == {
        "type": "identify",
        "messageId": expected_id("ws-us", "v-1001", "IDENTIFY"),
        "anonymousId": "v-1001",  # the platform's internal visitor id
        "userId": "u-42",  # the site's own user id, when provided
        "timestamp": "2026-11-29T12:00:00.000Z",  # UTC with milliseconds
        "context": {**CONTEXT, "library": LIBRARY},  # context where available
    }


def test_experiment_viewed_payload(stack):
    stack.post(
        "assignment",
        {
            "workspace_id": "ws-us",
            "visitor_id": "v-1001",
            "test_id": "t-checkout",
            "variant_id": "b",
            "test_name": "Checkout button",
            "variant_name": "Green button",
            "timestamp": "2026-11-29T12:00:00.123456Z",
        },
    )

    assert only_message(stack, "track") == {
        "type": "track",
        "event": "Experiment Viewed",
        "messageId": expected_id("ws-us", "v-1001", "ASSIGN#t-checkout"),
        "anonymousId": "v-1001",
        "properties": {
            "test_id": "t-checkout",
            "variant_id": "b",
            # Segment's A/B testing spec names, for destinations that read the spec
            "experiment_id": "t-checkout",
            "variation_id": "b",
            "test_name": "Checkout button",
            "experiment_name": "Checkout button",
            "variant_name": "Green button",
            "variation_name": "Green button",
        },
        "timestamp": "2026-11-29T12:00:00.123Z",
        "context": {"library": LIBRARY},
    }


def test_conversion_triggered_payload(stack):
    stack.post(
        "conversion",
        {
            "workspace_id": "ws-us",
            "visitor_id": "v-1001",
            "user_id": "u-42",
            "conversion_id": "c-signup",
            "conversion_type": "PAGE_VIEW",
            "origin_url": "https://shop.example.com/pricing?plan=pro",
            "one_per_visitor": True,
            "timestamp": "2026-11-29T12:00:00Z",
            "context": CONTEXT,
        },
    )

    assert only_message(stack, "track") == {
        "type": "track",
        "event": "Conversion Triggered",
        "messageId": expected_id("ws-us", "v-1001", "CONV#c-signup"),
        "anonymousId": "v-1001",
        "userId": "u-42",
        "properties": {
            "conversion_id": "c-signup",
            "conversion_type": "PAGE_VIEW",
            "origin_url": "https://shop.example.com/pricing?plan=pro",
        },
        "timestamp": "2026-11-29T12:00:00.000Z",
        "context": {**CONTEXT, "library": LIBRARY},
    }


def test_default_timestamp_is_the_time_of_receipt(stack):
    stack.post("identify", {"workspace_id": "ws-us", "visitor_id": "v-1"})

    message = only_message(stack, "identify")
    received = stack.sink.events()[0]["received_at"]
    assert ISO_MS.match(message["timestamp"])
    assert message["timestamp"] <= received
