"""The product on a DynamoDB that behaves as AWS's does under load: eventually consistent reads that are stale,
batches left partly unprocessed and calls throttled, injected in moto's engine (``local_stack.moto_dynamodb``)
rather than at botocore's boundary, so that boto3's own retries and the product's loops meet them as on AWS."""

from __future__ import annotations

import time

from local_stack.moto_dynamodb import counters, engine_faults, reset_counters, stale_reads
from tests.component.conftest import LambdaContext, sqs_record

ASSIGNMENT = {"workspace_id": "ws-us", "visitor_id": "v-1", "test_id": "t-1", "variant_id": "b"}


def _records(count: int, prefix: str = "v") -> list[dict]:
    return [sqs_record({**ASSIGNMENT, "visitor_id": f"{prefix}-{i}"}) for i in range(count)]


def _sent_then_cold(stack, count: int) -> object:
    """``count`` assignments delivered (SENT), and a cold function warmed on another visitor."""
    assert stack.handler("assignment")({"Records": _records(count)}, LambdaContext()) == {"batchItemFailures": []}
    cold = stack.handler("assignment")
    cold({"Records": [sqs_record({**ASSIGNMENT, "visitor_id": "v-warm-up"})]}, LambdaContext())
    stack.sink.clear()
    return cold


def test_the_pre_read_is_consistent_so_stale_reads_cost_nothing(stack, aws_faults):
    # The SQS path's pre-read decides what is claimed and whether a visitor is erased: it reads consistently, so even
    # when every eventually consistent read answers from the past, repeats are found SENT and cost no write.
    with stale_reads(lag_ms=60_000, probability=1.0, seed=1):
        cold = _sent_then_cold(stack, 10)
        aws_faults.calls.clear()
        reset_counters()

        assert cold({"Records": _records(10)}, LambdaContext()) == {"batchItemFailures": []}

    assert counters()["stale_reads"] == 0
    assert all(
        params.get("ConsistentRead")
        for params in aws_faults.params["dynamodb:BatchGetItem"][-1]["RequestItems"].values()
    )
    assert dict(aws_faults.calls) == {"dynamodb:BatchGetItem": 1}
    assert stack.sink.requests() == []


def test_unprocessed_pre_read_keys_are_read_again(stack, aws_faults):
    cold = _sent_then_cold(stack, 40)  # 80 facts
    aws_faults.calls.clear()
    with engine_faults(unprocessed=0.3, seed=2):
        assert cold({"Records": _records(40)}, LambdaContext()) == {"batchItemFailures": []}
    assert counters()["unprocessed"] > 0
    assert aws_faults.calls["dynamodb:BatchGetItem"] > 1  # the unprocessed keys asked again
    assert stack.sink.requests() == []


def test_unprocessed_marks_are_written_again(stack):
    handler = stack.handler("assignment")
    with engine_faults(unprocessed=0.3, seed=3):
        reset_counters()
        assert handler({"Records": _records(20)}, LambdaContext()) == {"batchItemFailures": []}
        assert counters()["unprocessed"] > 0
    for i in range(20):
        item = stack.item(f"WS#ws-us#V#v-{i}", "ASSIGN#t-1")
        assert item is not None and item["status"] == "SENT", (i, item)
    assert len(stack.tracks()) == 20


def test_occasional_throttling_is_absorbed_by_retries(stack):
    # a release throttled past boto3's retries leaves its lease until it ends: 1 s here
    handler = stack.handler("assignment", LEASE_SECONDS="1")
    with engine_faults(throttle=0.15, seed=4):
        reset_counters()
        for i in range(10):
            status, body = stack.post("assignment", {**ASSIGNMENT, "visitor_id": f"v-{i}"}, handler)
            # a claim throttled past boto3's retries is unavailable: the call is queued (or, when that fails too, 503)
            assert (status, body.get("status")) in ((200, "delivered"), (202, "queued"), (503, None)), (status, body)
        assert counters()["throttled"] > 0
    time.sleep(2.1)  # any lease a throttled release left has ended
    for i in range(10):  # whatever was refused, a client's retry is delivered or queued, never lost
        status, body = stack.post("assignment", {**ASSIGNMENT, "visitor_id": f"v-{i}"}, handler)
        assert status in (200, 202), body
    for _ in range(10):  # what was queued goes through the SQS path, as the event source would feed it
        queued = stack.received("assignment")
        if not queued:
            break
        stack.run_batch("assignment", queued)
    # every visitor's Experiment Viewed reached Segment under one messageId, whichever path sent it
    ids: dict[str, set[str]] = {}
    for track in stack.tracks():
        ids.setdefault(track["anonymousId"], set()).add(track["messageId"])
    assert {visitor: len(found) for visitor, found in ids.items()} == {f"v-{i}": 1 for i in range(10)}


def test_after_an_erase_the_next_queued_event_is_a_first_sighting_even_when_reads_lag(stack):
    from tests.support.visitors import connection_handler, erase

    with stale_reads(lag_ms=2_000, probability=1.0, seed=5):  # reads look back up to 2 s, every time
        assert stack.handler("assignment")({"Records": _records(1)}, LambdaContext()) == {"batchItemFailures": []}
        time.sleep(2.2)  # SENT for longer than the lag: a stale read finds it SENT, never absent as it was before
        erased = erase(connection_handler(stack), "ws-us", "v-0")
        assert erased == (200, {"erased": 2, "complete": True, "retry_after_s": 0})
        stack.sink.clear()
        cold = stack.handler("assignment")  # never saw the visitor: nothing cached

        assert cold({"Records": _records(1)}, LambdaContext()) == {"batchItemFailures": []}

    # the visitor is new again: its first-sighting Identify and the assignment go out (under their messageIds)
    assert {m["type"] for m in stack.identifies() + stack.tracks()} == {"identify", "track"}
