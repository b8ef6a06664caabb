"""Lambda's Timeout, enforced in process: a handler is stopped at its deadline, the SQS batch it had comes back
whole, an HTTP caller gets API Gateway's answer, and nothing of the stopped environment reaches AWS or Segment
after the deadline (its worker threads included)."""

from __future__ import annotations

import time

import pytest

from tests.component.conftest import FunctionTimedOut, LambdaContext, sqs_record

STALL_S = 3.0  # a Segment request that stalls this long, far beyond the short function timeouts below


def assignment(workspace: str, visitor: str) -> dict:
    return {"workspace_id": workspace, "visitor_id": visitor, "test_id": "t-1", "variant_id": "a"}


def _effects(aws_faults) -> dict[str, int]:
    """AWS calls a function makes once Segment has answered: marking facts sent, giving claims back, delaying,
    parking or queueing records."""
    effects = {
        name: aws_faults.calls[name]
        for name in ("dynamodb:BatchWriteItem", "sqs:ChangeMessageVisibilityBatch", "sqs:SendMessageBatch")
        if aws_faults.calls[name]
    }
    if aws_faults.calls["sqs:SendMessage"]:
        effects["sqs:SendMessage"] = aws_faults.calls["sqs:SendMessage"]
    releases = [p for p in aws_faults.params.get("dynamodb:UpdateItem", []) if ":zero" in p["UpdateExpression"]]
    if releases:
        effects["release"] = len(releases)
    return effects


def _warm(stack, kind: str, **env: str):
    """A handler that has run once (its runtime built), so that a short timeout is spent on the call under test."""
    handler = stack.handler(kind, **env)
    warm_up = [sqs_record(assignment(workspace, "v-warm-up")) for workspace in ("ws-us", "ws-eu")]
    assert stack.invoke_sqs(kind, warm_up, handler=handler).retried == []
    stack.sink.clear()
    return handler


def test_an_sqs_invocation_stalled_at_segment_past_its_timeout_is_stopped_and_its_batch_comes_back_whole(
    stack, aws_faults
):
    # The SQS path gives Segment at least 1 s: with a 1 s function timeout, Lambda stops it first.
    handler = _warm(stack, "assignment", LEASE_SECONDS="1")  # the stopped attempt's claims expire soon
    records = [sqs_record(assignment("ws-us", f"v-{i}")) for i in range(3)]
    stack.sink.set_fault(status=None, count=1, delay_s=STALL_S)  # the request stalls, then Segment takes it
    before = _effects(aws_faults)

    started = time.monotonic()
    batch = stack.invoke_sqs("assignment", records, handler=handler, timeout_s=1.0)
    elapsed = time.monotonic() - started

    assert batch.timed_out
    assert elapsed < 1.3  # stopped at its deadline, not when Segment answered
    assert batch.retried == [r["messageId"] for r in records]  # the whole batch comes back
    assert _effects(aws_faults) == before  # nothing after the stalled request ran: no mark, no delay, no DLQ
    # The request already sent still reaches Segment (its bytes left); a redelivery sends the same messageIds.
    first = {e["message"]["messageId"] for e in stack.sink.wait_for_events(6, timeout_s=STALL_S + 2)}
    assert len(first) == 6
    with pytest.raises(RuntimeError, match="timed out before"):  # Lambda discards a timed-out environment
        stack.invoke_sqs("assignment", records, handler=handler)

    redelivered = [sqs_record(r["body"], message_id=r["messageId"], receive_count=2) for r in records]
    again = stack.invoke_sqs("assignment", redelivered, handler=stack.handler("assignment", LEASE_SECONDS="1"))

    assert again.retried == [] and not again.timed_out
    assert {e["message"]["messageId"] for e in stack.sink.events()} == first


def test_an_http_invocation_stalled_past_its_timeout_is_answered_as_api_gateway_answers_it(stack, aws_faults):
    # The HTTP path gives Segment at least 0.5 s: with a 0.4 s function timeout, Lambda stops it first.
    handler = stack.handler("assignment")
    assert stack.post("assignment", assignment("ws-us", "v-warm-up"), handler)[0] == 200
    stack.sink.set_fault(status=None, count=1, delay_s=STALL_S)
    before = _effects(aws_faults)

    started = time.monotonic()
    answer = stack.post("assignment", assignment("ws-us", "v-http"), handler, timeout_s=0.4)

    assert answer == (500, {"message": "Internal Server Error"})
    assert time.monotonic() - started < 0.7
    assert _effects(aws_faults) == before  # not queued: the caller got a 5xx and calls again


def test_a_handler_called_with_a_context_is_stopped_at_the_contexts_deadline(stack):
    handler = _warm(stack, "assignment")
    stack.sink.set_fault(status=None, count=1, delay_s=STALL_S)

    started = time.monotonic()
    with pytest.raises(FunctionTimedOut):
        handler({"Records": [sqs_record(assignment("ws-us", "v-ctx"))]}, LambdaContext(timeout_s=1.0))
    assert time.monotonic() - started < 1.3


def test_worker_threads_of_a_timed_out_invocation_send_nothing_more(stack):
    # Two workspaces are sent concurrently from the function's thread pool, each thread's request stalled at
    # Segment past the function's timeout (the product stops starting requests at its own deadline, so only
    # requests already in flight can outlive it). Their answers come after Lambda stopped the function: each
    # thread would retry or go on with its workspace's next request, and must not.
    handler = _warm(stack, "assignment")
    records = [sqs_record(assignment("ws-us" if i % 2 else "ws-eu", f"v-{i}")) for i in range(2)]
    for region in ("us", "eu"):
        stack.sink.set_fault(status=503, count=1, delay_s=1.5, region=region)

    batch = stack.invoke_sqs("assignment", records, handler=handler, timeout_s=1.0)
    until = time.monotonic() + 3.0
    while len(stack.sink.requests()) < 2 and time.monotonic() < until:
        time.sleep(0.05)  # the stalled requests land (answered 503: a retry would follow)
    landed = len(stack.sink.requests())
    time.sleep(1.5)

    assert batch.timed_out
    assert landed == 2  # both threads were sending when the deadline passed
    assert len(stack.sink.requests()) == landed  # and sent nothing after it


# -- a source that refuses everything is the workspace's configuration, not poison --------------------------


def _health(stack, workspace: str) -> dict:
    client = stack.session.client("dynamodb")
    items = client.query(
        TableName=stack.resources["DedupTable"].ref,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"HEALTH#{workspace}"}},
    )["Items"]
    return {
        "failed": sum(int(i.get("failed", {}).get("N", "0")) for i in items),
        "parked": sum(int(i.get("parked", {}).get("N", "0")) for i in items),
        "reasons": {i["last_failure_reason"]["S"] for i in items if "last_failure_reason" in i},
    }


@pytest.mark.parametrize("status", [400, 401, 403])
def test_a_source_that_refuses_everything_is_retried_within_the_timeout_and_its_neighbour_delivered(stack, status):
    # A full batch (the template's BatchSize, 50): 40 records of ws-us, whose source Segment refuses whatever it
    # is sent, and 10 of ws-eu. Each Segment round trip takes 0.2 s. Splitting ws-us's request in halves down to
    # single messages would take 2N-1 = 159 requests (32 s); the function's timeout is 15 s.
    records = [sqs_record(assignment("ws-us" if i % 5 else "ws-eu", f"v-{i}")) for i in range(50)]
    stack.sink.set_fault(status=status, count=10_000, write_key="key-us-0001")
    stack.sink.set_latency(0.2)

    batch = stack.invoke_sqs("assignment", records, timeout_s=15.0)
    stack.sink.set_latency(0)

    assert not batch.timed_out
    refused = [r["messageId"] for i, r in enumerate(records) if i % 5]
    assert sorted(batch.retried) == sorted(refused)  # retried later with backoff: nothing parked
    assert stack.drain("assignment", dead=True) == []
    requests = [r for r in stack.sink.requests() if r["write_key"] == "key-us-0001"]
    assert len(requests) == (1 if status in (401, 403) else 3)  # the whole, then (400) its two halves: no more
    delivered = {m["anonymousId"] for m in stack.tracks("Experiment Viewed")}
    assert delivered == {f"v-{i}" for i in range(0, 50, 5)}  # the neighbour's records went out
    health = _health(stack, "ws-us")
    assert (health["failed"], health["parked"]) == (40, 0)
    assert health["reasons"] == {f"segment_refused_all: {status}"}
    assert _health(stack, "ws-eu")["failed"] == 0


def test_a_message_refused_alone_while_its_neighbours_are_accepted_is_parked(stack):
    records = [sqs_record(assignment("ws-us", f"v-{i}")) for i in range(8)]
    stack.sink.set_fault(status=400, count=10_000, match={"anonymousId": "v-5", "type": "track"})

    batch = stack.invoke_sqs("assignment", records)

    assert batch.retried == []
    [parked] = stack.drain("assignment", dead=True)
    assert parked["Body"] == records[5]["body"]
    assert {m["anonymousId"] for m in stack.tracks("Experiment Viewed")} == {f"v-{i}" for i in range(8)} - {"v-5"}
