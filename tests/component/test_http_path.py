"""The HTTP path through the ingest handlers: every answer of the API, and what reaches Segment (the sink)."""

from __future__ import annotations

import json
import uuid

import pytest

from segment_forwarder import LIBRARY
from tests.support.bodies import ASSIGNMENT, CONVERSION


def test_new_visitor_assignment_is_delivered_with_identify_first(stack):
    status, body = stack.post("assignment", ASSIGNMENT)

    assert status == 200
    assert body["status"] == "delivered"
    messages = [e["message"] for e in stack.sink.events()]
    assert [m["type"] for m in messages] == ["identify", "track"]
    assert body["message_ids"] == [m["messageId"] for m in messages]
    assert {e["write_key"] for e in stack.sink.events()} == {"key-us-0001"}
    assert stack.item("WS#ws-us#V#v-1", "ASSIGN#t-1")["status"] == "SENT"
    assert stack.item("WS#ws-us#V#v-1", "IDENTIFY")["status"] == "SENT"


def test_same_assignment_again_is_a_duplicate_and_sends_nothing(stack):
    handler = stack.handler("assignment")
    stack.post("assignment", ASSIGNMENT, handler)
    sent = len(stack.sink.events())

    status, body = stack.post("assignment", ASSIGNMENT, handler)

    assert (status, body) == (200, {"status": "duplicate"})
    assert len(stack.sink.events()) == sent


def test_other_variant_of_same_test_keeps_the_first_variant(stack):
    handler = stack.handler("assignment")
    stack.post("assignment", ASSIGNMENT, handler)

    status, body = stack.post("assignment", {**ASSIGNMENT, "variant_id": "c"}, handler)

    assert (status, body) == (200, {"status": "duplicate"})
    assert json.loads(stack.item("WS#ws-us#V#v-1", "ASSIGN#t-1")["content"])["properties"]["variant_id"] == "b"
    assert [t["properties"]["variant_id"] for t in stack.tracks()] == ["b"]


def test_workspace_without_connection_is_skipped_and_claims_nothing(stack):
    status, body = stack.post("assignment", {**ASSIGNMENT, "workspace_id": "nobody"})

    assert (status, body) == (200, {"status": "skipped", "reason": "not_connected"})
    assert stack.sink.events() == []
    assert stack.item("WS#nobody#V#v-1", "ASSIGN#t-1") is None


def test_segment_outage_queues_the_event_with_its_receipt_time(stack):
    stack.sink.set_fault(status=503, count=100)
    handler = stack.handler("assignment", HTTP_DELIVERY_BUDGET_SECONDS="1")

    status, body = stack.post("assignment", ASSIGNMENT, handler)

    assert (status, body) == (202, {"status": "queued"})
    queued = stack.drain("assignment")
    assert len(queued) == 1
    assert "timestamp" in queued[0]["Body"]
    # The lease was released: the queued copy can be delivered right away.
    item = stack.item("WS#ws-us#V#v-1", "ASSIGN#t-1")
    assert item["status"] == "PENDING" and item["lease_until"] == "0"


def test_neither_delivered_nor_queued_answers_503(stack):
    stack.sink.set_fault(status=500, count=100)
    missing_queue = stack.queue_url("assignment") + "-gone"
    handler = stack.handler("assignment", HTTP_DELIVERY_BUDGET_SECONDS="1", QUEUE_URL=missing_queue)

    status, body = stack.post("assignment", ASSIGNMENT, handler)

    assert status == 503
    assert body["error"]["code"] == "unavailable"
    assert set(body["error"]) == {"code", "message", "field"}


def test_body_over_32_kb_is_413(stack):
    big = {**ASSIGNMENT, "context": {"userAgent": "x" * 2000, "page": {"title": "y" * 2000}, "extra": "z" * 33_000}}

    status, body = stack.post("assignment", big)

    assert status == 413
    assert body["error"]["code"] == "payload_too_large"
    assert stack.sink.events() == []


def test_message_over_32_kb_after_enrichment_is_413_before_anything_is_claimed(stack):
    # Just under the body limit; the Segment message (context + library + ids) goes over 32 KB.
    context = {f"custom{i}": "x" * ((32 * 1024 - 260) // 5) for i in range(5)}
    status, body = stack.post("assignment", {**ASSIGNMENT, "context": context})

    assert status == 413
    assert body["error"]["field"] == "body"
    assert stack.sink.events() == []
    assert stack.item("WS#ws-us#V#v-1", "ASSIGN#t-1") is None
    assert stack.item("WS#ws-us#V#v-1", "IDENTIFY") is None


def test_eu_workspace_goes_to_the_eu_host_only(stack):
    status, _ = stack.post("assignment", {**ASSIGNMENT, "workspace_id": "ws-eu"})

    assert status == 200
    assert {e["region"] for e in stack.sink.events()} == {"eu"}
    assert {e["write_key"] for e in stack.sink.events()} == {"key-eu-0002"}
    assert {r["region"] for r in stack.sink.requests()} == {"eu"}


@pytest.mark.parametrize("kind", ["identify", "assignment", "conversion"])
def test_first_seen_identify_on_each_entry_kind(stack, kind):
    bodies = {
        "identify": {"workspace_id": "ws-us", "visitor_id": "v-9"},
        "assignment": {**ASSIGNMENT, "visitor_id": "v-9"},
        "conversion": {**CONVERSION, "visitor_id": "v-9"},
    }
    stack.post(kind, bodies[kind])

    identifies = stack.identifies()
    assert len(identifies) == 1
    assert identifies[0]["anonymousId"] == "v-9"
    assert stack.sink.events()[0]["message"]["type"] == "identify"


def test_visitor_identified_once_across_kinds(stack):
    stack.post("identify", {"workspace_id": "ws-us", "visitor_id": "v-1"})
    stack.post("assignment", ASSIGNMENT)
    stack.post("conversion", CONVERSION)

    assert len(stack.identifies()) == 1
    assert [t["event"] for t in stack.tracks()] == ["Experiment Viewed", "Conversion Triggered"]


def test_new_user_id_links_once_per_visitor_and_user(stack):
    handler = stack.handler("conversion")
    stack.post("conversion", CONVERSION, handler)  # anonymous: first Identify without userId
    stack.post("conversion", {**CONVERSION, "user_id": "u-7"}, handler)
    stack.post("conversion", {**CONVERSION, "user_id": "u-7"}, handler)
    stack.post("conversion", {**CONVERSION, "user_id": "u-8"}, handler)

    identifies = stack.identifies()
    assert [i.get("userId") for i in identifies] == [None, "u-7", "u-8"]
    assert len({i["messageId"] for i in identifies}) == 3


def test_first_identify_that_carries_the_user_id_is_the_link(stack):
    stack.post("identify", {"workspace_id": "ws-us", "visitor_id": "v-2", "user_id": "u-1"})
    status, body = stack.post("assignment", {**ASSIGNMENT, "visitor_id": "v-2", "user_id": "u-1"})

    assert status == 200
    identifies = stack.identifies()
    assert len(identifies) == 1 and identifies[0]["userId"] == "u-1"
    assert len(body["message_ids"]) == 1  # only the Track


def test_identify_repeated_is_duplicate(stack):
    handler = stack.handler("identify")
    first = stack.post("identify", {"workspace_id": "ws-us", "visitor_id": "v-3"}, handler)
    again = stack.post("identify", {"workspace_id": "ws-us", "visitor_id": "v-3"}, handler)

    assert first[0] == 200 and first[1]["status"] == "delivered"
    assert again == (200, {"status": "duplicate"})


def test_one_per_visitor_conversion_is_forwarded_once(stack):
    handler = stack.handler("conversion")
    body = {**CONVERSION, "one_per_visitor": True}
    answers = [stack.post("conversion", body, handler)[1]["status"] for _ in range(3)]

    assert answers == ["delivered", "duplicate", "duplicate"]
    assert len(stack.tracks("Conversion Triggered")) == 1


def test_conversion_without_keys_is_forwarded_every_time_with_new_ids(stack):
    handler = stack.handler("conversion")
    for _ in range(3):
        assert stack.post("conversion", CONVERSION, handler)[1]["status"] == "delivered"

    tracks = stack.tracks("Conversion Triggered")
    assert len(tracks) == 3
    assert len({t["messageId"] for t in tracks}) == 3


def test_event_id_makes_a_conversion_idempotent(stack):
    handler = stack.handler("conversion")
    body = {**CONVERSION, "event_id": "e-1"}
    first = stack.post("conversion", body, handler)
    again = stack.post("conversion", body, handler)
    other = stack.post("conversion", {**body, "event_id": "e-2"}, handler)

    assert first[1]["status"] == "delivered"
    assert again == (200, {"status": "duplicate"})
    assert other[1]["status"] == "delivered"
    assert len(stack.tracks("Conversion Triggered")) == 2
    item = stack.item("WS#ws-us#V#v-1", "EVENT#e-1")
    once = stack.item("WS#ws-us#V#v-1", "IDENTIFY")
    # EVENT# facts live for hours, once-per-visitor facts for the dedup TTL (days).
    assert int(item["expires_at"]) - int(item["first_attempt_at"]) == 72 * 3600
    assert int(once["expires_at"]) - int(once["first_attempt_at"]) == 400 * 86400


def test_base64_body_is_accepted(stack):
    status, body = stack.post("assignment", ASSIGNMENT, base64_body=True)

    assert status == 200 and body["status"] == "delivered"


def test_malformed_secret_is_retried_through_the_queue(stack):
    stack.put_secret("ws-bad", '{"write_key": 42}')

    status, body = stack.post("assignment", {**ASSIGNMENT, "workspace_id": "ws-bad"})

    assert (status, body) == (202, {"status": "queued"})
    assert len(stack.drain("assignment")) == 1


def test_message_ids_are_deterministic_uuids(stack):
    _, body = stack.post("assignment", ASSIGNMENT)

    for message_id in body["message_ids"]:
        assert uuid.UUID(message_id).version == 5


def test_context_is_forwarded_with_library_set(stack):
    context = {"ip": "203.0.113.7", "library": {"name": "spoofed"}, "page": {"url": "https://a.example/x"}}
    stack.post("assignment", {**ASSIGNMENT, "context": context})

    for event in stack.sink.events():
        assert event["message"]["context"]["ip"] == "203.0.113.7"
        assert event["message"]["context"]["page"] == {"url": "https://a.example/x"}
        assert event["message"]["context"]["library"] == LIBRARY


def test_basic_auth_carries_the_write_key(stack):
    stack.post("assignment", ASSIGNMENT)

    # The sink answers 400 when Basic auth and the body's writeKey differ, and records the key it authenticated.
    assert [(r["status"], r["write_key"]) for r in stack.sink.requests()] == [(200, "key-us-0001")]


def test_dynamodb_unavailable_queues_the_event(stack):
    handler = stack.handler("assignment", DEDUP_TABLE="no-such-table")

    status, body = stack.post("assignment", ASSIGNMENT, handler)

    assert (status, body) == (202, {"status": "queued"})
    assert stack.sink.requests() == []
    assert len(stack.drain("assignment")) == 1
