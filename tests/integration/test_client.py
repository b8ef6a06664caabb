"""The producer client (``segment_forwarder_client``) against the local stack, signed with SigV4, over real HTTP.

The client signs with the local dummy credentials, exactly as it signs for a deployed stack with real ones; the
sink shows what reached "Segment". The overrides shorten the queues' visibility timeout so that a record the queue
path finds in flight comes back within seconds.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from pathlib import Path

import pytest
import urllib3

from local_stack.stack import LocalStack
from segment_forwarder_client import (
    AuthError,
    ConversionType,
    ForwarderClient,
    InvalidRequestError,
    NotConnectedError,
    Status,
    assignment_body,
    conversion_body,
)
from tests.support.stack_client import (
    TOKEN,
    events_of,
    new_id,
    queue_depth,
    queue_producer,
    signed_client,
    wait_for,
)

pytestmark = pytest.mark.integration

STACK_OVERRIDES = {"visibility_timeout_s": 2}
URL = "https://shop.example.com/pricing"


def tracks(stack: LocalStack, visitor: str, event: str) -> list[dict]:
    return [e["message"] for e in events_of(stack, visitor) if e["message"].get("event") == event]


def settled(stack: LocalStack) -> bool:
    """Nothing left on the three queues (visible, in flight or delayed)."""
    return all(queue_depth(stack, stack.queue_url(f"{k}Queue")) == 0 for k in ("Identify", "Assignment", "Conversion"))


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> ForwarderClient:
    return signed_client(stack)


# -- the three ingest calls and the connection calls ----------------------------------------------------------


def test_identify_assignment_and_conversion_are_signed_delivered_and_typed(stack, client):
    visitor = new_id("v")

    identified = client.identify("demo", visitor, user_id="u-1", context={"ip": "203.0.113.7"})
    assigned = client.assignment("demo", visitor, "t-checkout", "b", test_name="Checkout", variant_name="Green")
    converted = client.conversion("demo", visitor, "c-signup", ConversionType.CLICK, URL)

    assert [r.status for r in (identified, assigned, converted)] == [Status.DELIVERED] * 3
    assert [r.attempts for r in (identified, assigned, converted)] == [1, 1, 1]
    received = [e["message"] for e in events_of(stack, visitor)]
    assert [(m["type"], m.get("event")) for m in received] == [
        ("identify", None),
        ("track", "Experiment Viewed"),
        ("track", "Conversion Triggered"),
    ]
    assert [m["messageId"] for m in received] == [
        *identified.message_ids,
        *assigned.message_ids,
        *converted.message_ids,
    ]
    assert received[2]["properties"]["conversion_id"] == "c-signup"
    assert converted.event_id is not None
    assert client.assignment("demo", visitor, "t-checkout", "b").status == Status.DUPLICATE


def test_a_one_per_visitor_conversion_with_its_generated_event_id_is_still_forwarded_once(stack, client):
    visitor = new_id("v")

    first = client.conversion("demo", visitor, "c-trial", "PAGE_VIEW", URL, one_per_visitor=True)
    second = client.conversion("demo", visitor, "c-trial", "PAGE_VIEW", URL, one_per_visitor=True)

    assert (first.status, second.status) == (Status.DELIVERED, Status.DUPLICATE)
    assert first.event_id != second.event_id  # the conversion id deduplicates these, not the event id
    assert len(tracks(stack, visitor, "Conversion Triggered")) == 1


def test_the_connection_calls_over_the_client(stack, client):
    from tests.support.leak_check import register_write_key  # imported by pytest_plugins first (assert rewrite)

    workspace, key = new_id("ws"), new_id("key")
    register_write_key(key)

    connected = client.connect(workspace, key, region="us")
    shown = client.connection_status(workspace)
    tested = client.test_connection(workspace)
    client.disconnect(workspace)

    assert (connected.connected, connected.region, connected.write_key_hint) == (True, "us", "…" + key[-4:])
    assert shown == dataclasses.replace(connected, health=shown.health, raw=shown.raw)  # GET adds the health
    assert shown.health is not None and shown.health["last_24h"] == {"delivered": 0, "failed": 0, "parked": 0}
    test_events = [e for e in stack.sink.events(write_key=key) if e["message"]["messageId"] == tested.message_id]
    assert len(test_events) == 1
    assert client.connection_status(workspace).connected is False
    with pytest.raises(NotConnectedError) as raised:
        client.test_connection(workspace)
    assert (raised.value.status, raised.value.code) == (404, "not_connected")


def test_a_schema_violation_is_raised_at_once_with_the_apis_code_and_field(stack, client):
    before = len(stack.sink.requests())

    with pytest.raises(InvalidRequestError) as raised:
        client.conversion("demo", new_id("v"), "c-1", "CLICK", "not a url")

    assert (raised.value.status, raised.value.code, raised.value.field) == (400, "invalid_value", "origin_url")
    assert raised.value.attempts == 1
    assert len(stack.sink.requests()) == before


def test_the_readmes_quick_start_python_runs_as_written(stack, capsys):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "while `make run` runs" in b]

    exec(block.replace("http://127.0.0.1:3000", stack.api_url), {})

    printed = [line for line in capsys.readouterr().out.splitlines() if re.match(r"\w+ [0-9a-f-]{36} \('", line)]
    [line] = printed  # the example's print(result.status, result.event_id, result.message_ids)
    status, event_id, _ = line.split(" ", 2)
    assert status == "delivered"
    assert uuid.UUID(event_id).version == 4
    assert len(tracks(stack, "v-1", "Conversion Triggered")) == 1


# -- authentication -------------------------------------------------------------------------------------------


def test_a_client_with_a_wrong_secret_is_refused_and_nothing_is_sent(stack):
    visitor = new_id("v")
    wrong = signed_client(stack, credentials=("testing", "not-the-secret"))

    with pytest.raises(AuthError) as raised:
        wrong.identify("demo", visitor)

    assert (raised.value.status, raised.value.code, raised.value.attempts) == (403, "InvalidSignatureException", 1)
    assert raised.value.message.startswith("The request signature we calculated does not match")
    assert events_of(stack, visitor) == []


def test_an_unsigned_request_is_refused(stack):
    visitor = new_id("v")
    body = json.dumps({"workspace_id": "demo", "visitor_id": visitor})

    response = urllib3.request("POST", f"{stack.api_url}/v1/identify", body=body, timeout=10, retries=False)

    assert (response.status, response.json()) == (403, {"message": "Forbidden"})
    assert events_of(stack, visitor) == []


# -- retries that cannot duplicate ----------------------------------------------------------------------------


def test_a_conversion_whose_first_call_timed_out_is_retried_and_forwarded_once(stack):
    visitor = new_id("v")
    # Segment stalls 2 s on the next request (then accepts it): the function's first attempt delivers after 2 s,
    # within its 3 s budget, but the client stops waiting after 0.75 s and retries the same call.
    stack.sink.set_fault(status=None, count=1, delay_s=2.0)
    client = signed_client(stack, timeout=urllib3.Timeout(connect=2, read=0.75))

    result = client.conversion("demo", visitor, "c-buy", "CLICK", URL)

    assert result.attempts >= 2
    # The retry met the first attempt's claim in flight (202 queued) or already sent (duplicate).
    assert result.status in (Status.QUEUED, Status.DUPLICATE)
    wait_for(lambda: tracks(stack, visitor, "Conversion Triggered") and settled(stack), timeout_s=20)
    # Settled: the queued copy has been through the queue path (a duplicate there); nothing else can send it.
    [track] = tracks(stack, visitor, "Conversion Triggered")
    assert track["properties"]["conversion_id"] == "c-buy"


def test_without_an_event_id_the_same_retry_duplicates_which_is_why_the_client_sets_one(stack):
    visitor = new_id("v")
    body = json.dumps(
        {
            "workspace_id": "demo",
            "visitor_id": visitor,
            "conversion_id": "c-buy",
            "conversion_type": "CLICK",
            "origin_url": URL,
        }
    )
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    stack.sink.set_fault(status=None, count=1, delay_s=2.0)

    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        urllib3.request(
            "POST", f"{stack.api_url}/v1/conversions", body=body, headers=headers, timeout=0.75, retries=False
        )
    retried = urllib3.request("POST", f"{stack.api_url}/v1/conversions", body=body, headers=headers, timeout=10)

    assert retried.json()["status"] == "delivered"
    # Two messageIds (the stalled first call may also reach Segment twice under its one id: Segment keeps one)
    wait_for(lambda: len({t["messageId"] for t in tracks(stack, visitor, "Conversion Triggered")}) == 2, timeout_s=10)


def test_a_segment_outage_is_answered_queued_and_the_queue_delivers_once(stack, client):
    visitor = new_id("v")
    stack.sink.set_fault(status=503, count=10_000)
    try:
        result = client.conversion("demo", visitor, "c-buy", "CLICK", URL)
        assert (result.status, result.attempts) == (Status.QUEUED, 1)
        assert events_of(stack, visitor) == []
    finally:
        stack.sink.clear_faults()

    wait_for(lambda: tracks(stack, visitor, "Conversion Triggered") and settled(stack), timeout_s=20)
    assert len(tracks(stack, visitor, "Conversion Triggered")) == 1
    # The same call made again (same event_id) is known as sent.
    again = client.conversion("demo", visitor, "c-buy", "CLICK", URL, event_id=result.event_id)
    assert again.status == Status.DUPLICATE


# -- batches ----------------------------------------------------------------------------------------------------


def test_batch_calls_answer_each_body_in_order_and_a_resend_with_the_same_event_ids_sends_nothing(stack, client):
    visitors = [new_id("v") for _ in range(4)]
    bodies = [conversion_body("demo", v, "c-buy", ConversionType.CLICK, URL) for v in visitors]
    bodies.insert(2, conversion_body("demo", new_id("v"), "c-buy", "CLICK", "not a url"))

    items = client.conversion_many(bodies)

    assert [item.index for item in items] == [0, 1, 2, 3, 4]
    assert [item.ok for item in items] == [True, True, False, True, True]
    assert {item.result.status for item in items if item.result} == {Status.DELIVERED}
    refused = items[2].error
    assert isinstance(refused, InvalidRequestError)
    assert (refused.status, refused.code, refused.field, refused.attempts) == (400, "invalid_value", "origin_url", 1)
    for visitor, item in zip(visitors, [items[0], items[1], items[3], items[4]], strict=True):
        [track] = tracks(stack, visitor, "Conversion Triggered")
        assert track["messageId"] in item.result.message_ids
        assert item.result.event_id == item.event_id == item.body["event_id"]

    again = client.conversion_many([item.body for item in items if item.ok])

    assert [item.result.status for item in again if item.result] == [Status.DUPLICATE] * 4
    assert all(len(tracks(stack, visitor, "Conversion Triggered")) == 1 for visitor in visitors)


def test_a_batch_call_of_150_bodies_goes_in_two_requests_and_delivers_each(stack, client):
    visitors = [new_id("v") for _ in range(150)]
    before = len(stack.sink.requests())

    items = client.assignment_many([assignment_body("demo", v, "t-checkout", "b") for v in visitors])

    assert [item.result.status for item in items if item.result] == [Status.DELIVERED] * 150
    assert len(stack.sink.requests()) - before == 2  # one Segment request per API request (one workspace)
    for visitor, item in zip(visitors, items, strict=True):
        sent = [m["messageId"] for m in (e["message"] for e in events_of(stack, visitor))]
        assert sorted(sent) == sorted(item.result.message_ids)  # its Identify and its Experiment Viewed


# -- the queue producer ---------------------------------------------------------------------------------------


def test_the_queue_producers_messages_are_delivered_and_a_resend_adds_nothing(stack):
    producer = queue_producer(stack)
    visitors = [new_id("v") for _ in range(4)]
    conversions = [conversion_body("demo", v, f"c-{i}", "CLICK", URL) for v in visitors for i in range(3)]
    assignments = [assignment_body("demo", v, "t-queue", "a") for v in visitors]

    sent = producer.send("conversion", conversions) + producer.send("assignment", assignments)

    assert len(sent) == 16 and len({s.message_id for s in sent}) == 16
    assert all(s.event_id for s in sent[:12])

    def delivered() -> int:
        return sum(len(tracks(stack, v, "Conversion Triggered")) for v in visitors)

    wait_for(lambda: delivered() == 12 and settled(stack), timeout_s=30)
    assert all(len(tracks(stack, v, "Experiment Viewed")) == 1 for v in visitors)

    # A producer that cannot tell whether its batch was stored sends it again: the event ids make it harmless.
    producer.send("conversion", [s.body for s in sent[:12]])
    wait_for(lambda: settled(stack), timeout_s=30)
    assert delivered() == 12
