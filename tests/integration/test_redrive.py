"""The redrive drill on the local stack: Segment is down longer than a record may be retried, the real function
parks the events, Segment recovers, ``python -m ops.redrive`` (what ``make redrive`` runs) puts them back, and each
is delivered once, under the messageId its first attempts used (a conversion without ``event_id`` included)."""

from __future__ import annotations

import json
import subprocess

from segment_forwarder.events import sqs_delivery_id
from tests.stack_client import drain, events_of, new_id, queue_depth, run_tool, wait_for

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
