"""Identity facts through the real handlers (moto and the sink): each fact once, under one messageId, with the
content its first claim recorded, whatever was claimed with it and however attempts failed before."""

from __future__ import annotations

import json
import time
from collections import defaultdict

from segment_forwarder.messages import message_id
from tests.component.conftest import LambdaContext, on_both_engines, sqs_record

pytestmark = on_both_engines

ASSIGNMENT = {"workspace_id": "ws-us", "visitor_id": "v-1", "test_id": "t-1", "variant_id": "a"}
IDENTIFY = {"workspace_id": "ws-us", "visitor_id": "v-1"}


def contents_by_message_id(stack) -> dict[str, set[str]]:
    """Every messageId the sink received, with the distinct contents it came with (the message without its id,
    context and the envelope's fields the sink merges in)."""
    contents: dict[str, set[str]] = defaultdict(set)
    for event in stack.sink.events():
        message = {k: v for k, v in event["message"].items() if k not in ("context", "messageId", "sentAt")}
        contents[event["message"]["messageId"]].add(json.dumps(message, sort_keys=True))
    return contents


def test_a_repeat_in_the_same_sqs_batch_still_sends_its_new_user_link(stack):
    handler = stack.handler("assignment")
    records = [sqs_record(ASSIGNMENT), sqs_record({**ASSIGNMENT, "user_id": "u-42"})]

    assert handler({"Records": records}, LambdaContext()) == {"batchItemFailures": []}

    identifies = stack.identifies()
    assert [i.get("userId") for i in identifies] == [None, "u-42"]
    assert identifies[1]["messageId"] == message_id("ws-us", "v-1", "IDENTIFY#U#u-42")
    assert len(stack.tracks("Experiment Viewed")) == 1


def test_a_link_keeps_its_own_message_id_after_an_unrecorded_first_identify(stack, aws_faults):
    # The anonymous first Identify reaches Segment, but the table cannot record it (throttled).
    handler = stack.handler("identify", LEASE_SECONDS="1")
    aws_faults.fail("dynamodb:BatchWriteItem")
    status, body = stack.post("identify", IDENTIFY, handler)
    assert (status, body["status"]) == (200, "delivered")
    time.sleep(2.1)  # its lease expires

    status, body = stack.post("identify", {**IDENTIFY, "user_id": "u-42"}, handler)

    assert status == 200
    contents = contents_by_message_id(stack)
    assert all(len(distinct) == 1 for distinct in contents.values()), contents
    linked = [e["message"] for e in stack.sink.events() if e["message"].get("userId") == "u-42"]
    assert {m["messageId"] for m in linked} == {message_id("ws-us", "v-1", "IDENTIFY#U#u-42")}
    first = [
        e["message"] for e in stack.sink.events() if e["message"]["type"] == "identify" and "userId" not in e["message"]
    ]
    assert {m["messageId"] for m in first} == {message_id("ws-us", "v-1", "IDENTIFY")}


def test_every_reclaim_keeps_the_first_recorded_variant(stack):
    handler = stack.handler("assignment")
    stack.sink.set_fault(status=503, count=100)
    assert stack.post("assignment", ASSIGNMENT, handler)[0] == 202
    assert stack.post("assignment", {**ASSIGNMENT, "variant_id": "b"}, handler)[0] == 202
    stack.sink.clear_faults()

    # in another execution environment (this one's circuit breaker keeps it away from Segment for a while)
    status, body = stack.post("assignment", {**ASSIGNMENT, "variant_id": "c"}, stack.handler("assignment"))

    assert (status, body["status"]) == (200, "delivered")
    [viewed] = stack.tracks("Experiment Viewed")
    assert viewed["properties"]["variant_id"] == "a"
    assert json.loads(stack.item("WS#ws-us#V#v-1", "ASSIGN#t-1")["content"])["properties"]["variant_id"] == "a"


def test_the_first_identify_records_its_timestamp_for_every_resend(stack):
    handler = stack.handler("assignment")
    stack.sink.set_fault(status=503, count=100)
    first = {**ASSIGNMENT, "timestamp": "2026-11-29T10:00:00Z"}
    assert stack.post("assignment", first, handler)[0] == 202
    stack.sink.clear_faults()

    stack.post("identify", {**IDENTIFY, "timestamp": "2026-11-29T11:00:00Z"}, stack.handler("identify"))

    [identify] = stack.identifies()
    assert identify["timestamp"] == "2026-11-29T10:00:00.000Z"
