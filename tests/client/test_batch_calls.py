"""The client's batch calls (``identify_many``, ``assignment_many``, ``conversion_many``) over real HTTP against the
scripted gateway: requests within the route's limits, one item per body in order, only retryable bodies sent
again, every conversion's ``event_id`` kept across retries."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from segment_forwarder_client import (
    AuthError,
    ForwarderClient,
    InvalidRequestError,
    PayloadTooLargeError,
    RetryPolicy,
    Status,
    TransportError,
    UnavailableError,
    assignment_body,
    conversion_body,
    identify_body,
)
from segment_forwarder_client.batch import MAX_BATCH_BODIES, MAX_BATCH_BYTES
from tests.client.conftest import answer, close

FAST = RetryPolicy(max_attempts=4, base_s=0.01, cap_s=0.05, budget_s=10)
URL = "https://shop.example.com/"
QUEUED = {"status": "queued"}


def client_of(gateway, **kwargs) -> ForwarderClient:
    kwargs.setdefault("retry", FAST)
    return ForwarderClient(gateway.url, region="us-east-1", credentials=("testing", "testing"), **kwargs)


def unavailable() -> dict[str, Any]:
    return {"error": {"code": "unavailable", "message": "not delivered and not queued", "field": None, "status": 503}}


def refused(field: str) -> dict[str, Any]:
    return {"error": {"code": "invalid_value", "message": f"{field} is bad", "field": field, "status": 400}}


def delivered_all(sent: dict[str, Any]) -> dict[str, Any]:
    """Every body delivered, with a message id naming its visitor."""
    return {"results": [{"status": "delivered", "message_ids": [f"m-{b['visitor_id']}"]} for b in sent["batch"]]}


def conversions(count: int) -> list[dict[str, Any]]:
    return [conversion_body("demo", f"v-{i}", "c-buy", "CLICK", URL) for i in range(count)]


def test_results_come_in_order_and_only_the_bodies_worth_it_are_sent_again(gateway):
    bodies = [{k: v for k, v in body.items() if k != "event_id"} for body in conversions(4)]  # ids made here
    gateway.script(
        answer(
            200, {"results": [{"status": "delivered", "message_ids": ["m-0"]}, unavailable(), refused("x"), QUEUED]}
        ),
        answer(200, {"results": [{"status": "duplicate"}]}),
    )

    items = client_of(gateway).conversion_many(bodies)

    first, second = gateway.requests()
    assert first.path == second.path == "/v1/conversions"
    assert [b["visitor_id"] for b in first.json["batch"]] == ["v-0", "v-1", "v-2", "v-3"]
    assert second.json == {"batch": [first.json["batch"][1]]}  # only the 503, byte for byte, with its event_id
    assert [item.index for item in items] == [0, 1, 2, 3]
    assert [item.ok for item in items] == [True, True, False, True]
    assert [item.result.status for item in items if item.result] == [Status.DELIVERED, Status.DUPLICATE, Status.QUEUED]
    assert [item.result.attempts for item in items if item.result] == [1, 2, 1]
    assert items[0].result.message_ids == ("m-0",)
    error = items[2].error
    assert isinstance(error, InvalidRequestError)
    assert (error.status, error.code, error.field, error.retryable) == (400, "invalid_value", "x", False)
    sent_ids = [b["event_id"] for b in first.json["batch"]]
    assert [item.event_id for item in items] == sent_ids
    assert [item.result.event_id for item in items if item.result] == [sent_ids[0], sent_ids[1], sent_ids[3]]
    assert all(uuid.UUID(event_id).version == 4 for event_id in sent_ids)


def test_a_body_still_unavailable_after_the_last_attempt_ends_with_its_error(gateway):
    gateway.script(
        *[
            answer(
                200,
                lambda sent: {
                    "results": [unavailable() if b["visitor_id"] == "v-1" else QUEUED for b in sent["batch"]]
                },
            )
        ]
        * 10
    )

    items = client_of(gateway).conversion_many(conversions(2))

    assert items[0].result.status == Status.QUEUED
    error = items[1].error
    assert isinstance(error, UnavailableError)
    assert (error.status, error.code, error.retryable, error.attempts) == (503, "unavailable", True, 4)
    assert [len(r.json["batch"]) for r in gateway.requests()] == [2, 1, 1, 1]
    assert len({r.json["batch"][-1]["event_id"] for r in gateway.requests()}) == 1
    assert items[1].body["event_id"] == items[1].event_id == gateway.requests()[0].json["batch"][1]["event_id"]


@pytest.mark.parametrize(
    "failure",
    [answer(503, {"message": "Service Unavailable"}), answer(429, {"message": "Too Many Requests"}), close()],
    ids=["503", "429", "no answer"],
)
def test_a_request_that_fails_as_a_whole_is_sent_again_whole(gateway, failure):
    gateway.script(failure, answer(200, delivered_all))

    items = client_of(gateway).assignment_many([assignment_body("demo", f"v-{i}", "t-1", "b") for i in range(3)])

    assert [item.result.status for item in items] == [Status.DELIVERED] * 3
    assert [item.result.attempts for item in items] == [2, 2, 2]
    first, second = gateway.requests()
    assert first.body == second.body


def test_a_request_refused_as_a_whole_gives_every_body_its_error_without_retrying(gateway):
    gateway.script(answer(403, {"message": "Forbidden"}, x_amzn_ErrorType="AccessDeniedException"))

    items = client_of(gateway).identify_many([identify_body("demo", f"v-{i}") for i in range(3)])

    assert [type(item.error) for item in items] == [AuthError] * 3
    assert {item.error.code for item in items} == {"AccessDeniedException"}
    assert len(gateway.requests()) == 1


def test_no_answer_after_the_last_attempt_ends_every_body_with_a_transport_error(gateway):
    gateway.script(*[close()] * 10)

    items = client_of(gateway).identify_many([identify_body("demo", "v-1")])

    assert isinstance(items[0].error, TransportError)
    assert items[0].error.retryable and items[0].error.attempts == 4


def test_bodies_go_in_requests_of_at_most_100_in_order(gateway):
    gateway.script(*[answer(200, delivered_all)] * 3)

    items = client_of(gateway).identify_many([identify_body("demo", f"v-{i}") for i in range(250)])

    assert [len(r.json["batch"]) for r in gateway.requests()] == [MAX_BATCH_BODIES, MAX_BATCH_BODIES, 50]
    sent = [b["visitor_id"] for r in gateway.requests() for b in r.json["batch"]]
    assert sent == [f"v-{i}" for i in range(250)]
    assert [item.result.message_ids for item in items] == [(f"m-v-{i}",) for i in range(250)]


def test_bodies_go_in_requests_of_at_most_500_kb(gateway):
    gateway.script(*[answer(200, delivered_all)] * 10)
    bodies = [identify_body("demo", f"v-{i}", context={"page": {"title": "é" * 10_000}}) for i in range(60)]

    items = client_of(gateway).identify_many(bodies)

    requests = gateway.requests()
    assert all(len(r.body) <= MAX_BATCH_BYTES for r in requests)
    assert len(requests) == 3  # 60 bodies of 20 KB (UTF-8, not escaped): 24 + 24 + 12
    assert max(len(r.body) for r in requests) > MAX_BATCH_BYTES - 21_000  # full requests, not one body each
    assert [b["visitor_id"] for r in requests for b in r.json["batch"]] == [f"v-{i}" for i in range(60)]
    assert all(item.ok for item in items)


def test_a_body_no_request_can_hold_is_refused_without_being_sent(gateway):
    big = identify_body("demo", "v-big", context={"x": "y" * MAX_BATCH_BYTES})
    gateway.script(answer(200, delivered_all))

    items = client_of(gateway).identify_many([identify_body("demo", "v-0"), big, identify_body("demo", "v-2")])

    assert [item.ok for item in items] == [True, False, True]
    assert isinstance(items[1].error, PayloadTooLargeError)
    assert (items[1].error.status, items[1].error.attempts) == (413, 0)
    (request,) = gateway.requests()
    assert [b["visitor_id"] for b in json.loads(request.body)["batch"]] == ["v-0", "v-2"]


def test_a_retry_waits_at_least_the_retry_after_of_its_answer(gateway):
    gateway.script(answer(429, {"message": "Too Many Requests"}, Retry_After="0.4"), answer(200, delivered_all))

    client_of(gateway).identify_many([identify_body("demo", "v-1")])

    first, second = gateway.requests()
    assert second.arrived - first.arrived >= 0.4


def test_an_answer_without_one_result_per_body_is_an_error_for_each_not_a_guess(gateway):
    gateway.script(answer(200, {"results": [QUEUED]}))

    items = client_of(gateway).identify_many([identify_body("demo", "v-1"), identify_body("demo", "v-2")])

    assert [item.ok for item in items] == [False, False]
    assert "2 bodies answered with 1 results" in str(items[0].error)
    assert len(gateway.requests()) == 1


def test_an_unknown_kind_is_a_value_error(gateway):
    with pytest.raises(ValueError, match="kind must be one of"):
        client_of(gateway).ingest_many("pageview", [{}])  # type: ignore[arg-type]
