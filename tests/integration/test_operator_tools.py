"""The operator tools over the local stack: what happened to visitor X (``make lookup``), forget visitor X (the
erase route and ``make erase``), and is workspace W healthy (its connection's GET)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from local_stack.stack import LocalStack
from tests.support.stack_client import Api, drain, events_of, new_id, queue_depth, run_tool, wait_for

pytestmark = pytest.mark.integration

# Health tallies written at every invocation (HEALTH_FLUSH_SECONDS 0) and retries every second or two, so the
# tests see within seconds what a deployed stack shows within a minute.
STACK_OVERRIDES: dict[str, Any] = {
    "function_timeout_s": 2,
    "visibility_timeout_s": 5,
    "environment": {
        "LEASE_SECONDS": "3",
        "HEALTH_FLUSH_SECONDS": "0",
        "SEGMENT_BREAKER_THRESHOLD": "0",
    },
    "parameters": {"RetryBackoffCapSeconds": "2", "HttpDeliveryBudgetSeconds": "1", "MaxReceiveCount": "3"},
}


def assignment(visitor: str, workspace: str = "demo", variant: str = "b") -> dict[str, str]:
    return {"workspace_id": workspace, "visitor_id": visitor, "test_id": "t-ops", "variant_id": variant}


def lookup(stack: LocalStack, workspace: str, visitor: str) -> dict[str, dict[str, Any]]:
    """The visitor's facts by key, from ``python -m ops.lookup --json`` (what ``make lookup`` runs)."""
    done = run_tool(stack, "ops.lookup", workspace, visitor, "--json")
    assert done.returncode == 0, done.stderr
    return {fact["key"]: fact for fact in json.loads(done.stdout)}


def settled(stack: LocalStack) -> bool:
    return queue_depth(stack, stack.queue_url("AssignmentQueue")) == 0


def test_lookup_shows_delivered_duplicate_queued_and_parked_facts(stack, api: Api):
    delivered, queued, parked = new_id("v-ok"), new_id("v-queued"), new_id("v-parked")
    assert api.post("/v1/assignments", assignment(delivered))[1]["status"] == "delivered"
    assert api.post("/v1/assignments", assignment(delivered, variant="c"))[1] == {"status": "duplicate"}
    facts = lookup(stack, "demo", delivered)
    assert {key: fact["status"] for key, fact in facts.items()} == {"IDENTIFY": "SENT", "ASSIGN#t-ops": "SENT"}
    viewed = facts["ASSIGN#t-ops"]
    assert viewed["content"]["properties"]["variant_id"] == "b"  # the first variant, recorded
    assert viewed["delivered_at"] >= viewed["first_attempt_at"] > 0
    assert viewed["message_id"] in {e["message"]["messageId"] for e in events_of(stack, delivered)}

    stack.sink.set_fault(status=503, count=1_000_000)  # an outage: the call is queued and its retries fail
    try:
        assert api.post("/v1/assignments", assignment(queued))[0] == 202
        assert {fact["status"] for fact in lookup(stack, "demo", queued).values()} == {"PENDING"}
    finally:
        stack.sink.clear_faults()  # the queue delivers it now
    # its Track refused while its Identify is accepted: parked (a source refusing everything is retried)
    stack.sink.set_fault(status=400, count=1_000_000, match={"anonymousId": parked, "type": "track"})
    try:
        assert api.post("/v1/assignments", assignment(parked))[0] == 202  # refused: the queue parks it
        wait_for(lambda: drain(stack, stack.dlq_url("AssignmentQueue")), timeout_s=30)
    finally:
        stack.sink.clear_faults()
    assert lookup(stack, "demo", parked)["ASSIGN#t-ops"]["status"] == "PENDING"  # never delivered
    wait_for(lambda: settled(stack) and {f["status"] for f in lookup(stack, "demo", queued).values()} == {"SENT"})

    text = run_tool(stack, "ops.lookup", "demo", delivered)
    assert "first sighting" in text.stdout and "variant b" in text.stdout
    assert f'visitor_id = "{delivered}"' in text.stdout  # the Logs Insights query


def test_erase_forgets_the_visitor_of_one_workspace_only(stack, api: Api):
    visitor = new_id("v-erase")
    for workspace in ("demo", "demo-eu"):
        assert api.post("/v1/assignments", {**assignment(visitor, workspace), "user_id": "u-1"})[0] == 200

    status, body = api.request("DELETE", f"/v1/workspaces/demo/visitors/{visitor}")

    done = {"complete": True, "retry_after_s": 0}
    assert (status, body) == (200, {"erased": 3, **done})  # first sighting, the user id link, the assignment
    assert lookup(stack, "demo", visitor) == {}
    assert len(lookup(stack, "demo-eu", visitor)) == 3  # the same visitor id in another workspace
    assert api.request("DELETE", f"/v1/workspaces/demo/visitors/{visitor}") == (200, {"erased": 0, **done})
    before = [e for e in events_of(stack, visitor, region="us") if e["message"]["type"] == "identify"]
    # at once, in the warm function that delivered the visitor's facts: a first sighting again, under new ids
    status, again = api.post("/v1/assignments", assignment(visitor))
    assert again["status"] == "delivered", again
    after = [e for e in events_of(stack, visitor, region="us") if e["message"]["type"] == "identify"]
    assert len(after) == len(before) + 1
    assert after[-1]["message"]["messageId"] not in {e["message"]["messageId"] for e in before}


def test_a_visitor_id_holding_a_slash_or_an_escape_is_erased_over_the_http_api_and_no_look_alike(stack, api: Api):
    visitor = new_id("v/a%41")  # an HTTP API decodes the path: the function must read the id once decoded
    look_alike = visitor.replace("%41", "A")
    for one in (visitor, look_alike):
        assert api.post("/v1/assignments", assignment(one))[0] == 200

    status, body = api.request("DELETE", f"/v1/workspaces/demo/visitors/{quote(visitor, safe='')}")

    assert (status, body) == (200, {"erased": 2, "complete": True, "retry_after_s": 0})
    assert lookup(stack, "demo", visitor) == {}
    assert len(lookup(stack, "demo", look_alike)) == 2


def test_make_erase_calls_the_route_signed(stack, api: Api):
    visitor = new_id("v-make-erase")
    api.post("/v1/assignments", assignment(visitor))

    done = run_tool(stack, "ops.erase", "demo", visitor)

    assert done.returncode == 0, done.stderr
    assert "2 fact(s) erased" in done.stdout
    assert lookup(stack, "demo", visitor) == {}


@pytest.mark.parametrize(
    "path",
    [
        "/v1/workspaces/bad!workspace/visitors/v-1",
        "/v1/workspaces/demo/visitors/%20%20",
        "/v1/workspaces/demo/visitors/" + "v" * 129,
        "/v1/workspaces/demo/visitors/v%00",
    ],
)
def test_the_erase_route_refuses_bad_ids(api: Api, path: str):
    status, body = api.request("DELETE", path)

    assert status == 400
    assert body["error"]["field"] in ("workspace_id", "visitor_id")


def test_health_shows_a_failure_during_an_outage_and_a_delivery_after_it(stack, api: Api):
    path = "/v1/workspaces/demo/segment"
    stack.sink.set_fault(status=503, count=1_000_000)
    try:
        assert api.post("/v1/assignments", assignment(new_id("v-health")))[0] == 202
        failure = wait_for(lambda: api.request("GET", path)[1]["health"]["last_failure"], timeout_s=20)
    finally:
        stack.sink.clear_faults()
    assert (failure["status"], failure["reason"]) == (503, "segment answered 503")
    delivered = new_id("v-healthy")
    assert api.post("/v1/assignments", assignment(delivered))[1]["status"] == "delivered"

    health = api.request("GET", path)[1]["health"]
    assert health["last_delivery"]["messages"] == 2 and health["last_delivery"]["at"] > failure["at"]
    assert health["last_24h"]["delivered"] >= 1 and health["last_24h"]["failed"] >= 1
    wait_for(lambda: settled(stack), timeout_s=60)


def test_the_connection_test_says_what_a_200_does_not_prove(api: Api):
    status, body = api.post("/v1/workspaces/demo/segment/test")

    assert status == 200
    assert "does not prove the write key or the region" in body["note"]
