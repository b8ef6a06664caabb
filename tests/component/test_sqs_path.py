"""The SQS path: per-workspace batching, partial batch failures, and the dead-letter queue with reasons."""

from __future__ import annotations

import json

import pytest

from local_stack.template import Template
from tests.component.conftest import LambdaContext, sqs_record

# The template's MaxReceiveCount (1000, a safety net): the receive on which the function parks a failing record.
LAST_RECEIVE = int(Template.load().parameters["MaxReceiveCount"])


def assignment(workspace: str, visitor: str, test: str = "t-1", variant: str = "a") -> dict:
    return {"workspace_id": workspace, "visitor_id": visitor, "test_id": test, "variant_id": variant}


def invoke(stack, kind: str, records: list[dict], **env: str) -> dict:
    return stack.handler(kind, **env)({"Records": records}, LambdaContext())


def test_batch_of_ten_events_for_two_workspaces_costs_two_segment_requests(stack):
    records = [sqs_record(assignment("ws-us" if i % 2 else "ws-eu", f"v-{i}")) for i in range(10)]

    answer = invoke(stack, "assignment", records)

    assert answer == {"batchItemFailures": []}
    requests = stack.sink.requests()
    assert len(requests) == 2
    assert sorted((r["region"], r["write_key"], r["message_count"]) for r in requests) == [
        ("eu", "key-eu-0002", 10),
        ("us", "key-us-0001", 10),
    ]
    # Each visitor's Identify precedes its Track inside the batch.
    for region in ("us", "eu"):
        messages = [e["message"] for e in stack.sink.events(region=region)]
        for index, message in enumerate(messages):
            if message["type"] == "track":
                assert messages[index - 1]["type"] == "identify"
                assert messages[index - 1]["anonymousId"] == message["anonymousId"]


def test_mixed_batch_good_duplicate_invalid_and_failing(stack):
    stack.put_secret("ws-broken", "not json at all")
    invoke(stack, "assignment", [sqs_record(assignment("ws-us", "v-dup"))])  # make v-dup a duplicate
    stack.sink.clear()
    good = sqs_record(assignment("ws-us", "v-new"))
    duplicate = sqs_record(assignment("ws-us", "v-dup"))
    not_json = sqs_record("{this is not json")
    schema = sqs_record({"workspace_id": "ws-us", "visitor_id": "v", "test_id": 5, "variant_id": "a"})
    failing = sqs_record(assignment("ws-broken", "v-1"))
    unconnected = sqs_record(assignment("ws-none", "v-1"))

    answer = invoke(stack, "assignment", [good, duplicate, not_json, schema, failing, unconnected])

    assert answer == {"batchItemFailures": [{"itemIdentifier": failing["messageId"]}]}
    assert [t["anonymousId"] for t in stack.tracks()] == ["v-new"]
    dead = {m["MessageAttributes"]["source_message_id"]["StringValue"]: m for m in stack.drain("assignment", dead=True)}
    assert set(dead) == {not_json["messageId"], schema["messageId"]}
    assert dead[not_json["messageId"]]["Body"] == not_json["body"]
    assert dead[not_json["messageId"]]["MessageAttributes"]["error_code"]["StringValue"] == "invalid_json"
    schema_attrs = dead[schema["messageId"]]["MessageAttributes"]
    assert schema_attrs["error_code"]["StringValue"] == "invalid_type"
    assert schema_attrs["error_field"]["StringValue"] == "test_id"
    assert "test_id" in schema_attrs["error_message"]["StringValue"]


def test_failing_record_on_its_last_receive_goes_to_the_dlq_with_its_reason(stack):
    stack.put_secret("ws-broken", '{"region": "us"}')
    last = sqs_record(assignment("ws-broken", "v-1"), receive_count=LAST_RECEIVE)

    answer = invoke(stack, "assignment", [last])

    assert answer == {"batchItemFailures": []}
    [dead] = stack.drain("assignment", dead=True)
    attributes = dead["MessageAttributes"]
    assert attributes["error_code"]["StringValue"] == "retries_exhausted"
    assert "write_key" in attributes["error_message"]["StringValue"]
    assert attributes["receive_count"]["StringValue"] == str(LAST_RECEIVE)


def test_segment_outage_reports_every_record_failed_and_releases_claims(stack):
    stack.sink.set_fault(status=500, count=1000)
    records = [sqs_record(assignment("ws-us", f"v-{i}")) for i in range(3)]
    handler = stack.handler("assignment")
    context = LambdaContext(timeout_s=8)  # the retry budget (5 s) is bounded by the remaining time

    answer = handler({"Records": records}, context)

    assert sorted(f["itemIdentifier"] for f in answer["batchItemFailures"]) == sorted(r["messageId"] for r in records)
    assert stack.sink.events() == []
    assert len(stack.sink.requests()) >= 2  # retried within the budget
    stack.sink.clear_faults()
    redelivered = [{**r, "attributes": {**r["attributes"], "ApproximateReceiveCount": "2"}} for r in records]
    # another execution environment (this one's circuit breaker still keeps it away from the failing region)
    assert stack.handler("assignment")({"Records": redelivered}, LambdaContext()) == {"batchItemFailures": []}
    assert len(stack.tracks("Experiment Viewed")) == 3


def test_segment_rejection_is_not_retried_and_parks_the_records(stack):
    stack.sink.set_fault(status=400, count=100, match={"type": "track"})  # the Identify is accepted
    record = sqs_record(assignment("ws-us", "v-1"))

    answer = invoke(stack, "assignment", [record])

    assert answer == {"batchItemFailures": []}
    # the batch (Identify + Track), then each message alone to find the refused one; nothing is retried
    assert [r["message_count"] for r in stack.sink.requests()] == [2, 1, 1]
    [dead] = stack.drain("assignment", dead=True)
    assert dead["MessageAttributes"]["error_code"]["StringValue"] == "rejected"
    assert "400" in dead["MessageAttributes"]["error_message"]["StringValue"]


def test_same_fact_twice_in_one_batch_is_sent_once(stack):
    first = sqs_record(assignment("ws-us", "v-1"))
    second = sqs_record(assignment("ws-us", "v-1", variant="b"))

    answer = invoke(stack, "assignment", [first, second])

    assert answer == {"batchItemFailures": []}
    tracks = stack.tracks("Experiment Viewed")
    assert [t["properties"]["variant_id"] for t in tracks] == ["a"]


def test_queued_conversion_without_keys_keeps_its_message_id_across_redeliveries(stack):
    body = {
        "workspace_id": "ws-us",
        "visitor_id": "v-1",
        "conversion_id": "c-1",
        "conversion_type": "PROGRAMMATIC",
        "origin_url": "https://a.example/",
    }
    record = sqs_record(body)
    handler = stack.handler("conversion")
    handler({"Records": [record]}, LambdaContext())
    handler({"Records": [record]}, LambdaContext())  # SQS redelivery of the same message

    ids = {t["messageId"] for t in stack.tracks("Conversion Triggered")}
    assert len(ids) == 1  # same id: Segment drops the repeat


def test_http_queued_event_is_delivered_from_the_queue_with_the_same_ids(stack):
    body = {
        "workspace_id": "ws-us",
        "visitor_id": "v-1",
        "conversion_id": "c-1",
        "conversion_type": "CLICK",
        "origin_url": "https://a.example/",
    }
    stack.sink.set_fault(status=503, count=1000)
    status, answer = stack.post("conversion", body, stack.handler("conversion", HTTP_DELIVERY_BUDGET_SECONDS="1"))
    assert (status, answer) == (202, {"status": "queued"})
    stack.sink.clear_faults()
    stack.sink.clear()

    [queued] = stack.drain_keeping("conversion")
    assert json.loads(queued["Body"])["timestamp"]  # the receipt time travels with the event
    batch = stack.run_batch("conversion", stack.as_records([queued], "conversion"))

    assert (batch.answer, batch.failed) == ({"batchItemFailures": []}, set())
    assert stack.drain("conversion") == []
    [track] = stack.tracks("Conversion Triggered")
    # The id the HTTP attempt used (kept in a message attribute), so a copy that did reach Segment is dropped.
    assert track["messageId"] == queued["MessageAttributes"]["delivery_id"]["StringValue"]
    assert len(stack.identifies()) == 1


def test_dynamodb_unavailable_reports_the_records_failed(stack):
    records = [sqs_record(assignment("ws-us", f"v-{i}")) for i in range(2)]

    answer = invoke(stack, "assignment", records, DEDUP_TABLE="no-such-table")

    assert sorted(f["itemIdentifier"] for f in answer["batchItemFailures"]) == sorted(r["messageId"] for r in records)
    assert stack.sink.requests() == []


def test_same_identify_twice_in_one_batch_is_sent_once_and_both_are_consumed(stack):
    body = {"workspace_id": "ws-us", "visitor_id": "v-1"}

    answer = invoke(stack, "identify", [sqs_record(body), sqs_record(body)])

    assert answer == {"batchItemFailures": []}
    assert len(stack.identifies()) == 1


@pytest.mark.concurrency
def test_workspaces_of_one_batch_are_sent_concurrently_each_with_its_own_key(stack):
    stack.connect("ws-us-2", "key-us-0003")
    workspaces = ["ws-us", "ws-eu", "ws-us-2"]
    records = [sqs_record(assignment(workspaces[i % 3], f"v-{i}")) for i in range(9)]

    answer = invoke(stack, "assignment", records)

    assert answer == {"batchItemFailures": []}
    keys = {"ws-us": "key-us-0001", "ws-eu": "key-eu-0002", "ws-us-2": "key-us-0003"}
    regions = {"ws-us": "us", "ws-eu": "eu", "ws-us-2": "us"}
    for event in stack.sink.events():
        workspace = workspaces[int(event["message"]["anonymousId"].split("-")[1]) % 3]
        assert (event["write_key"], event["region"]) == (keys[workspace], regions[workspace])
    assert len(stack.sink.requests()) == 3


# -- the event source's reading of an answer (ReportBatchItemFailures), as the component tests apply it


def _queued(stack, count: int) -> list[dict]:
    sqs = stack.session.client("sqs")
    for i in range(count):
        sqs.send_message(QueueUrl=stack.queue_url("assignment"), MessageBody=json.dumps(assignment("ws-us", f"v{i}")))
    return stack.received("assignment")


ALL = "the whole batch"


@pytest.mark.parametrize(
    ("answer", "comes_back"),
    [
        pytest.param(lambda ids: {"batchItemFailures": [{"itemIdentifier": ids[1]}]}, [1], id="one failure"),
        pytest.param(lambda ids: {"batchItemFailures": []}, [], id="no failure"),
        pytest.param(lambda ids: None, [], id="no answer"),
        pytest.param(lambda ids: {"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]}, ALL, id="unknown"),
        pytest.param(lambda ids: {"batchItemFailures": [{"itemIdentifier": ""}]}, ALL, id="empty id"),
        pytest.param(lambda ids: {"batchItemFailures": [{"itemIdentifier": None}]}, ALL, id="null id"),
        pytest.param(lambda ids: {"batchItemFailures": [{"itemIdentifier": 7}]}, ALL, id="id not a string"),
        pytest.param(
            lambda ids: {"batchItemFailures": [{"itemIdentifier": ids[1]}, {"itemIdentifier": ids[1]}]},
            [1],
            id="same id twice",
        ),
        pytest.param(lambda ids: {"batchItemFailures": None}, [], id="null list"),
        pytest.param(lambda ids: {}, [], id="empty answer"),
        pytest.param(lambda ids: {"batchItemFailures": [{"id": ids[0]}]}, ALL, id="malformed item"),
        pytest.param(lambda ids: {"batchItemFailures": "all"}, ALL, id="not a list"),
        pytest.param(lambda ids: "ok", ALL, id="not an object"),
        pytest.param(lambda ids: 1 / 0, ALL, id="function error"),
    ],
)
def test_run_batch_reads_an_answer_as_the_event_source_does(stack, answer, comes_back):
    records = _queued(stack, 3)
    ids = [r["messageId"] for r in records]
    expected = set(ids) if comes_back == ALL else {ids[i] for i in comes_back}

    batch = stack.run_batch("assignment", records, handler=lambda event, context: answer(ids))

    assert batch.failed == (None if comes_back == ALL else expected)
    assert sorted(batch.succeeded) == sorted(set(ids) - expected)
    entries = [{"Id": r["messageId"], "ReceiptHandle": r["receiptHandle"], "VisibilityTimeout": 0} for r in records]
    sqs = stack.session.client("sqs")
    sqs.change_message_visibility_batch(QueueUrl=stack.queue_url("assignment"), Entries=entries)  # visible at once
    assert {m["MessageId"] for m in stack.drain("assignment")} == expected  # the rest was deleted


# -- parking what SQS limits: a DLQ message at most the queue's MaximumMessageSize, a request at most 1 MiB


def test_two_large_records_that_cannot_be_delivered_are_both_parked(stack):
    records = [sqs_record("{" + "x" * 600_000) for _ in range(2)]  # not JSON, over the body limit: parked

    answer = invoke(stack, "assignment", records)

    assert answer == {"batchItemFailures": []}
    assert len(stack.drain("assignment", dead=True)) == 2


def test_a_record_of_almost_the_queues_maximum_is_parked(stack):
    record = sqs_record("{" + "x" * (1_048_576 - 200))  # fits the queue alone; not with the reason attributes

    answer = invoke(stack, "assignment", [record])

    assert answer == {"batchItemFailures": []}
    assert len(stack.drain("assignment", dead=True)) == 1
