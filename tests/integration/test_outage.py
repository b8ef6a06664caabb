"""Segment outages on the local stack, with the retry parameters compressed: an outage longer than the old receive
budget parks nothing and everything is delivered once after it; past its retry horizon a record is parked with its
reason; a permanent refusal is parked at once; a warm function's circuit breaker cuts the requests a failing
Segment gets (counted at the sink, against a stack whose breaker is off)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from local_stack.stack import LocalStack
from segment_forwarder.events import sqs_delivery_id
from tests.support.stack_client import drain, events_of, new_id, queue_depth, wait_for

pytestmark = pytest.mark.integration

# Retries every 1-2 s (backoff cap 2 s), horizon 1 minute; the timings keep the template's rule:
# function timeout < lease <= visibility timeout - function timeout.
TIMINGS: dict[str, Any] = {"function_timeout_s": 2, "visibility_timeout_s": 5, "max_workers": 1}
ENVIRONMENT = {"LEASE_SECONDS": "3"}
PARAMETERS = {"RetryHorizonMinutes": "1", "RetryBackoffCapSeconds": "2", "HttpDeliveryBudgetSeconds": "1"}
STACK_OVERRIDES = {**TIMINGS, "environment": ENVIRONMENT, "parameters": PARAMETERS}
OLD_RECEIVE_BUDGET_S = 5 * TIMINGS["visibility_timeout_s"]  # MaxReceiveCount 5 x the visibility timeout


def assignment(visitor: str, test: str = "t-outage") -> dict[str, str]:
    return {"workspace_id": "demo", "visitor_id": visitor, "test_id": test, "variant_id": "b"}


def send(stack: LocalStack, bodies: list[dict[str, Any]], **attributes: str) -> None:
    sqs = stack.client("sqs")
    for body in bodies:
        sqs.send_message(
            QueueUrl=stack.queue_url("AssignmentQueue"),
            MessageBody=json.dumps(body),
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )


def parked(stack: LocalStack) -> list[dict[str, str]]:
    return [
        {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}
        for m in drain(stack, stack.dlq_url("AssignmentQueue"))
    ]


def settled(stack: LocalStack) -> bool:
    return queue_depth(stack, stack.queue_url("AssignmentQueue")) == 0


def test_an_outage_longer_than_the_old_receive_budget_parks_nothing_and_delivers_once_after(stack):
    visitors = [new_id("v-outage") for _ in range(3)]
    stack.sink.set_fault(status=503, count=1_000_000)
    try:
        send(stack, [assignment(v) for v in visitors])
        time.sleep(OLD_RECEIVE_BUDGET_S + 5)  # where the old template parked every one of them
        assert parked(stack) == []
        assert all(events_of(stack, v) == [] for v in visitors)
    finally:
        stack.sink.clear_faults()

    wait_for(lambda: all(len(events_of(stack, v)) >= 2 for v in visitors) and settled(stack), timeout_s=90)
    for visitor in visitors:
        ids = {e["message"]["messageId"] for e in events_of(stack, visitor)}
        assert len(ids) == 2  # its Identify and its Experiment Viewed, once each
    assert parked(stack) == []


def test_a_record_past_its_retry_horizon_is_parked_with_its_reason(stack):
    visitor = new_id("v-horizon")
    two_minutes_ago = str(int(time.time() * 1000) - 120_000)
    stack.sink.set_fault(status=503, count=1_000_000)
    try:
        # a producer's delivery_id is not believed (not bound to the body): the id derives from the SQS message id
        send(stack, [assignment(visitor)], retry_since=two_minutes_ago, delivery_id="d-horizon")
        [reason] = wait_for(lambda: parked(stack), timeout_s=30)
    finally:
        stack.sink.clear_faults()

    assert (reason["error_code"], reason["error_message"]) == ("retries_exhausted", "segment answered 503")
    assert (reason["retry_since"], reason["delivery_id"], reason["source_kind"]) == (
        two_minutes_ago,
        sqs_delivery_id(reason["source_message_id"]),
        "assignment",
    )


def test_a_permanent_refusal_is_parked_at_once(stack):
    visitor = new_id("v-refused")
    wait_for(lambda: settled(stack), timeout_s=90)
    # its Track is refused while its Identify is accepted: that message, not the source (a source that refuses
    # everything is retried, never parked)
    stack.sink.set_fault(status=400, count=1_000, match={"anonymousId": visitor, "type": "track"})
    try:
        send(stack, [assignment(visitor)])
        [reason] = wait_for(lambda: parked(stack), timeout_s=90)
    finally:
        stack.sink.clear_faults()

    # parked as soon as Segment answered it (a breaker still cooling down from an earlier outage may delay that
    # answer by a receive or two), never retried after the refusal
    assert reason["error_code"] == "rejected" and int(reason["receive_count"]) <= 3


def test_the_circuit_breaker_cuts_the_requests_a_failing_segment_gets(stack, api):
    stack.sink.set_fault(status=503, count=1_000_000)
    stack.sink.clear()
    try:
        answers = [api.post("/v1/assignments", assignment(new_id("v-breaker")))[0] for _ in range(30)]
        requests = len(stack.sink.requests())
    finally:
        stack.sink.clear_faults()

    print(f"\nSegment requests during an outage, for 30 HTTP calls: {requests}")
    assert answers == [202] * 30  # every call queued: nothing lost
    # without the breaker every call tries Segment at least once (30 requests); with it the one warm function
    # sends three, then one probe per cooldown (5 s, 10 s, ...)
    assert requests <= 6
    wait_for(lambda: settled(stack), timeout_s=120)
