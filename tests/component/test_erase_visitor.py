"""Forget visitor X (``DELETE /v1/workspaces/{ws}/visitors/{v}``) against moto and the sink: what the erase answers
while the visitor's events are in flight, and when the table fails part-way."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any
from urllib.parse import unquote

import pytest

from local_stack.template import Template
from segment_forwarder.table import HASHED_MARKER
from tests.component.conftest import LambdaContext, on_both_engines
from tests.support.bodies import ASSIGNMENT
from tests.support.visitors import connection_handler, erase, facts_of

pytestmark = on_both_engines

LEASE_S = int(Template.load().document["Globals"]["Function"]["Environment"]["Variables"]["LEASE_SECONDS"])


DONE = {"complete": True, "retry_after_s": 0}


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

    assert erase(connection, "ws-us", "v-1") == (200, {"erased": 2, **DONE})  # once delivered, it completes
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
    aws_faults.fail("dynamodb:DeleteItem", count=10)  # throttled part-way: a retry finishes
    queries = aws_faults.calls["dynamodb:Query"]

    assert erase(connection, "ws-us", "v")[0] == 503
    first_erase = aws_faults.calls["dynamodb:Query"] - queries
    status, body = erase(connection, "ws-us", "v")

    assert status == 200 and 0 < body["erased"] <= 62 and body["complete"] is True
    # the first erase read the IDENTIFY item and the first page, then stopped at the throttled deletes
    assert first_erase == 2
    # the second read the IDENTIFY item and what was left: its first page's deletes ran concurrently, so how many
    # of them the throttling refused (and what is left to read: one page or two) depends on the interleaving
    assert aws_faults.calls["dynamodb:Query"] - queries - first_erase in (2, 3)
    assert facts_of(stack, "ws-us", "v") == {}
    assert {(w, v): facts_of(stack, w, v) for w, v in others} == others
    assert all(len(facts) == 2 for facts in others.values())
    assert any(f"#{HASHED_MARKER}" in key for key in others[("ws-us", "v#")])
    assert stack.item("HEALTH#ws-us", health[0]["sk"]["S"]) is not None


def test_an_erase_reads_a_visitor_of_more_than_1_mb_page_by_page(stack, aws_faults):
    connection = connection_handler(stack)
    put_sent_facts(stack, "ws-us", "v", count=60, content_bytes=30_000)  # > 1 MB: more than one Query page
    queries = aws_faults.calls["dynamodb:Query"]

    assert erase(connection, "ws-us", "v") == (200, {"erased": 60, **DONE})

    assert aws_faults.calls["dynamodb:Query"] - queries == 1 + 2  # the IDENTIFY item, then two pages
    assert facts_of(stack, "ws-us", "v") == {}


class ShortContext(LambdaContext):
    """A context whose invocation has ``seconds`` left from its creation (an erase page by page stops there)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self._ends = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._ends - time.monotonic()) * 1000), 0)


# -- an erase takes effect at once in a warm function ---------------------------------------------------------


def test_after_an_erase_a_warm_function_sends_the_visitors_next_event_as_a_first_sighting_under_new_ids(stack):
    ingest, connection = stack.handler("assignment"), connection_handler(stack)
    status, first = stack.post("assignment", ASSIGNMENT, ingest)
    assert (status, first["status"]) == (200, "delivered")
    assert stack.post("assignment", ASSIGNMENT, ingest) == (200, {"status": "duplicate"})  # warm: known SENT
    assert erase(connection, "ws-us", "v-1")[0] == 200
    stack.sink.clear()

    status, again = stack.post("assignment", ASSIGNMENT, ingest)  # the same warm function, at once

    assert (status, again["status"]) == (200, "delivered"), again
    assert [m["type"] for m in (e["message"] for e in stack.sink.events())] == ["identify", "track"]
    assert not set(again["message_ids"]) & set(first["message_ids"])  # ids Segment has never seen
    assert stack.post("assignment", ASSIGNMENT, ingest) == (200, {"status": "duplicate"})  # the new life is kept
    assert facts_of(stack, "ws-us", "v-1") == {"ASSIGN#t-1": "SENT", "IDENTIFY": "SENT"}


def test_a_visitor_erased_twice_gets_new_ids_each_time_and_a_workspace_without_identify_sees_the_erase(stack):
    stack.connect("ws-us", "key-us", settings={"events": ["experiment_viewed"]})
    ingest, connection = stack.handler("assignment"), connection_handler(stack)
    ids = []
    for _ in range(3):
        status, body = stack.post("assignment", ASSIGNMENT, ingest)
        assert (status, body["status"]) == (200, "delivered"), body
        ids.append(body["message_ids"][0])
        assert stack.post("assignment", ASSIGNMENT, ingest) == (200, {"status": "duplicate"})
        assert erase(connection, "ws-us", "v-1")[0] == 200
    assert len(set(ids)) == 3
    assert stack.identifies() == []


# -- a retry of an event received before the erase is dropped ------------------------------------------------


def test_a_retry_on_the_queue_of_an_event_received_before_the_erase_is_dropped_and_records_nothing(stack):
    ingest, connection = stack.handler("assignment"), connection_handler(stack)
    assert stack.post("assignment", ASSIGNMENT, ingest)[0] == 200
    stack.sink.set_fault(status=503, count=100)
    second = {**ASSIGNMENT, "test_id": "t-2", "user_id": "u-1"}
    assert stack.post("assignment", second, ingest) == (202, {"status": "queued"})  # its retry waits on the queue
    stack.sink.clear()
    stack.sink.set_fault(status=503, count=0)

    # the first life (IDENTIFY, ASSIGN#t-1) and what the failed attempt claimed and released (ASSIGN#t-2, the link)
    assert erase(connection, "ws-us", "v-1")[0] == 200
    batch = stack.run_batch("assignment", stack.received("assignment"))

    assert batch.failed == set()  # consumed: the retry of the event received before the erase is dropped
    sent = [e["message"] for e in stack.sink.events()]
    assert all(m.get("properties", {}).get("test_id") != "t-2" and m.get("userId") != "u-1" for m in sent), sent
    left = facts_of(stack, "ws-us", "v-1")
    assert not any(key.startswith(("ASSIGN#t-2", "IDENTIFY#U")) for key in left), left


def test_an_event_received_after_the_erase_in_a_batch_with_a_dropped_retry_comes_back_as_a_first_sighting(stack):
    ingest, connection = stack.handler("assignment"), connection_handler(stack)
    assert stack.post("assignment", ASSIGNMENT, ingest)[0] == 200
    stack.sink.set_fault(status=503, count=100)
    assert stack.post("assignment", {**ASSIGNMENT, "test_id": "t-2"}, ingest) == (202, {"status": "queued"})
    stack.sink.set_fault(status=503, count=0)
    assert erase(connection, "ws-us", "v-1")[0] == 200
    stack.session.client("sqs").send_message(
        QueueUrl=stack.queue_url("assignment"), MessageBody=json.dumps({**ASSIGNMENT, "test_id": "t-3"})
    )
    stack.sink.clear()

    records = stack.received("assignment")
    batch = stack.run_batch("assignment", records)

    # the retry (t-2) is dropped; the later event (t-3) needs the IDENTIFY the retry's content went into first
    # (the first event of a call gives a fact its content): nothing is sent, and it comes back alone
    assert batch.failed == {records[1]["messageId"]} and stack.sink.events() == []
    assert stack.run_batch("assignment", [records[1]]).failed == set()
    sent = [e["message"] for e in stack.sink.events()]
    assert [(m["type"], m.get("properties", {}).get("test_id")) for m in sent] == [("identify", None), ("track", "t-3")]
    assert facts_of(stack, "ws-us", "v-1") == {"ASSIGN#t-3": "SENT", "IDENTIFY": "SENT"}


# -- a visitor with very many facts is erased page by page ---------------------------------------------------


def test_a_visitor_with_many_facts_is_erased_page_by_page_within_the_time_left_and_told_to_call_again(stack):
    connection = connection_handler(stack)
    put_sent_facts(stack, "ws-us", "v-many", count=450, content_bytes=10)

    answers = [erase(connection, "ws-us", "v-many", ShortContext(2.3))]
    while answers[-1][1].get("complete") is False and len(answers) < 50:
        answers.append(erase(connection, "ws-us", "v-many", ShortContext(2.3)))

    assert all(status == 200 for status, _ in answers), answers
    assert answers[0][1]["complete"] is False and answers[0][1]["erased"] < 450  # one page, then time was up
    assert answers[-1][1]["complete"] is True and len(answers) > 2
    assert sum(body["erased"] for _, body in answers) == 450
    assert facts_of(stack, "ws-us", "v-many") == {}


def test_erase_uses_deletes_and_one_tombstone_put_never_a_batch_write(stack, aws_faults):
    ingest, connection = stack.handler("assignment"), connection_handler(stack)
    assert stack.post("assignment", {**ASSIGNMENT, "user_id": "u-1"}, ingest)[0] == 200
    aws_faults.calls.clear()
    aws_faults.params.clear()

    assert erase(connection, "ws-us", "v-1") == (200, {"erased": 3, **DONE})

    writes = {op: n for op, n in aws_faults.calls.items() if op.startswith("dynamodb:") and op != "dynamodb:Query"}
    assert writes == {"dynamodb:PutItem": 1, "dynamodb:DeleteItem": 2}
    [tombstone] = aws_faults.params["dynamodb:PutItem"]
    assert set(tombstone["Item"]) == {"pk", "sk", "erased_at", "generation", "expires_at"}  # no status, no content


@pytest.mark.parametrize("visitor_id", ["a%41", "a/b", 'q"?#', "\U0001f600 x"])
def test_an_id_an_http_api_gives_decoded_erases_that_visitor_and_no_look_alike(stack, visitor_id):
    ingest, connection = stack.handler("assignment"), connection_handler(stack)
    look_alike = unquote(visitor_id) if "%" in visitor_id else visitor_id + "x"  # "a%41" decoded twice is "aA"
    for visitor in (visitor_id, look_alike):
        assert stack.post("assignment", {**ASSIGNMENT, "visitor_id": visitor}, ingest)[0] == 200
    kept = facts_of(stack, "ws-us", look_alike)

    # erase() sends rawPath and pathParameters as an HTTP API does: the path decoded, each parameter decoded once
    assert erase(connection, "ws-us", visitor_id) == (200, {"erased": 2, **DONE})

    assert facts_of(stack, "ws-us", visitor_id) == {}
    assert facts_of(stack, "ws-us", look_alike) == kept != {}
