"""The redrive drill on the local stack: Segment is down longer than a record may be retried, the real function
parks the events, Segment recovers, ``python -m ops.redrive`` (what ``make redrive`` runs) puts them back, and each
is delivered once, under the messageId its first attempts used (a conversion without ``event_id`` included)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from botocore.exceptions import EndpointConnectionError

from ops.redrive import QueuePair, render
from ops.redrive import redrive as redrive_in_process
from segment_forwarder.events import sqs_delivery_id
from tests.support.stack_client import drain, events_of, new_id, queue_depth, run_tool, wait_for

# A short life for a failing record: 2 receives, then parked (by the function on its last receive, or by the
# queue's redrive policy: either way with its SQS message id, which is what the redrive derives from). Shortened
# timings keep the template's rule: function timeout < lease <= visibility timeout - function timeout.
STACK_OVERRIDES = {
    "parameters": {"MaxReceiveCount": "2", "HttpDeliveryBudgetSeconds": "1"},
    "function_timeout_s": 3,
    "environment": {"LEASE_SECONDS": "4"},
    "visibility_timeout_s": 7,
}


def redrive(stack, kind: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return run_tool(stack, "ops.redrive", kind, *flags, timeout_s=120)


def test_events_parked_by_an_outage_are_redriven_and_delivered_once_under_their_first_message_ids(stack):
    visitor = new_id("v-redrive")
    conversion = {
        "workspace_id": "demo",
        "visitor_id": visitor,
        "conversion_id": "c-signup",
        "conversion_type": "CLICK",
        "origin_url": "https://shop.example.com/pricing",
    }  # no event_id: forwarded once per call, under the delivery id its first attempt used
    assignment = {"workspace_id": "demo", "visitor_id": visitor, "test_id": "t-redrive", "variant_id": "b"}
    sqs = stack.client("sqs")
    queue, dlq = stack.queue_url("ConversionQueue"), stack.dlq_url("ConversionQueue")
    stack.sink.set_fault(status=503, count=100_000)
    try:
        sent = [
            sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))["MessageId"]
            for body in (conversion, conversion)  # the same body twice: two calls, two conversions
        ]
        sqs.send_message(QueueUrl=stack.queue_url("AssignmentQueue"), MessageBody=json.dumps(assignment))
        wait_for(lambda: queue_depth(stack, dlq) == 2 and queue_depth(stack, queue) == 0, timeout_s=60)
        wait_for(lambda: queue_depth(stack, stack.dlq_url("AssignmentQueue")) == 1, timeout_s=60)
        dry = redrive(stack, "conversion", "--dry-run")
    finally:
        stack.sink.clear_faults()
    assert events_of(stack, visitor) == []
    assert dry.returncode == 0, dry.stderr
    assert "DRY RUN: nothing moved or deleted. 2 message(s) looked at" in dry.stdout
    assert queue_depth(stack, dlq) == 2  # the dry run left them where they were

    moved = redrive(stack, "conversion")
    moved_assignment = redrive(stack, "assignment")

    assert moved.returncode == 0 and moved_assignment.returncode == 0, moved.stderr + moved_assignment.stderr
    assert "moved 2 message(s) back to the source queue" in moved.stdout
    delivered = wait_for(lambda: len(events_of(stack, visitor)) >= 4 and events_of(stack, visitor), timeout_s=60)
    wait_for(lambda: queue_depth(stack, queue) == 0 and queue_depth(stack, dlq) == 0, timeout_s=30)
    messages = [event["message"] for event in events_of(stack, visitor)]
    conversions = [m for m in messages if m.get("event") == "Conversion Triggered"]
    assert sorted(m["messageId"] for m in conversions) == sorted(sqs_delivery_id(message_id) for message_id in sent)
    assert [m.get("event") for m in messages].count("Experiment Viewed") == 1
    assert [m["type"] for m in messages].count("identify") == 1
    assert len(delivered) == len(messages) == 4  # nothing twice
    assert drain(stack, dlq) == []


def test_a_body_that_can_never_succeed_is_left_in_the_dlq_and_the_report_says_why(stack):
    queue, dlq = stack.queue_url("ConversionQueue"), stack.dlq_url("ConversionQueue")
    stack.client("sqs").send_message(QueueUrl=queue, MessageBody="{not json")  # parked at once as invalid_json
    wait_for(lambda: queue_depth(stack, dlq) == 1 and queue_depth(stack, queue) == 0, timeout_s=30)

    moved = redrive(stack, "conversion")

    assert moved.returncode == 0, moved.stderr
    assert "moved 0 message(s)" in moved.stdout
    assert "SKIPPED (left in the DLQ): 1 message(s) that cannot succeed" in moved.stdout
    assert "invalid_json (the body can never succeed)" in moved.stdout
    [left] = drain(stack, dlq)
    assert left["Body"] == "{not json"


def test_an_interrupted_redrive_sends_a_conversion_without_event_id_twice_under_one_message_id(stack):
    """The run is interrupted between copy and delete (every DeleteMessageBatch fails, as a lost connection or a
    killed process would leave it); the next run moves the messages again. What reaches Segment: the conversion
    with an event_id once (the function's fact), the one without twice under one messageId (Segment drops the
    repeat within about 24 h; the sink, like Segment's API, answers both)."""
    visitor = new_id("v-interrupted")
    without_id = {"workspace_id": "demo", "visitor_id": visitor, "conversion_id": "c-a", "conversion_type": "CLICK",
                  "origin_url": "https://shop.example.com/a"}  # fmt: skip
    with_id = {**without_id, "conversion_id": "c-b", "event_id": new_id("e")}
    sqs = stack.client("sqs")
    queue, dlq = stack.queue_url("ConversionQueue"), stack.dlq_url("ConversionQueue")
    stack.sink.set_fault(status=503, count=100_000)
    try:
        first_id = sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(without_id))["MessageId"]
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(with_id))
        wait_for(lambda: queue_depth(stack, dlq) == 2 and queue_depth(stack, queue) == 0, timeout_s=60)
    finally:
        stack.sink.clear_faults()
    pair = QueuePair("conversion", queue, dlq, "the local stack")

    def lost(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url=stack.aws_endpoint)

    interrupted = stack.client("sqs")
    interrupted.meta.events.register("before-call.sqs.DeleteMessageBatch", lost)
    first = redrive_in_process(interrupted, pair, visibility_s=2)
    wait_for(lambda: len(conversions_of(stack, visitor)) == 2, timeout_s=60)
    second = redrive_in_process(stack.client("sqs"), pair, wait_s=30, poll_s=0.5)
    wait_for(lambda: queue_depth(stack, queue) == 0 and queue_depth(stack, dlq) == 0, timeout_s=60)

    assert (first.moved, first.not_deleted, first.exit_status) == (2, 2, 1)
    assert any("run again today" in line for line in render(first, pair))
    assert (second.moved, second.ok) == (2, True)
    delivered = wait_for(lambda: len(conversions_of(stack, visitor)) >= 3 and conversions_of(stack, visitor), 30)
    ids = [message["messageId"] for message in delivered]
    assert ids.count(sqs_delivery_id(first_id)) == 2  # twice, under the messageId of its first attempt
    assert len(ids) == 3 and len(set(ids)) == 2  # the one with an event_id: once
    assert [m["properties"].get("conversion_id") for m in delivered].count("c-b") == 1


def conversions_of(stack, visitor: str) -> list[dict[str, Any]]:
    return [e["message"] for e in events_of(stack, visitor) if e["message"].get("event") == "Conversion Triggered"]
