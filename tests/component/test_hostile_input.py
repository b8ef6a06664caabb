"""Hostile but plausible input never hurts its neighbours: each body is delivered or refused at the edge (a 4xx
naming the field; on the SQS path the dead-letter queue with the reason), never a 5xx, and a valid event in
the same SQS batch is always delivered."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from segment_forwarder import LIBRARY
from tests.component.conftest import LambdaContext, sqs_record

ASSIGNMENT = {"workspace_id": "ws-us", "visitor_id": "v-1", "test_id": "t-1", "variant_id": "a"}


def neighbours(count: int = 3) -> list[dict]:
    return [{**ASSIGNMENT, "visitor_id": f"neighbour-{i}"} for i in range(count)]


def run_batch(stack, bodies: list[str | dict]) -> dict:
    """One SQS batch through the assignment handler; returns its answer."""
    records = [sqs_record(body if isinstance(body, str) else json.dumps(body)) for body in bodies]
    return stack.handler("assignment")({"Records": records}, LambdaContext())


def delivered_visitors(stack) -> set[str]:
    return {t["anonymousId"] for t in stack.tracks("Experiment Viewed")}


def parked(stack) -> list[dict]:
    return [
        {name: value["StringValue"] for name, value in m["MessageAttributes"].items()}
        for m in stack.drain("assignment", dead=True)
    ]


DEEP = (
    '{"workspace_id": "ws-us", "visitor_id": "v-x", "test_id": "t", "variant_id": "a", "context": '
    + ('{"a": ' * 1000)
    + "1"
    + "}" * 1000
    + "}"
)

HOSTILE = [
    ("deep-context", DEEP, "context" + ".a" * 31),  # the object at level 33 (the body is level 1)
    ("year-one-with-offset", json.dumps({**ASSIGNMENT, "timestamp": "0001-01-01T00:00:00+01:00"}), "timestamp"),
    ("year-999", json.dumps({**ASSIGNMENT, "timestamp": "0999-12-31T23:00:00Z"}), "timestamp"),
    ("nan", json.dumps({**ASSIGNMENT, "context": {"score": float("nan")}}), "context.score"),
    ("infinity", json.dumps({**ASSIGNMENT, "context": {"score": float("inf")}}), "context.score"),
    ("float-overflow", json.dumps(ASSIGNMENT)[:-1] + ', "context": {"score": 1e400}}', "context.score"),
    ("integer-beyond-a-double", json.dumps(ASSIGNMENT)[:-1] + ', "context": {"n": ' + "9" * 309 + "}}", "context.n"),
    ("integer-of-400-digits", json.dumps(ASSIGNMENT)[:-1] + ', "context": {"n": 1' + "0" * 400 + "}}", "context.n"),
    ("line-separator-visitor", json.dumps({**ASSIGNMENT, "visitor_id": "\u2028"}), "visitor_id"),
    ("blank-user", json.dumps({**ASSIGNMENT, "user_id": " \ufeff "}), "user_id"),
    ("surrogate-key", json.dumps({**ASSIGNMENT, "context": {"\ud800": 1}}), "context.\ufffd"),
    ("too-many-values", json.dumps({**ASSIGNMENT, "context": {"values": [0] * 10_000}}), "context.values"),
]


@pytest.mark.parametrize(("name", "body", "field"), HOSTILE, ids=[case[0] for case in HOSTILE])
def test_a_hostile_body_is_refused_over_http_naming_the_field(stack, name, body, field):
    status, answer = stack.post("assignment", body, raw=True)

    assert status == 400, answer
    assert answer["error"]["field"] == field
    assert stack.sink.events() == []


@pytest.mark.parametrize(("name", "body", "field"), HOSTILE, ids=[case[0] for case in HOSTILE])
def test_a_hostile_record_is_parked_alone_and_its_neighbours_are_delivered(stack, name, body, field):
    answer = run_batch(stack, [neighbours()[0], body, *neighbours()[1:]])

    assert answer == {"batchItemFailures": []}
    assert delivered_visitors(stack) == {f"neighbour-{i}" for i in range(3)}
    [reason] = parked(stack)
    assert (reason["error_code"], reason["error_field"]) == ("invalid_value", field)


def test_reasons_that_quote_a_lone_surrogate_still_park_every_record_of_the_chunk(stack):
    # Ten records refused in one chunk of ten; one names a field holding a lone surrogate.
    bodies = [json.dumps({**ASSIGNMENT, "\ud800colour": "red"})] + [
        json.dumps({**ASSIGNMENT, "n": i}) for i in range(9)
    ]

    assert run_batch(stack, bodies) == {"batchItemFailures": []}

    reasons = parked(stack)
    assert len(reasons) == 10
    assert {r["error_code"] for r in reasons} == {"invalid_value", "unknown_field"}
    assert all("\ud800" not in value for r in reasons for value in r.values())


def test_a_user_id_too_long_for_a_dynamodb_key_is_delivered(stack):
    user = "\U0001f600" * 256  # 256 characters, 1,024 bytes: over the sort key's limit with its prefix

    status, body = stack.post("assignment", {**ASSIGNMENT, "user_id": user})

    assert (status, body["status"]) == (200, "delivered")
    assert [i.get("userId") for i in stack.identifies()] == [user]


def test_the_earliest_timestamp_is_sent_with_a_four_digit_year(stack):
    status, _ = stack.post("assignment", {**ASSIGNMENT, "timestamp": "1970-01-01T00:00:00Z"})

    assert status == 200
    assert stack.tracks()[0]["timestamp"] == "1970-01-01T00:00:00.000Z"


def _experiment_viewed(context: dict) -> dict:
    """The Experiment Viewed the forwarder builds for ASSIGNMENT with ``context`` (its shape, for sizing)."""
    properties = {"test_id": "t-1", "variant_id": "a", "experiment_id": "t-1", "variation_id": "a"}
    return {
        "type": "track",
        "event": "Experiment Viewed",
        "anonymousId": "v-1",
        "properties": properties,
        "timestamp": "2026-11-29T10:00:00.000Z",
        "messageId": "00000000-0000-0000-0000-000000000000",
        "context": {**context, "library": LIBRARY},
    }


def test_size_is_measured_as_sent_so_a_message_within_32_kb_compact_is_delivered(stack):
    # A message within 32 KB as it is sent (compact JSON), though not as the Python client encodes it (", " and
    # ": "): Segment takes it, and so does the forwarder; the sink measures what it receives.
    context = {f"k{i:02d}": "v" for i in range(60)}
    for index in range(4):
        context[f"pad{index}"] = ""
    compact = len(json.dumps(_experiment_viewed(context), separators=(",", ":")))
    for index, share in enumerate(divmod(32 * 1024 - compact - 20, 4)[0] for _ in range(4)):
        context[f"pad{index}"] = "p" * share
    message = _experiment_viewed(context)
    assert len(json.dumps(message, separators=(",", ":"))) <= 32 * 1024 < len(json.dumps(message))
    body = json.dumps({**ASSIGNMENT, "timestamp": "2026-11-29T10:00:00Z", "context": context}, separators=(",", ":"))
    assert len(body) <= 32 * 1024  # the body itself is within the limit

    status, answer = stack.post("assignment", body, raw=True)

    assert (status, answer["status"]) == (200, "delivered"), answer
    assert [t["context"] for t in stack.tracks("Experiment Viewed")] == [{**context, "library": LIBRARY}]


def test_a_message_within_32_kb_as_utf8_but_not_with_escapes_is_delivered(stack):
    context = {f"note{i}": "Ünïcødé 漢字 " * 250 for i in range(4)}  # 19 KB as UTF-8, 46 KB with \u escapes
    message = _experiment_viewed(context)
    assert len(json.dumps(message, ensure_ascii=False).encode()) <= 32 * 1024 < len(json.dumps(message))

    body = json.dumps({**ASSIGNMENT, "context": context}, ensure_ascii=False)  # as UTF-8, not escaped

    status, answer = stack.post("assignment", body, raw=True)

    assert (status, answer.get("status")) == (200, "delivered"), answer
    [track] = stack.tracks("Experiment Viewed")
    assert track["context"]["note3"] == context["note3"]


def test_a_stored_write_key_basic_auth_cannot_carry_parks_after_retries_not_refused_by_segment(stack):
    stack.put_secret("ws-colon", json.dumps({"write_key": "abc:def", "region": "us"}))
    last_receive = int(stack.template.parameters["MaxReceiveCount"])  # the template's: a safety net, 1000
    record = sqs_record({**ASSIGNMENT, "workspace_id": "ws-colon"}, receive_count=last_receive)

    answer = stack.handler("assignment")({"Records": [record]}, LambdaContext())

    assert answer == {"batchItemFailures": []}
    [reason] = parked(stack)
    assert reason["error_code"] == "retries_exhausted" and "connection_invalid" in reason["error_message"]
    assert stack.sink.requests() == []


class _RetryAfterNaN(BaseHTTPRequestHandler):
    """Segment answering 429 with ``Retry-After: nan`` (then 200)."""

    answered = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).answered += 1
        status = 429 if type(self).answered == 1 else 200
        body = json.dumps({"success": status == 200}).encode()
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "nan")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_retry_after_that_is_not_finite_counts_as_absent(stack):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RetryAfterNaN)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        handler = stack.handler("assignment", SEGMENT_US_ENDPOINT=f"http://127.0.0.1:{server.server_port}")
        answer = handler({"Records": [sqs_record(n) for n in neighbours(2)]}, LambdaContext())
    finally:
        server.shutdown()
        server.server_close()

    assert answer == {"batchItemFailures": []}
    assert _RetryAfterNaN.answered == 2


def test_a_batch_segment_refuses_for_one_message_is_split_and_the_rest_delivered(stack):
    stack.sink.set_fault(status=400, count=100, match={"anonymousId": "v-refused"})
    bodies = [*neighbours(2), {**ASSIGNMENT, "visitor_id": "v-refused"}, *neighbours(4)[2:]]

    answer = run_batch(stack, bodies)

    assert answer == {"batchItemFailures": []}
    assert delivered_visitors(stack) == {f"neighbour-{i}" for i in range(4)}
    [reason] = parked(stack)
    assert (reason["error_code"], reason["error_message"]) == ("rejected", "segment answered 400")


def test_an_unexpected_exception_parks_that_record_alone_with_its_type(stack, aws_faults):
    # A library raising something no one expects, only while marking one visitor's facts (after Segment took them).
    aws_faults.raise_when(
        "dynamodb:BatchWriteItem",
        lambda params: "v-explodes" in json.dumps(params),
        KeyError("boom"),
    )
    bodies = [neighbours()[0], {**ASSIGNMENT, "visitor_id": "v-explodes"}, *neighbours()[1:]]

    answer = run_batch(stack, bodies)

    assert answer == {"batchItemFailures": []}
    assert {f"neighbour-{i}" for i in range(3)} <= delivered_visitors(stack)
    [reason] = parked(stack)
    assert (reason["error_code"], reason["error_message"]) == ("unexpected_error", "KeyError")
    for visitor in ("neighbour-0", "neighbour-1", "neighbour-2"):
        assert stack.item(f"WS#ws-us#V#{visitor}", "ASSIGN#t-1")["status"] == "SENT"
