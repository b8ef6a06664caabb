"""Transient failures come back with backoff until the retry horizon; a failing Segment is left alone for a while
(the circuit breaker); every log line of an event carries its correlation id; queued and parked messages keep
what a duplicate-safe resend needs. The decision itself (when a record comes back, when it is parked) is tested
alone in tests/domain/test_record_decisions.py; these check that the handler applies it through SQS."""

from __future__ import annotations

import json
import time

from segment_forwarder.events import sqs_delivery_id
from tests.component.conftest import LambdaContext, http_event

ASSIGNMENT = {"workspace_id": "ws-us", "visitor_id": "v-1", "test_id": "t-1", "variant_id": "a"}
HOUR_MS = 3600 * 1000


def queued_record(stack, body: dict, receive_count: int = 1, **attributes: str) -> dict:
    """A record as the event source delivers it, from a real message on the assignment queue."""
    sqs = stack.session.client("sqs")
    sqs.send_message(
        QueueUrl=stack.queue_url("assignment"),
        MessageBody=json.dumps(body),
        MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
    )
    [record] = stack.received("assignment")
    record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    return record


def visibility_changes(aws_faults) -> list[int]:
    calls = aws_faults.params.get("sqs:ChangeMessageVisibilityBatch", [])
    return [entry["VisibilityTimeout"] for call in calls for entry in call["Entries"]]


def test_a_transient_failure_pushes_the_records_next_receive_back_with_backoff(stack, aws_faults):
    stack.sink.set_fault(status=503, count=100)
    record = queued_record(stack, ASSIGNMENT, receive_count=6)

    answer = stack.handler("assignment", MAX_RECEIVE_COUNT="1000")({"Records": [record]}, LambdaContext(timeout_s=4))

    assert answer == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    [delay] = visibility_changes(aws_faults)
    assert 16 <= delay <= 32  # the 6th receive: 2^5 s, with equal jitter


def test_retry_after_decides_the_next_receive_when_it_is_longer(stack, aws_faults):
    stack.sink.set_fault(status=429, count=100, retry_after=120)
    record = queued_record(stack, ASSIGNMENT)

    answer = stack.handler("assignment")({"Records": [record]}, LambdaContext(timeout_s=4))

    assert len(answer["batchItemFailures"]) == 1
    assert visibility_changes(aws_faults) == [120]


def test_past_the_horizon_a_transient_failure_is_parked_with_what_a_redrive_needs(stack):
    stack.sink.set_fault(status=503, count=100)
    first = int(time.time() * 1000) - 73 * HOUR_MS
    conversion = {
        "workspace_id": "ws-us",
        "visitor_id": "v-1",
        "conversion_id": "c-1",
        "conversion_type": "CLICK",
        "origin_url": "https://shop.example/",
    }
    sqs = stack.session.client("sqs")
    sqs.send_message(
        QueueUrl=stack.queue_url("conversion"),
        MessageBody=json.dumps(conversion),
        MessageAttributes={"first_received_at": {"DataType": "String", "StringValue": str(first)}},
    )
    [record] = stack.received("conversion")

    batch = stack.run_batch("conversion", [record], context=LambdaContext(timeout_s=4))

    assert (batch.answer, batch.failed) == ({"batchItemFailures": []}, set())
    assert stack.drain("conversion") == []  # parked, so done: deleted from its queue
    [parked] = stack.drain("conversion", dead=True)
    attributes = {k: v["StringValue"] for k, v in parked["MessageAttributes"].items()}
    assert attributes["error_code"] == "retries_exhausted"
    assert attributes["error_message"] == "segment answered 503"
    assert attributes["source_kind"] == "conversion"
    assert attributes["first_received_at"] == str(first)
    assert attributes["source_message_id"] == record["messageId"]
    assert attributes["delivery_id"]  # the messageId its first attempt used: a redrive sends the same


def test_a_failing_region_is_left_alone_by_a_warm_function_while_its_breaker_is_open(stack, aws_faults):
    stack.sink.set_fault(status=503, count=1000)
    handler = stack.handler("assignment")
    first = queued_record(stack, ASSIGNMENT)
    started = time.monotonic()  # the breaker opens after this, during the first invocation
    handler({"Records": [first]}, LambdaContext(timeout_s=30))  # time for three attempts, however slow
    requests_during_the_first = len(stack.sink.requests())
    second = queued_record(stack, {**ASSIGNMENT, "visitor_id": "v-2"})

    answer = handler({"Records": [second]}, LambdaContext(timeout_s=30))
    cooldown_left_s = 5 - (time.monotonic() - started)  # at least this much of the breaker's 5 s was left

    assert requests_during_the_first == 3  # the breaker opened after three failed requests in a row
    assert len(stack.sink.requests()) == requests_during_the_first  # nothing sent while it is open
    assert answer == {"batchItemFailures": [{"itemIdentifier": second["messageId"]}]}
    # back once the breaker's cooldown has passed (a first receive's own backoff is 0-1 s; here ~3-4 s unless the
    # machine is slow, and never less than what was left of the cooldown)
    assert visibility_changes(aws_faults)[-1] >= int(cooldown_left_s)
    stack.sink.clear_faults()
    other_region = queued_record(stack, {**ASSIGNMENT, "workspace_id": "ws-eu"})
    assert handler({"Records": [other_region]}, LambdaContext()) == {"batchItemFailures": []}  # EU unaffected


def test_the_http_path_queues_with_its_receipt_time_where_the_horizon_starts(stack):
    stack.sink.set_fault(status=503, count=100)
    before = int(time.time() * 1000)

    status, _ = stack.post("assignment", ASSIGNMENT)

    assert status == 202
    [queued] = stack.drain("assignment")
    attributes = {k: v["StringValue"] for k, v in queued["MessageAttributes"].items()}
    assert before <= int(attributes["first_received_at"]) == int(attributes["retry_since"]) <= time.time() * 1000
    assert attributes["delivery_id"]


def test_every_log_line_of_an_event_carries_its_correlation_id(stack, function_logs):
    handler = stack.handler("assignment", DELIVERED_LOG_SAMPLE_RATE="1")
    request = http_event("assignment", ASSIGNMENT)
    handler(request, LambdaContext())
    record = queued_record(stack, {**ASSIGNMENT, "visitor_id": "v-2"})
    handler({"Records": [record]}, LambdaContext())

    lines = [json.loads(line) for line in function_logs.getvalue().splitlines()]
    http_lines = [line for line in lines if line.get("path") == "http" or line.get("visitor_id") == "v-1"]
    sqs_lines = [line for line in lines if line.get("visitor_id") == "v-2"]
    assert http_lines and {line["correlation_id"] for line in http_lines} == {request["requestContext"]["requestId"]}
    assert sqs_lines and {line["correlation_id"] for line in sqs_lines} == {record["messageId"]}


def test_a_retried_record_reports_how_long_it_has_been_retried(stack, capsys):
    stack.sink.set_fault(status=503, count=100)
    since = int(time.time() * 1000) - 2 * HOUR_MS
    record = queued_record(stack, ASSIGNMENT, retry_since=str(since))
    handler = stack.handler("assignment", POWERTOOLS_METRICS_DISABLED="false")

    handler({"Records": [record]}, LambdaContext(timeout_s=4))

    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    ages = [value for line in emf if "RetryAge" in line for value in _values(line["RetryAge"])]
    assert len(ages) == 1 and 2 * 3600 <= ages[0] < 2 * 3600 + 60
    assert {(line["service"], line["kind"]) for line in emf} == {("segment-forwarder", "assignment")}


def test_a_redriven_record_parked_again_keeps_the_id_of_its_first_message(stack):
    stack.sink.set_fault(status=400, count=100, match={"type": "track"})  # the Identify is accepted
    first_id = sqs_delivery_id("the-first-message")  # what a redrive carries for a record a producer sent
    record = queued_record(stack, ASSIGNMENT, source_message_id="the-first-message", delivery_id=first_id)

    assert stack.handler("assignment")({"Records": [record]}, LambdaContext()) == {"batchItemFailures": []}

    [parked] = stack.drain("assignment", dead=True)
    attributes = {k: v["StringValue"] for k, v in parked["MessageAttributes"].items()}
    assert (attributes["source_message_id"], attributes["delivery_id"]) == ("the-first-message", first_id)


def _values(value: float | list[float]) -> list[float]:
    """An EMF metric's value(s): one number, or a list when several were added."""
    return value if isinstance(value, list) else [value]


def test_delivered_lines_are_sampled_and_every_failure_is_kept(stack, function_logs):
    handler = stack.handler("assignment", DELIVERED_LOG_SAMPLE_RATE="0")
    delivered = [queued_record(stack, {**ASSIGNMENT, "visitor_id": f"v-ok-{i}"}) for i in range(3)]
    handler({"Records": delivered}, LambdaContext())
    stack.sink.set_fault(status=400, count=100, match={"type": "track"})  # the Identify is accepted
    refused = queued_record(stack, {**ASSIGNMENT, "visitor_id": "v-refused"})
    handler({"Records": [refused]}, LambdaContext())

    lines = [json.loads(line) for line in function_logs.getvalue().splitlines()]
    assert [line["message"] for line in lines if str(line.get("visitor_id", "")).startswith("v-ok")] == []
    assert [line["message"] for line in lines if line.get("visitor_id") == "v-refused"] == ["rejected"]
    assert len(stack.tracks("Experiment Viewed")) == 3
