"""The batch route through the ingest handlers: ``{"batch": [body, ...]}`` on each ingest route answers 200 with one
result per body, in order; a body refused alone never fails the others; what is not delivered within the budget is
queued (SendMessageBatch), and a body neither delivered nor queued is answered 503 alone."""

from __future__ import annotations

import json

import pytest

from tests.support.bodies import ASSIGNMENT, CONVERSION


def assignments(count: int, **fields: object) -> list[dict]:
    return [{**ASSIGNMENT, "visitor_id": f"v-{i}", **fields} for i in range(count)]


def raw_batch(*texts: str) -> str:
    """A batch envelope written by hand, so that a body can be any text (NaN, a lone surrogate escape...)."""
    return '{"batch":[' + ",".join(texts) + "]}"


def statuses(results: list[dict]) -> list[str | int]:
    return [r["status"] if "status" in r else r["error"]["status"] for r in results]


# -- one result per body, in order ------------------------------------------------------------------------------


def test_a_batch_answers_each_body_as_a_single_call_would_in_order(stack):
    handler = stack.handler("assignment")
    stack.post("assignment", {**ASSIGNMENT, "visitor_id": "v-seen"}, handler)
    stack.sink.clear()
    batch = [
        {**ASSIGNMENT, "visitor_id": "v-new"},
        {**ASSIGNMENT, "visitor_id": "v-seen"},
        {**ASSIGNMENT, "workspace_id": "nobody"},
        {**ASSIGNMENT, "variant_id": 7},
        {**ASSIGNMENT, "visitor_id": "v-eu", "workspace_id": "ws-eu"},
    ]

    status, body = stack.post("assignment", {"batch": batch}, handler)

    assert status == 200
    results = body["results"]
    assert len(results) == len(batch)
    assert results[1:4] == [
        {"status": "duplicate"},
        {"status": "skipped", "reason": "not_connected"},
        {
            "error": {
                "code": "invalid_type",
                "message": "variant_id must be of type string",
                "field": "variant_id",
                "status": 400,
            }
        },
    ]
    assert [results[0]["status"], results[4]["status"]] == ["delivered", "delivered"]
    sent = {e["message"]["messageId"]: e for e in stack.sink.events()}
    assert set(results[0]["message_ids"]) | set(results[4]["message_ids"]) == set(sent)
    assert {sent[i]["message"]["anonymousId"] for i in results[0]["message_ids"]} == {"v-new"}
    assert {sent[i]["region"] for i in results[4]["message_ids"]} == {"eu"}
    assert stack.item("WS#ws-us#V#v-new", "ASSIGN#t-1")["status"] == "SENT"
    assert stack.item("WS#ws-eu#V#v-eu", "ASSIGN#t-1")["status"] == "SENT"


def test_a_batch_sends_one_segment_request_per_workspace(stack):
    batch = [*assignments(30), *assignments(20, workspace_id="ws-eu")]

    status, body = stack.post("assignment", {"batch": batch})

    assert status == 200
    assert statuses(body["results"]) == ["delivered"] * 50
    requests = stack.sink.requests()
    assert sorted((r["region"], r["message_count"]) for r in requests) == [("eu", 40), ("us", 60)]
    assert len(stack.identifies()) == 50


def test_the_same_fact_twice_in_a_batch_is_sent_once(stack):
    status, body = stack.post("assignment", {"batch": [ASSIGNMENT, ASSIGNMENT, {**ASSIGNMENT, "variant_id": "c"}]})

    assert status == 200
    assert statuses(body["results"]) == ["delivered", "duplicate", "duplicate"]
    assert [t["properties"]["variant_id"] for t in stack.tracks()] == ["b"]


@pytest.mark.parametrize("kind", ["identify", "conversion"])
def test_the_other_ingest_routes_take_batches_too(stack, kind):
    bodies = {
        "identify": [{"workspace_id": "ws-us", "visitor_id": f"v-{i}"} for i in range(3)],
        "conversion": [{**CONVERSION, "visitor_id": f"v-{i}", "event_id": f"e-{i}"} for i in range(3)],
    }[kind]
    handler = stack.handler(kind)

    first = stack.post(kind, {"batch": bodies}, handler)
    again = stack.post(kind, {"batch": bodies}, handler)

    assert first[0] == again[0] == 200
    assert statuses(first[1]["results"]) == ["delivered"] * 3
    assert again[1] == {"results": [{"status": "duplicate"}] * 3}  # identify facts, and conversions by event_id


def test_a_batch_of_100_bodies_over_32_kb_in_all_is_taken(stack):
    batch = assignments(100, context={"page": {"title": "x" * 2000}})
    assert len(json.dumps({"batch": batch})) > 200_000

    status, body = stack.post("assignment", {"batch": batch})

    assert status == 200
    assert statuses(body["results"]) == ["delivered"] * 100
    assert len(stack.tracks("Experiment Viewed")) == 100


# -- one bad body never fails the others --------------------------------------------------------------------------

GOOD_BEFORE = json.dumps({**ASSIGNMENT, "visitor_id": "v-before"})
GOOD_AFTER = json.dumps({**ASSIGNMENT, "visitor_id": "v-after"})
BAD_BODIES = {
    "not an object": "42",
    "an array": "[1, 2]",
    "missing field": json.dumps({k: v for k, v in ASSIGNMENT.items() if k != "test_id"}),
    "unknown field": json.dumps({**ASSIGNMENT, "colour": "red"}),
    "blank id": json.dumps({**ASSIGNMENT, "visitor_id": " \t"}),
    "NaN": '{"workspace_id":"ws-us","visitor_id":"v-x","test_id":"t","variant_id":"b","context":{"n":NaN}}',
    "lone surrogate": '{"workspace_id":"ws-us","visitor_id":"v-\\ud800","test_id":"t","variant_id":"b"}',
    "too deep": json.dumps({**ASSIGNMENT, "context": json.loads("[" * 40 + "]" * 40)}),
    "future timestamp": json.dumps({**ASSIGNMENT, "timestamp": "2999-01-01T00:00:00Z"}),
    "body over 32 KB": json.dumps({**ASSIGNMENT, "context": {"x": "y" * 33_000}}),
    "message over 32 KB": json.dumps(
        {**ASSIGNMENT, "context": {f"custom{i}": "x" * ((32 * 1024 - 260) // 5) for i in range(5)}}
    ),
}


@pytest.mark.parametrize("bad", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
def test_one_bad_body_never_fails_the_others(stack, bad):
    single_status, single = stack.post("assignment", bad, raw=True)  # what a call of that body alone answers
    assert single_status in (400, 413)

    status, body = stack.post("assignment", raw_batch(GOOD_BEFORE, bad, GOOD_AFTER), raw=True)

    assert status == 200
    before, refused, after = body["results"]
    assert refused == {"error": {**single["error"], "status": single_status}}
    assert before["status"] == after["status"] == "delivered"
    assert {t["anonymousId"] for t in stack.tracks()} == {"v-before", "v-after"}


# -- the envelope is refused whole --------------------------------------------------------------------------------

ENVELOPES = {
    "not JSON": ('{"batch": [', 400, "invalid_json", "body"),
    "not an object": ("[]", 400, "invalid_body", "body"),
    "batch not an array": ('{"batch": {}}', 400, "invalid_type", "batch"),
    "no body": ('{"batch": []}', 400, "invalid_value", "batch"),
    "101 bodies": (json.dumps({"batch": assignments(101)}), 400, "invalid_value", "batch"),
    "another member": (
        json.dumps({"batch": assignments(1), "workspace_id": "ws-us"}),
        400,
        "unknown_field",
        "workspace_id",
    ),
    "over 500 KB": (
        json.dumps({"batch": assignments(100, context={"x": "y" * 5200})}),
        413,
        "payload_too_large",
        "batch",
    ),
}


@pytest.mark.parametrize(("text", "status", "code", "field"), list(ENVELOPES.values()), ids=list(ENVELOPES))
def test_a_bad_envelope_is_refused_whole_naming_the_field(stack, text, status, code, field):
    answered, body = stack.post("assignment", text, raw=True)

    assert (answered, body["error"]["code"], body["error"]["field"]) == (status, code, field)
    assert stack.sink.requests() == []
    assert stack.item("WS#ws-us#V#v-0", "ASSIGN#t-1") is None


def test_a_batch_member_in_a_body_is_refused(stack):  # a single body over 32 KB: test_http_path.py
    status, body = stack.post("assignment", {**ASSIGNMENT, "batch": [ASSIGNMENT]})

    assert (status, body["error"]["code"]) == (400, "unknown_field")
    assert stack.sink.requests() == []


# -- what is not delivered is queued --------------------------------------------------------------------------------


def test_bodies_segment_did_not_take_are_queued_and_delivered_from_the_queue(stack, aws_faults):
    stack.sink.set_fault(status=503, count=100)
    handler = stack.handler("conversion", HTTP_DELIVERY_BUDGET_SECONDS="1")
    batch = [{**CONVERSION, "visitor_id": f"v-{i}"} for i in range(12)]  # no event_id: a delivery id each
    aws_faults.calls.clear()

    status, body = stack.post("conversion", {"batch": [*batch, {**CONVERSION, "workspace_id": "nobody"}]}, handler)

    assert status == 200
    assert body["results"] == [{"status": "queued"}] * 12 + [{"status": "skipped", "reason": "not_connected"}]
    assert aws_faults.calls["sqs:SendMessageBatch"] == 2  # 10 + 2 messages, each request within SQS's limits
    assert aws_faults.calls["sqs:SendMessage"] == 0
    queued = stack.drain("conversion")
    assert sorted(json.loads(m["Body"])["visitor_id"] for m in queued) == sorted(b["visitor_id"] for b in batch)
    assert all({"delivery_id", "delivery_nonce", "first_received_at"} <= set(m["MessageAttributes"]) for m in queued)

    stack.sink.clear_faults()
    stack.sink.clear()
    delivered = stack.run_batch("conversion", stack.as_records(queued[:10]))
    delivered2 = stack.run_batch("conversion", stack.as_records(queued[10:]))

    assert delivered.failed == delivered2.failed == set()
    ids = {m["MessageAttributes"]["delivery_id"]["StringValue"] for m in queued}
    assert {t["messageId"] for t in stack.tracks("Conversion Triggered")} == ids  # the ids the HTTP attempt used


def test_only_the_workspace_segment_refused_is_queued(stack):
    stack.sink.set_fault(status=503, count=100, region="eu")
    handler = stack.handler("assignment", HTTP_DELIVERY_BUDGET_SECONDS="1")

    status, body = stack.post(
        "assignment", {"batch": [*assignments(2), *assignments(2, workspace_id="ws-eu")]}, handler
    )

    assert status == 200
    assert statuses(body["results"]) == ["delivered", "delivered", "queued", "queued"]
    assert sorted(json.loads(m["Body"])["workspace_id"] for m in stack.drain("assignment")) == ["ws-eu", "ws-eu"]


def test_bodies_neither_delivered_nor_queued_are_503_alone(stack, aws_faults):
    stack.sink.set_fault(status=503, count=100, region="eu")
    handler = stack.handler("assignment", HTTP_DELIVERY_BUDGET_SECONDS="1")
    aws_faults.fail("sqs:SendMessageBatch", "ServiceUnavailable", count=1)  # SQS refuses the first request
    batch = [*assignments(2), *assignments(12, workspace_id="ws-eu")]

    status, body = stack.post("assignment", {"batch": batch}, handler)

    assert status == 200
    results = body["results"]
    assert statuses(results) == ["delivered"] * 2 + [503] * 10 + ["queued"] * 2
    assert results[2]["error"] == {
        "code": "unavailable",
        "message": "not delivered and not queued; send this body again",
        "field": None,
        "status": 503,
    }
    assert sorted(json.loads(m["Body"])["visitor_id"] for m in stack.drain("assignment")) == ["v-10", "v-11"]
    # the lease of a body answered 503 was given back: sent again, it is delivered at once
    stack.sink.clear_faults()
    again = stack.post("assignment", {"batch": batch[2:12]}, handler)
    assert statuses(again[1]["results"]) == ["delivered"] * 10


def test_undelivered_bodies_are_queued_in_requests_within_sqs_byte_limit(stack, aws_faults):
    stack.sink.set_fault(status=503, count=100)
    handler = stack.handler("assignment", HTTP_DELIVERY_BUDGET_SECONDS="1")
    batch = assignments(10, context={"page": {"title": "x" * 30_000}})  # 10 x 30 KB: over one request's 256 KiB
    aws_faults.calls.clear()

    status, body = stack.post("assignment", {"batch": batch}, handler)

    assert status == 200
    assert body["results"] == [{"status": "queued"}] * 10
    sizes = [sum(len(e["MessageBody"]) for e in p["Entries"]) for p in aws_faults.params["sqs:SendMessageBatch"]]
    assert len(sizes) == 2 and max(sizes) <= 256 * 1024
    assert len(stack.drain("assignment")) == 10
