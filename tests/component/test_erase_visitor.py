"""Forget visitor X (``DELETE /v1/workspaces/{ws}/visitors/{v}``) against moto and the sink: what the erase answers
while the visitor's events are in flight, and when the table fails part-way."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from typing import Any

import pytest

from local_stack.template import Template
from segment_forwarder.dedup import HASHED_MARKER
from tests.component.conftest import LambdaContext, load_app, on_both_engines

pytestmark = on_both_engines

ASSIGNMENT = {"workspace_id": "ws-us", "visitor_id": "v-1", "test_id": "t-1", "variant_id": "b"}
LEASE_S = int(Template.load().document["Globals"]["Function"]["Environment"]["Variables"]["LEASE_SECONDS"])
ERASE_ROUTE = "/v1/workspaces/{workspace_id}/visitors/{visitor_id}"


def connection_handler(stack: Any) -> Any:
    """A cold-started connection function with its template environment."""
    environment = stack.template.function_environment("ConnectionFunction", stack.resources)
    environment.update(SEGMENT_US_ENDPOINT=stack.sink.region_url("us"), SEGMENT_EU_ENDPOINT=stack.sink.region_url("eu"))
    for name, value in environment.items():
        stack.monkeypatch.setenv(name, value)
    sys.modules.pop("segment_forwarder.connection_api", None)  # its runtime (clients) lives in the module
    return load_app("connection").handler


def erase(handler: Any, workspace_id: str, visitor_id: str) -> tuple[int, dict[str, Any]]:
    path = f"/v1/workspaces/{workspace_id}/visitors/{visitor_id}"
    event = {
        "version": "2.0",
        "routeKey": f"DELETE {ERASE_ROUTE}",
        "rawPath": path,
        "pathParameters": {"workspace_id": workspace_id, "visitor_id": visitor_id},
        "requestContext": {"http": {"method": "DELETE", "path": path}, "requestId": "r-1"},
    }
    answer = handler(event, LambdaContext())
    return answer["statusCode"], json.loads(answer["body"]) if answer["body"] else {}


def facts_of(stack: Any, workspace_id: str, visitor_id: str) -> dict[str, str]:
    """The visitor's items in the table: sort key -> status."""
    client = stack.session.client("dynamodb")
    items = client.query(
        TableName=stack.resources["DedupTable"].ref,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"WS#{workspace_id}#V#{visitor_id}"}},
        ConsistentRead=True,
    )["Items"]
    return {item["sk"]["S"]: item["status"]["S"] for item in items}


@pytest.mark.concurrency
def test_an_erase_during_a_delivery_does_not_report_the_visitor_erased_when_the_delivery_records_it_again(stack):
    ingest, connection = stack.handler("assignment"), connection_handler(stack)
    stack.sink.set_fault(status=None, delay_s=1.5)  # the delivery stalls at Segment, its facts claimed (PENDING)
    delivered: dict[str, Any] = {}
    sending = threading.Thread(target=lambda: delivered.update(answer=stack.post("assignment", ASSIGNMENT, ingest)))
    sending.start()
    deadline = time.monotonic() + 5
    while len(facts_of(stack, "ws-us", "v-1")) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert set(facts_of(stack, "ws-us", "v-1").values()) == {"PENDING"}

    status, body = erase(connection, "ws-us", "v-1")
    sending.join()

    assert delivered["answer"][0] == 200  # the event reached Segment and recorded its facts SENT
    left = facts_of(stack, "ws-us", "v-1")
    # "erased" must be true when it is answered: else the answer says to erase again once the delivery is over
    assert status != 200 or left == {}, (status, body, left)
    assert (status, body["error"]["code"]) == (409, "in_flight")
    wait = re.search(r"erase again in (-?\d+) s", body["error"]["message"])
    assert wait is not None and 1 <= int(wait.group(1)) <= LEASE_S + 1, body  # the delivery's lease is over then

    assert erase(connection, "ws-us", "v-1") == (200, {"erased": 2})  # once delivered, the erase completes
    assert facts_of(stack, "ws-us", "v-1") == {}


def put_sent_facts(stack: Any, workspace_id: str, visitor_id: str, count: int, content_bytes: int) -> None:
    """``count`` delivered EVENT facts of a visitor, each recording ``content_bytes`` of content."""
    client, now = stack.session.client("dynamodb"), int(time.time())
    for n in range(count):
        client.put_item(
            TableName=stack.resources["DedupTable"].ref,
            Item={
                "pk": {"S": f"WS#{workspace_id}#V#{visitor_id}"},
                "sk": {"S": f"EVENT#e-{n}"},
                "status": {"S": "SENT"},
                "content": {"S": json.dumps({"event": "Conversion Triggered", "pad": "x" * content_bytes})},
                "expires_at": {"N": str(now + 3600)},
            },
        )


def test_erase_removes_many_and_hashed_facts_and_nothing_of_look_alike_visitors_or_health(stack, aws_faults):
    ingest, connection = stack.handler("assignment"), connection_handler(stack)
    long_test = "\U0001f600" * 60  # 240 bytes: hashed in the sort key
    for workspace, visitor in [("ws-us", "v"), ("ws-us", "v#V#v"), ("ws-us", "v#"), ("ws-eu", "v")]:
        body = {**ASSIGNMENT, "workspace_id": workspace, "visitor_id": visitor, "test_id": long_test}
        assert stack.post("assignment", body, ingest)[0] == 200
    put_sent_facts(stack, "ws-us", "v", count=60, content_bytes=30_000)  # > 1 MB: more than one Query page
    others = {(w, v): facts_of(stack, w, v) for w, v in [("ws-us", "v#V#v"), ("ws-us", "v#"), ("ws-eu", "v")]}
    health = stack.session.client("dynamodb").query(
        TableName=stack.resources["DedupTable"].ref,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "HEALTH#ws-us"}},
    )["Items"]
    assert health
    aws_faults.fail("dynamodb:BatchWriteItem")  # throttled part-way: a retry finishes
    queries = aws_faults.calls["dynamodb:Query"]

    assert erase(connection, "ws-us", "v")[0] == 503
    status, body = erase(connection, "ws-us", "v")

    assert status == 200 and 0 < body["erased"] <= 62
    assert aws_faults.calls["dynamodb:Query"] - queries == 4  # each erase read two pages (over 1 MB)
    assert facts_of(stack, "ws-us", "v") == {}
    assert {(w, v): facts_of(stack, w, v) for w, v in others} == others
    assert all(len(facts) == 2 for facts in others.values())
    assert any(f"#{HASHED_MARKER}" in key for key in others[("ws-us", "v#")])
    assert stack.item("HEALTH#ws-us", health[0]["sk"]["S"]) is not None
