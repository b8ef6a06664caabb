"""The dedup store's contract on each DynamoDB engine (moto, dynalite): what a claim, an erase and a health write
answer from the item as it stands, however the engine reports a failed condition.

dynalite leaves the item out of a failed condition (it ignores ``ReturnValuesOnConditionCheckFailure=ALL_OLD``); the
store then reads it with a consistent GetItem, never taking the missing item for "absent" or "no lease". The
functions' roles in template.yaml must grant that read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from local_stack.template import Template
from segment_forwarder.claims import DedupStore
from segment_forwarder.facts import ClaimRequest, ClaimState, Fact, FactKind, Slot
from segment_forwarder.visitor_facts import VisitorFacts
from tests.component.conftest import FUNCTIONS, LambdaContext, on_both_engines, sqs_record
from tests.support.visitors import connection_handler, erase

NOW = 1_796_000_000
LEASE_S = 90
SLOT = Slot("ws-us", "v-1", Fact(FactKind.ASSIGNMENT, "t-1"))
FIRST = {"event": "Experiment Viewed", "properties": {"variant_id": "a"}}
LATER = {"event": "Experiment Viewed", "properties": {"variant_id": "b"}}
ASSIGNMENT = {"workspace_id": "ws-us", "visitor_id": "v-1", "test_id": "t-1", "variant_id": "b"}


class Clock:
    """The store's wall clock, moved by the test (seconds)."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def store(stack: Any, clock: Callable[[], float]) -> DedupStore:
    """A store of its own (a cold execution environment: nothing known SENT) on the stack's table."""
    return DedupStore(
        stack.session.client("dynamodb"),
        stack.resources["DedupTable"].ref,
        lease_seconds=LEASE_S,
        visitor_ttl_seconds=86_400,
        event_ttl_seconds=3_600,
        clock=clock,
    )


def raw_item(stack: Any) -> dict[str, Any]:
    return stack.session.client("dynamodb").get_item(
        TableName=stack.resources["DedupTable"].ref,
        Key={"pk": {"S": "WS#ws-us#V#v-1"}, "sk": {"S": "ASSIGN#t-1"}},
        ConsistentRead=True,
    )["Item"]


@on_both_engines
def test_a_claim_answers_in_flight_or_sent_with_the_content_the_first_claim_recorded(stack):
    clock = Clock()
    first = store(stack, clock).claim(ClaimRequest(SLOT, FIRST))
    assert (first.answer.state, first.answer.content) == (ClaimState.CLAIMED, FIRST)

    clock.now += 10  # the lease is live: in flight elsewhere, not claimed again
    again = store(stack, clock).claim(ClaimRequest(SLOT, LATER))
    assert (again.answer.state, again.answer.content, again.token) == (ClaimState.IN_FLIGHT, FIRST, "")
    assert (raw_item(stack)["claim_token"]["S"], raw_item(stack)["attempts"]["N"]) == (first.token, "1")

    store(stack, clock).mark_sent([(first, SLOT.message_id, 0)])
    repeat = store(stack, clock).claim(ClaimRequest(SLOT, LATER))
    assert (repeat.answer.state, repeat.answer.content) == (ClaimState.SENT, FIRST)


@on_both_engines
def test_a_claim_after_the_lease_ended_takes_over_keeping_the_first_content(stack):
    clock = Clock()
    first = store(stack, clock).claim(ClaimRequest(SLOT, FIRST))
    clock.now += LEASE_S + 1

    retry = store(stack, clock).claim(ClaimRequest(SLOT, LATER))

    assert (retry.answer.state, retry.answer.content) == (ClaimState.CLAIMED, FIRST)
    assert retry.token and retry.token != first.token
    assert raw_item(stack)["attempts"]["N"] == "2"


@on_both_engines
def test_an_item_past_its_expiry_is_claimed_as_new(stack):
    # TTL deletion lags by days: the item of a former life is still there, SENT, and expired.
    clock = Clock()
    old = store(stack, clock).claim(ClaimRequest(SLOT, FIRST))
    store(stack, clock).mark_sent([(old, SLOT.message_id, 0)])
    clock.now += 86_400 + 1

    claim = store(stack, clock).claim(ClaimRequest(SLOT, LATER))

    assert (claim.answer.state, claim.answer.content) == (ClaimState.CLAIMED, LATER)
    assert json.loads(raw_item(stack)["content"]["S"]) == LATER


@on_both_engines
def test_a_repeat_over_http_is_a_duplicate_not_queued(stack):
    # a cold function (nothing known SENT) claims both facts again: the failed claims must read SENT
    assert stack.post("assignment", ASSIGNMENT)[1]["status"] == "delivered"

    assert stack.post("assignment", ASSIGNMENT) == (200, {"status": "duplicate"})
    assert stack.drain("assignment") == []


@on_both_engines
def test_an_erase_while_a_delivery_holds_a_fact_says_when_to_erase_again(stack):
    clock = Clock()
    store(stack, clock).claim(ClaimRequest(SLOT, FIRST))  # PENDING, lease until NOW + 90
    clock.now += 30

    erasure = VisitorFacts(stack.session.client("dynamodb"), stack.resources["DedupTable"].ref, clock).erase(
        "ws-us", "v-1"
    )

    assert (erasure.erased, erasure.in_flight, erasure.retry_after_s) == (0, 1, LEASE_S - 30 + 1)


def granted(function: str) -> set[str]:
    """The DynamoDB actions template.yaml grants a function."""
    template = Template.load()
    actions: set[str] = set()
    for policy in template.functions()[function]["Properties"].get("Policies", []):
        if not isinstance(policy, dict) or "Statement" not in policy:
            continue
        for statement in policy["Statement"]:
            listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            actions.update(a for a in listed if a.startswith("dynamodb:"))
    return actions


def called(aws_faults: Any) -> set[str]:
    return {name for name in aws_faults.calls if name.startswith("dynamodb:")}


@on_both_engines
def test_every_dynamodb_call_of_the_functions_is_granted_by_their_role(stack, aws_faults):
    ingest = stack.handler("assignment")
    stack.post("assignment", ASSIGNMENT, ingest)
    stack.post("assignment", ASSIGNMENT, stack.handler("assignment"))  # cold: failed claims read the items
    stack.handler("assignment")({"Records": [sqs_record(ASSIGNMENT)]}, LambdaContext())
    stack.sink.set_fault(status=503, count=100)
    stack.post("assignment", {**ASSIGNMENT, "visitor_id": "v-2"}, stack.handler("assignment", LEASE_SECONDS="1"))
    assert called(aws_faults) <= granted(FUNCTIONS["assignment"]), called(aws_faults)

    aws_faults.calls.clear()
    assert erase(connection_handler(stack), "ws-us", "v-1")[0] == 200
    assert called(aws_faults) <= granted("ConnectionFunction"), called(aws_faults)


@pytest.mark.parametrize("engine", ["dynalite"])  # moto answers with the item: no read to race with
def test_a_claim_whose_item_is_erased_before_it_is_read_claims_again(stack, aws_faults):
    clock = Clock()
    store(stack, clock).claim(ClaimRequest(SLOT, FIRST))
    client, table = stack.session.client("dynamodb"), stack.resources["DedupTable"].ref

    def erased_first(params: dict[str, Any]) -> bool:
        client.delete_item(TableName=table, Key=params["Key"])  # an erase lands between the failed claim and its read
        aws_faults.raising.clear()
        return False

    aws_faults.raise_when("dynamodb:GetItem", erased_first, RuntimeError("unused"))
    aws_faults.calls.clear()

    claim = store(stack, clock).claim(ClaimRequest(SLOT, LATER))

    assert (claim.answer.state, claim.answer.content) == (ClaimState.CLAIMED, LATER)
    assert (aws_faults.calls["dynamodb:UpdateItem"], aws_faults.calls["dynamodb:GetItem"]) == (2, 1)
