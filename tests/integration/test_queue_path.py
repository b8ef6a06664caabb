"""The queue path end to end: SQS messages through the pollers, dead-letter queues, redrive, outages and crashes.

Queues are used with boto3 on the stack's endpoint, as a producer would; the overrides below shorten the
template's timings so that redeliveries happen within seconds.
"""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest

from local_stack.stack import LocalStack
from tests.support.stack_client import Api, drain, events_of, new_id, queue_depth, wait_for

pytestmark = pytest.mark.integration

MAX_RECEIVES = 3
STACK_OVERRIDES = {
    "visibility_timeout_s": 3,  # template: 180 s
    "function_timeout_s": 6,  # template: 30 s (the SQS path then retries Segment for 3 s)
    "parameters": {"MaxReceiveCount": str(MAX_RECEIVES), "HttpDeliveryBudgetSeconds": "1"},
    "environment": {"LEASE_SECONDS": "2"},  # template: 90 s; a crashed attempt's claim expires quickly
}


def _send(stack: LocalStack, queue: str, body: dict | str) -> str:
    text = body if isinstance(body, str) else json.dumps(body)
    return stack.client("sqs").send_message(QueueUrl=stack.queue_url(queue), MessageBody=text)["MessageId"]


def _assignment(workspace: str = "demo") -> dict:
    return {"workspace_id": workspace, "visitor_id": new_id("v"), "test_id": "t-q", "variant_id": "b"}


@pytest.fixture(autouse=True)
def _healthy_sink(stack: LocalStack):
    stack.sink.clear_faults()
    yield
    stack.sink.clear_faults()


def test_a_good_message_is_delivered_and_deleted(stack):
    body = _assignment()

    _send(stack, "AssignmentQueue", body)

    received = wait_for(lambda: len(events_of(stack, body["visitor_id"])) >= 2 and events_of(stack, body["visitor_id"]))
    assert [(e["message"]["type"], e["message"].get("event")) for e in received] == [
        ("identify", None),
        ("track", "Experiment Viewed"),
    ]
    assert received[1]["message"]["properties"]["variant_id"] == "b"
    wait_for(lambda: queue_depth(stack, stack.queue_url("AssignmentQueue")) == 0)
    assert queue_depth(stack, stack.dlq_url("AssignmentQueue")) == 0


def test_records_are_batched_per_workspace_and_sent_with_one_request_each(stack):
    bodies = [_assignment("demo") for _ in range(15)] + [_assignment("demo-eu") for _ in range(12)]
    requests_before = len(stack.sink.requests())
    with stack.pollers_paused():
        for body in bodies:
            _send(stack, "AssignmentQueue", body)

    wait_for(lambda: all(len(events_of(stack, b["visitor_id"])) == 2 for b in bodies), timeout_s=15)

    new_requests = stack.sink.requests()[requests_before:]
    # 27 records > 10 per receive: gathered within the batching window into one invocation of up to 50,
    # then one /v1/batch per workspace (Identify + Track each).
    assert sorted((r["region"], r["message_count"], r["status"]) for r in new_requests) == [
        ("eu", 24, 200),
        ("us", 30, 200),
    ]


def test_a_message_that_is_not_json_goes_to_the_dlq_with_its_reason_and_the_rest_is_delivered(stack):
    good_before, good_after = _assignment(), _assignment()
    with stack.pollers_paused():
        _send(stack, "AssignmentQueue", good_before)
        poison_id = _send(stack, "AssignmentQueue", "{not json")
        _send(stack, "AssignmentQueue", good_after)

    wait_for(lambda: all(len(events_of(stack, b["visitor_id"])) == 2 for b in (good_before, good_after)))
    parked = wait_for(lambda: drain(stack, stack.dlq_url("AssignmentQueue")))
    assert [m["Body"] for m in parked] == ["{not json"]
    attributes = {name: value["StringValue"] for name, value in parked[0]["MessageAttributes"].items()}
    assert attributes["error_code"] == "invalid_json"
    assert attributes["error_field"] == "body"
    assert attributes["error_message"].startswith("the body is not valid JSON")
    assert attributes["source_message_id"] == poison_id
    wait_for(lambda: queue_depth(stack, stack.queue_url("AssignmentQueue")) == 0)


@pytest.mark.parametrize(
    ("queue", "body", "code", "field"),
    [
        ("IdentifyQueue", {"workspace_id": "demo", "visitor_id": 42}, "invalid_type", "visitor_id"),
        ("IdentifyQueue", {"workspace_id": "demo", "visitor_id": "v", "extra": 1}, "unknown_field", "extra"),
        ("AssignmentQueue", {"workspace_id": "demo", "visitor_id": "v", "test_id": "t"}, "missing_field", "variant_id"),
        (
            "ConversionQueue",
            {
                "workspace_id": "demo",
                "visitor_id": "v",
                "conversion_id": "c",
                "conversion_type": "TAP",
                "origin_url": "https://x.example/",
            },
            "invalid_value",
            "conversion_type",
        ),
    ],
    ids=["wrong-type", "unknown-field", "missing-field", "bad-enum"],
)
def test_a_schema_violation_goes_to_the_dlq_at_once_with_code_message_and_field(stack, queue, body, code, field):
    _send(stack, queue, body)

    parked = wait_for(lambda: drain(stack, stack.dlq_url(queue)))

    assert [json.loads(m["Body"]) for m in parked] == [body]
    attributes = {name: value["StringValue"] for name, value in parked[0]["MessageAttributes"].items()}
    assert (attributes["error_code"], attributes["error_field"]) == (code, field)
    assert field in attributes["error_message"]
    assert attributes["receive_count"] == "1"  # parked at the first receive, no retries


def test_the_templates_redrive_policy_moves_a_message_to_the_dlq_after_max_receive_count(stack):
    sqs = stack.client("sqs")
    queue, dlq = stack.queue_url("IdentifyQueue"), stack.dlq_url("IdentifyQueue")
    policy = json.loads(
        sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"]
    )
    assert policy["maxReceiveCount"] == MAX_RECEIVES
    assert policy["deadLetterTargetArn"].endswith(":segment-forwarder-local-IdentifyDeadLetterQueue")

    with stack.pollers_paused():
        message_id = _send(stack, "IdentifyQueue", {"workspace_id": "demo", "visitor_id": new_id("v")})
        for _ in range(MAX_RECEIVES):  # a consumer that fails every time: received, never deleted
            got = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0, WaitTimeSeconds=1)["Messages"]
            assert [m["MessageId"] for m in got] == [message_id]
        assert sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0, WaitTimeSeconds=0).get("Messages", []) == []

        parked = drain(stack, dlq)
    assert [m["MessageId"] for m in parked] == [message_id]


def test_segment_outage_queues_the_event_and_the_queue_delivers_it_exactly_once(stack, api: Api):
    body = _assignment()
    stack.sink.set_fault(status=503, count=10_000)

    status, answer = api.post("/v1/assignments", body)

    assert (status, answer) == (202, {"status": "queued"})
    assert events_of(stack, body["visitor_id"]) == []
    refused_by_http = len(stack.sink.requests())
    wait_for(lambda: len(stack.sink.requests()) > refused_by_http)  # the queue path meets the outage too
    stack.sink.clear_faults()

    # A retried record is invisible while its backoff runs (the queue's depth reads 0 then): wait for Segment to
    # get it, after the backoff and the region breaker's cooldown that the outage opened
    wait_for(lambda: len(events_of(stack, body["visitor_id"])) >= 2, timeout_s=90)
    wait_for(lambda: queue_depth(stack, stack.queue_url("AssignmentQueue")) == 0, timeout_s=20)
    received = events_of(stack, body["visitor_id"])
    assert [e["message"]["type"] for e in received] == ["identify", "track"]
    assert len({e["message"]["messageId"] for e in received}) == 2
    assert stack.sink.requests()[refused_by_http]["status"] == 503  # the queue path's first try was refused
    assert queue_depth(stack, stack.dlq_url("AssignmentQueue")) == 0
    # Later calls for the same assignment are duplicates: the queued delivery marked it sent.
    assert api.post("/v1/assignments", body) == (200, {"status": "duplicate"})


@pytest.mark.concurrency
def test_a_crashed_worker_answers_500_and_is_replaced(stack, api: Api):
    stack.sink.set_fault(status=None, count=1, delay_s=5)  # the next Segment request stalls
    body = {"workspace_id": "demo", "visitor_id": new_id("v")}
    pids = stack.worker_pids("IdentifyFunction")

    answers: list[tuple[int, object]] = []
    caller = threading.Thread(target=lambda: answers.append(api.post("/v1/identify", body)))
    caller.start()
    wait_for(lambda: stack.sink.fault() is None)  # the stalled request has reached the sink
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    caller.join(timeout=10)

    assert answers == [(500, {"message": "Internal Server Error"})]
    status, answer = api.post("/v1/identify", {"workspace_id": "demo", "visitor_id": new_id("v")})
    assert status == 200 and answer["status"] == "delivered"
    assert not set(stack.worker_pids("IdentifyFunction")) & set(pids)


@pytest.mark.concurrency
def test_a_worker_crash_fails_the_batch_and_the_redelivery_sends_the_same_message_id(stack):
    body = {"workspace_id": "demo", "visitor_id": new_id("v")}
    stack.sink.set_fault(status=None, count=1, delay_s=4)  # the first attempt stalls at Segment
    pids = stack.worker_pids("IdentifyFunction")

    _send(stack, "IdentifyQueue", body)
    wait_for(lambda: stack.sink.fault() is None)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)  # the execution environment dies mid-invocation

    # The batch failed: the record comes back after the visibility timeout; its claim's lease (2 s) has expired
    # by then, so the redelivery sends the Identify again, under the same deterministic messageId.
    wait_for(lambda: queue_depth(stack, stack.queue_url("IdentifyQueue")) == 0, timeout_s=20)
    received = wait_for(lambda: events_of(stack, body["visitor_id"]), timeout_s=10)
    assert {e["message"]["type"] for e in received} == {"identify"}
    assert len({e["message"]["messageId"] for e in received}) == 1
    assert queue_depth(stack, stack.dlq_url("IdentifyQueue")) == 0
