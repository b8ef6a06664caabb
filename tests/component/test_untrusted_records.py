"""Records from producers are untrusted, parking always parks, and what the HTTP path queues the SQS path takes.

A producer needs only ``sqs:SendMessage`` to put any body with any message attributes on a function's queue. The
SQS limits a parked message must respect are checked here from AWS's documented figures (a message and a
SendMessageBatch request of at most 262,144 bytes counting body and attributes, at most 10 attributes), by a hook
at botocore's API-call boundary that refuses what SQS refuses, with SQS's error codes.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from typing import Any

import botocore.exceptions
import pytest

from ops.redrive import redriven_attributes
from tests.component.conftest import LambdaContext, sqs_record

SQS_MAX_BYTES = 262_144  # a message, and the sum of a SendMessageBatch request's messages
SQS_MAX_ATTRIBUTES = 10
DAY_MS = 24 * 3600 * 1000
CONVERSION = {
    "workspace_id": "ws-us",
    "visitor_id": "v-1",
    "conversion_id": "c-1",
    "conversion_type": "CLICK",
    "origin_url": "https://shop.example/",
}
ASSIGNMENT = {"workspace_id": "ws-us", "visitor_id": "v-ok", "test_id": "t-1", "variant_id": "a"}


def sqs_size(entry: dict[str, Any]) -> int:
    """Bytes SQS counts of a message: body, and each attribute's name, data type and value (UTF-8)."""
    size = len(entry["MessageBody"].encode("utf-8"))
    for name, value in entry.get("MessageAttributes", {}).items():
        size += len(name.encode()) + len(value["DataType"].encode()) + len(value.get("StringValue", "").encode())
    return size


def sqs_refusal(params: dict[str, Any]) -> str | None:
    """The error SQS answers a SendMessage(Batch) with, or None when it accepts it."""
    entries = params.get("Entries") or [params]
    if any(len(e.get("MessageAttributes", {})) > SQS_MAX_ATTRIBUTES for e in entries):
        return "InvalidParameterValue"
    if any(sqs_size(e) > SQS_MAX_BYTES for e in entries):
        return "InvalidParameterValue" if "Entries" not in params else "BatchRequestTooLong"
    if sum(sqs_size(e) for e in entries) > SQS_MAX_BYTES:
        return "BatchRequestTooLong"
    return None


@pytest.fixture
def strict_sqs(aws_faults):
    """SQS refusing oversize messages and requests and more than 10 attributes, as AWS does."""
    for operation in ("sqs:SendMessageBatch", "sqs:SendMessage"):
        name = operation.split(":")[1]
        aws_faults.raise_when(
            operation,
            lambda params: sqs_refusal(params) is not None,
            botocore.exceptions.ClientError({"Error": {"Code": "BatchRequestTooLong", "Message": "too long"}}, name),
        )
    return aws_faults


def attributes_of(message: dict[str, Any]) -> dict[str, str]:
    return {name: value["StringValue"] for name, value in message.get("MessageAttributes", {}).items()}


def producer_record(stack, kind: str, body: Any, **attributes: str) -> dict[str, Any]:
    """A record as the event source delivers it, from a message a producer put on the queue with ``attributes``."""
    sqs = stack.session.client("sqs")
    sqs.send_message(
        QueueUrl=stack.queue_url(kind),
        MessageBody=body if isinstance(body, str) else json.dumps(body),
        MessageAttributes={name: {"DataType": "String", "StringValue": v} for name, v in attributes.items()},
    )
    [record] = stack.as_records(stack.drain_keeping(kind))
    return record


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- attributes a producer wrote -----------------------------------------------------------------------------


GARBLED_TIMES = {
    "superscript": "²",  # isdigit() but not int()
    "five-thousand-digits": "9" * 5000,  # more digits than int() converts
    "epoch": "0",
    "far-future": str(int(time.time() * 1000) + 400 * DAY_MS),
}


def test_garbled_time_attributes_never_fail_the_batch_or_park_a_record(stack, aws_faults):
    records = [producer_record(stack, "assignment", ASSIGNMENT)]
    for index, garbled in enumerate(GARBLED_TIMES.values()):
        body = {**ASSIGNMENT, "visitor_id": f"v-garbled-{index}"}
        records.append(producer_record(stack, "assignment", body, retry_since=garbled, first_received_at=garbled))
    throttled = botocore.exceptions.ClientError({"Error": {"Code": "ThrottlingException", "Message": "-"}}, "Update")
    aws_faults.raise_when("dynamodb:UpdateItem", lambda p: "v-garbled" in p["Key"]["pk"]["S"], throttled)

    answer = stack.handler("assignment")({"Records": records}, LambdaContext(timeout_s=10))

    # The garbled records come back for a retry (their horizon counts from their first receive); the neighbour
    # is delivered and not failed with them; nothing is parked as if its horizon were over.
    assert sorted(f["itemIdentifier"] for f in answer["batchItemFailures"]) == sorted(
        r["messageId"] for r in records[1:]
    )
    assert [t["anonymousId"] for t in stack.tracks("Experiment Viewed")] == ["v-ok"]
    assert stack.drain("assignment", dead=True) == []


def test_a_copied_delivery_id_never_becomes_two_conversions_message_id(stack):
    stack.sink.set_fault(status=503, count=1000)
    handler = stack.handler("conversion", HTTP_DELIVERY_BUDGET_SECONDS="1")
    assert stack.post("conversion", CONVERSION, handler) == (202, {"status": "queued"})
    stack.sink.clear_faults()
    [queued] = stack.drain("conversion")
    ours = attributes_of(queued)
    # A producer copies every attribute of our message onto another conversion.
    other = {**CONVERSION, "conversion_id": "c-2"}
    records = [*stack.as_records([queued]), producer_record(stack, "conversion", other, **ours)]

    assert stack.handler("conversion")({"Records": records}, LambdaContext()) == {"batchItemFailures": []}

    tracks = {t["properties"]["conversion_id"]: t["messageId"] for t in stack.tracks("Conversion Triggered")}
    assert tracks["c-1"] == ours["delivery_id"]  # ours keeps the id of its HTTP attempt
    assert tracks["c-2"] != ours["delivery_id"]  # the copy is sent under an id of its own


# -- parking always parks ------------------------------------------------------------------------------------


def test_large_refused_records_and_their_small_neighbour_are_all_parked(stack, strict_sqs):
    large = [sqs_record(json.dumps({**CONVERSION, "pad": "x" * 140_000})) for _ in range(2)]
    small = sqs_record("{not json")
    records = [*large, small]

    answer = stack.handler("conversion")({"Records": records}, LambdaContext())

    assert answer == {"batchItemFailures": []}
    parked = stack.drain("conversion", dead=True)
    assert sorted(attributes_of(m)["source_message_id"] for m in parked) == sorted(r["messageId"] for r in records)
    assert {attributes_of(m)["error_code"] for m in parked} == {"payload_too_large", "invalid_json"}
    assert {m["Body"] for m in parked} == {r["body"] for r in records}  # whole: each fits a message
    requests = strict_sqs.params["sqs:SendMessageBatch"]
    assert all(sqs_refusal(request) is None for request in requests)


def test_a_body_too_large_to_park_even_alone_is_truncated_with_its_size_and_hash(stack, strict_sqs):
    body = json.dumps({**CONVERSION, "pad": "é" * 200_000})  # 400 KB: a queue may take up to 1 MiB
    record = sqs_record(body)
    for name in ("first_received_at", "retry_since", "delivery_nonce", "source_message_id", "delivery_id"):
        record["messageAttributes"][name] = {"stringValue": "x" * 900, "dataType": "String"}
    for index in range(4):
        record["messageAttributes"][f"producer_{index}"] = {"stringValue": "y" * 900, "dataType": "String"}

    assert stack.handler("conversion")({"Records": [record]}, LambdaContext()) == {"batchItemFailures": []}

    [parked] = stack.drain("conversion", dead=True)
    attributes = attributes_of(parked)
    whole = body.encode()
    assert attributes["body_bytes"] == str(len(whole))
    assert attributes["body_sha256"] == hashlib.sha256(whole).hexdigest()
    assert attributes["error_code"] == "payload_too_large"
    assert attributes["source_message_id"] == record["messageId"]  # the garbled one is not believed
    assert "producer_0" not in attributes and len(attributes) <= SQS_MAX_ATTRIBUTES
    assert whole.startswith(parked["Body"].encode()) and len(parked["Body"]) > 200_000 // 2
    [request] = strict_sqs.params["sqs:SendMessageBatch"]
    assert sqs_refusal(request) is None


def test_parked_messages_are_grouped_by_bytes_ten_small_ones_in_one_request(stack, strict_sqs):
    records = [sqs_record("{not json") for _ in range(10)]

    assert stack.handler("conversion")({"Records": records}, LambdaContext()) == {"batchItemFailures": []}

    assert len(stack.drain("conversion", dead=True)) == 10
    assert [len(r["Entries"]) for r in strict_sqs.params["sqs:SendMessageBatch"]] == [10]


# -- the HTTP path queues what the SQS path takes ------------------------------------------------------------


def test_the_http_path_queues_compact_utf8_that_the_sqs_path_delivers(stack):
    text = "Crème brûlée à la française, s'il vous plaît — 日本語のテキスト "
    body = {**CONVERSION, "context": {"page": {"title": (text * 100)[:2000]}, "locale": "fr-FR"}}
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    stack.sink.set_fault(status=503, count=1000)

    status, _ = stack.post("conversion", raw, stack.handler("conversion"), raw=True)

    assert status == 202
    stack.sink.clear_faults()
    [queued] = stack.drain("conversion")
    queued_bytes = queued["Body"].encode("utf-8")
    assert "\\u" not in queued["Body"] and '", "' not in queued["Body"]  # compact, non-ASCII as itself
    assert json.loads(queued["Body"]) == {**body, "timestamp": json.loads(queued["Body"])["timestamp"]}
    assert len(queued_bytes) <= len(raw.encode()) + len(',"timestamp":"2030-01-01T00:00:00.000Z"')
    answer = stack.handler("conversion")({"Records": stack.as_records([queued])}, LambdaContext())
    assert answer == {"batchItemFailures": []}
    assert stack.drain("conversion", dead=True) == []
    [track] = stack.tracks("Conversion Triggered")
    assert track["messageId"] == attributes_of(queued)["delivery_id"]


def test_what_the_http_path_accepts_near_the_limit_the_sqs_path_accepts(stack):
    """Bodies a few bytes around the 32 KB limit, with and without a timestamp: each is refused at the edge
    (413) or, once queued, read by the SQS path without being parked."""
    stack.sink.set_fault(status=503, count=10_000)
    handler = stack.handler("conversion", HTTP_DELIVERY_BUDGET_SECONDS="1")
    queued = 0
    for pad in range(0, 400, 20):
        for timestamp in ({}, {"timestamp": "2030-01-01T00:00:00Z"}):
            context = {f"k{i}": "x" * 500 for i in range(60)} | {"pad": "y" * pad}
            raw = json.dumps({**CONVERSION, **timestamp, "context": context}, separators=(",", ":"))
            status, _ = stack.post("conversion", raw, handler, raw=True)
            queued += status == 202
            assert status in (202, 400, 413)
    messages = stack.drain("conversion")
    assert len(messages) == queued
    stack.sink.clear_faults()
    for message in messages:
        stack.handler("conversion")({"Records": stack.as_records([message])}, LambdaContext())
    parked = stack.drain("conversion", dead=True)
    assert [attributes_of(m)["error_code"] for m in parked] == []


# -- a redriven event is dated by its first receipt ----------------------------------------------------------


def test_a_redriven_event_without_a_timestamp_is_dated_by_its_first_receipt(stack):
    stack.sink.set_fault(status=400, count=100, match={"type": "track"})  # refused while its Identify is not: parked
    record = producer_record(stack, "conversion", CONVERSION)  # no timestamp
    sent_ms = int(time.time() * 1000) - 3 * DAY_MS  # the producer sent it three days ago
    record["attributes"]["SentTimestamp"] = str(sent_ms)
    record["attributes"]["ApproximateFirstReceiveTimestamp"] = str(sent_ms + 60_000)
    assert stack.handler("conversion")({"Records": [record]}, LambdaContext()) == {"batchItemFailures": []}
    [parked] = stack.drain("conversion", dead=True)
    assert attributes_of(parked)["first_received_at"] == str(sent_ms)
    stack.sink.clear_faults()
    # make redrive: the same body, the kept attributes, a new message (SentTimestamp: now)
    sqs = stack.session.client("sqs")
    now_ms = int(time.time() * 1000)
    sqs.send_message(
        QueueUrl=stack.queue_url("conversion"),
        MessageBody=parked["Body"],
        MessageAttributes=redriven_attributes(parked, "conversion", now_ms),
    )
    redriven = stack.as_records(stack.drain_keeping("conversion"))

    assert stack.handler("conversion")({"Records": redriven}, LambdaContext()) == {"batchItemFailures": []}

    [track] = stack.tracks("Conversion Triggered")
    assert track["timestamp"] == iso(sent_ms)


@pytest.mark.parametrize("garbled", ["0", "²", str(int(time.time() * 1000) + 30 * DAY_MS)])
def test_a_garbled_first_receipt_does_not_date_an_event(stack, garbled):
    record = producer_record(stack, "conversion", CONVERSION, first_received_at=garbled)

    assert stack.handler("conversion")({"Records": [record]}, LambdaContext()) == {"batchItemFailures": []}

    [track] = stack.tracks("Conversion Triggered")
    assert track["timestamp"] == iso(int(record["attributes"]["SentTimestamp"]))


# -- hashed dedup keys ---------------------------------------------------------------------------------------


def test_a_literal_sha256_id_and_the_long_id_hashed_to_it_are_two_facts(stack):
    long_test = "é" * 101  # 202 bytes: stored under its SHA-256
    literal = f"sha256:{hashlib.sha256(long_test.encode()).hexdigest()}"
    handler = stack.handler("assignment")

    first = stack.post("assignment", {**ASSIGNMENT, "test_id": long_test}, handler)
    second = stack.post("assignment", {**ASSIGNMENT, "test_id": literal}, handler)

    assert first[0] == second[0] == 200
    assert first[1]["status"] == second[1]["status"] == "delivered"
    tests = sorted(t["properties"]["test_id"] for t in stack.tracks("Experiment Viewed"))
    assert tests == sorted([long_test, literal])
