"""What `make soak` found in the core before its rewrite, reproduced deterministically and judged by the soak's own
evaluator: regression tests now.

Each test drives the local stack over HTTP or SQS as a platform would, in the one order that showed the defect,
then hands what the producer saw and what the sink received to ``soak.invariants.evaluate``, which must find
nothing. The previous core (833645f) failed all four; the rewritten one (merged from main) passes them:

* after a Segment call slower than the HTTP budget, the claims were released although Segment had the messages:
  a later event re-sent the first-seen Identify under its id with another content, and the queued event sent
  the user link under a second messageId; an Experiment Viewed was re-sent with another timestamp and names;
* a crashed attempt left the visitor's Identify claimed; the client's retry let the Track go ahead and nothing
  ever sent the Identify;
* in one SQS batch, an event following an earlier one with the same fact never sent its own user link.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local_stack.stack import LocalStack
from soak.clients import ROUTES
from soak.invariants import Connection, Outcome, Request, evaluate
from tests.support.stack_client import Api, events_of, new_id, queue_depth, wait_for

pytestmark = pytest.mark.integration

HTTP_BUDGET_S = 1
# The template's timings, shortened with their relation kept: a lease outlives an invocation, and a record comes
# back only once the lease of the crashed invocation that received it has expired (visibility >= timeout + lease).
STACK_OVERRIDES = {
    "function_timeout_s": 4,
    "environment": {"LEASE_SECONDS": "5"},
    "visibility_timeout_s": 9,
    "parameters": {"HttpDeliveryBudgetSeconds": str(HTTP_BUDGET_S)},
}
SLOWER_THAN_THE_BUDGET_S = HTTP_BUDGET_S + 1.5


def _timestamp(seconds_ago: float) -> str:
    moment = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _Producer:
    """Sends like the soak's clients and keeps the ``Request`` records the evaluator reads."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.started = time.monotonic()
        self.requests: list[Request] = []

    def post(self, kind: str, body: dict[str, Any], uncertain_attempts: int = 0) -> tuple[int, Any]:
        sent_at = time.monotonic() - self.started
        status, answer = self.api.post(ROUTES[kind], body)
        outcome: Outcome = answer["status"] if status in (200, 202) else "failed"
        ids = tuple(answer.get("message_ids", ())) if outcome == "delivered" else ()
        answered_at = time.monotonic() - self.started
        self.requests.append(Request(kind, body, outcome, sent_at, answered_at, ids, uncertain_attempts))  # type: ignore[arg-type]
        return status, answer

    def check(self, stack: LocalStack, visitor: str) -> None:
        """The evaluator's verdict on this visitor's requests."""
        check_invariants(stack, self.requests, visitor)


def check_invariants(stack: LocalStack, requests: list[Request], visitor: str) -> None:
    """Once the queues are empty, fail with one violation a line if the evaluator finds any."""
    for queue in ("IdentifyQueue", "AssignmentQueue", "ConversionQueue"):
        wait_for(lambda q=queue: queue_depth(stack, stack.queue_url(q)) == 0, timeout_s=30)
    connections = [Connection(w, stack.write_key(w), r) for w, r in stack.connected_workspaces().items()]
    violations = evaluate(requests, events_of(stack, visitor), connections).violations
    assert not violations, "\n".join(map(str, violations))


def _slow_segment_then_again(
    stack: LocalStack, producer: _Producer, kind: str, first: dict[str, Any], again: dict[str, Any], messages: int
) -> None:
    """``first`` meets a Segment slower than the HTTP budget: answered queued, yet Segment gets its ``messages``
    late; ``again`` (the same visitor) comes once they arrived, before the queue retries ``first``."""
    with stack.pollers_paused():
        stack.sink.set_fault(status=None, count=1, delay_s=SLOWER_THAN_THE_BUDGET_S)  # slow, then accepted
        assert producer.post(kind, first) == (202, {"status": "queued"})
        wait_for(lambda: len(events_of(stack, first["visitor_id"])) == messages, timeout_s=10)
        producer.post(kind, again)


@pytest.fixture(autouse=True)
def _healthy_sink(stack: LocalStack):
    stack.sink.clear_faults()
    yield
    stack.sink.clear_faults()


def _first_with_user_then_anonymous(visitor: str) -> tuple[str, dict[str, Any], dict[str, Any], int]:
    """An identify with a user id (its Identify is the link), then one without (the first-seen Identify again)."""
    first = {"workspace_id": "demo", "visitor_id": visitor, "user_id": new_id("u"), "timestamp": _timestamp(2)}
    again = {"workspace_id": "demo", "visitor_id": visitor, "timestamp": _timestamp(1)}
    return "identify", first, again, 1


def _assignment_with_names_then_without(visitor: str) -> tuple[str, dict[str, Any], dict[str, Any], int]:
    """An assignment with names, then the same assignment later without them (another content if re-sent)."""
    first = {"workspace_id": "demo", "visitor_id": visitor, "test_id": "t-slow", "variant_id": "a"}
    again = first | {"timestamp": _timestamp(1)}
    first |= {"test_name": "Slow", "variant_name": "A", "timestamp": _timestamp(2)}
    return "assignment", first, again, 2


@pytest.mark.concurrency
@pytest.mark.parametrize(
    "requests", [_first_with_user_then_anonymous, _assignment_with_names_then_without], ids=["link", "viewed"]
)
def test_after_a_segment_call_slower_than_the_budget_each_fact_keeps_one_message_id_and_one_content(
    stack, api, requests
):
    producer = _Producer(api)
    visitor = new_id("v")
    kind, first, again, messages = requests(visitor)

    _slow_segment_then_again(stack, producer, kind, first, again, messages=messages)

    producer.check(stack, visitor)


@pytest.mark.concurrency
def test_the_identify_of_a_crashed_attempt_is_not_lost_when_the_client_retries(stack, api):
    producer = _Producer(api)
    visitor = new_id("v")
    body = {"workspace_id": "demo", "visitor_id": visitor, "conversion_id": "c-plain", "conversion_type": "CLICK"}
    body |= {"origin_url": "https://shop.example/cart", "timestamp": _timestamp(1)}  # forwarded on every call
    stack.sink.set_fault(status=503, count=1, delay_s=5)  # the first attempt stalls at Segment (then is refused)
    pids = stack.worker_pids("ConversionFunction")

    answers: list[tuple[int, Any]] = []
    caller = threading.Thread(target=lambda: answers.append(api.post("/v1/conversions", body)))
    caller.start()
    wait_for(lambda: stack.sink.fault() is None)  # the claims are taken, the request is at Segment
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    caller.join(timeout=10)
    assert answers == [(500, {"message": "Internal Server Error"})]  # the client saw a 5xx: it retries
    status, _answer = producer.post("conversion", body, uncertain_attempts=1)
    assert status == 200

    producer.check(stack, visitor)


def test_a_user_link_is_sent_when_the_same_one_per_visitor_conversion_is_in_the_batch_twice(stack):
    visitor, user = new_id("v"), new_id("u")
    common = {"workspace_id": "demo", "visitor_id": visitor, "conversion_id": "c-once", "conversion_type": "CLICK"}
    common |= {"origin_url": "https://shop.example/thanks", "one_per_visitor": True}
    anonymous = common | {"timestamp": _timestamp(2)}
    with_user = common | {"user_id": user, "timestamp": _timestamp(1)}
    sqs = stack.client("sqs")

    with stack.pollers_paused():  # both records reach the function in one batch, the anonymous one first
        for body in (anonymous, with_user):
            sqs.send_message(QueueUrl=stack.queue_url("ConversionQueue"), MessageBody=json.dumps(body))
    requests = [Request("conversion", anonymous, "consumed", 0.0), Request("conversion", with_user, "consumed", 0.1)]

    check_invariants(stack, requests, visitor)
