"""Exactly once and nothing lost under concurrency, crashes and Segment outages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from local_stack.template import Template
from segment_forwarder.messages import message_id
from tests.component.conftest import (
    ROOT,
    LambdaContext,
    create_tables,
    delete_tables,
    http_event,
    load_app,
    on_both_engines,
    sqs_record,
)

ASSIGNMENT = {"workspace_id": "ws-us", "visitor_id": "v-1", "test_id": "t-1", "variant_id": "b"}


@pytest.mark.concurrency
@on_both_engines
def test_twenty_four_concurrent_identical_assignments_send_one_experiment_viewed(stack):
    handlers = [stack.handler("assignment") for _ in range(24)]  # 24 execution environments
    barrier = threading.Barrier(len(handlers))
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def call(handler) -> None:
        barrier.wait()
        result = handler(http_event("assignment", ASSIGNMENT), LambdaContext())
        with lock:
            answers.append((result["statusCode"], json.loads(result["body"])))

    threads = [threading.Thread(target=call, args=(h,)) for h in handlers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(body["status"] for _, body in answers)
    assert set(statuses) <= {"delivered", "duplicate", "queued"}
    # Queued: every 202 (its fact in flight elsewhere at the time), and a copy of any duplicate that found the
    # visitor's Identify in flight (it comes back until that is recorded SENT). Duplicates once processed.
    queued = stack.received("assignment")
    assert len(queued) >= statuses.count("queued")
    if queued:
        batch = stack.run_batch("assignment", queued)
        assert (batch.answer, batch.failed) == ({"batchItemFailures": []}, set())
        assert stack.drain("assignment") == []  # deleted as the event source deletes what succeeded
    # One call may send the Experiment Viewed while another sends the visitor's Identify (released to it while the
    # first held it): more than one "delivered" answer is truthful. What must hold: Segment got each fact once, and
    # each messageId it got was reported delivered by exactly one call (or sent from the queue).
    #
    # A request that timed out on our side may still have reached Segment: its resend carries the same messageId
    # (Segment drops the repeat). So: one messageId per fact, whatever the number of copies.
    sent = [e["message"] for e in stack.sink.events()]
    ids_by_type: dict[str, set[str]] = {}
    for message in sent:
        ids_by_type.setdefault(message["type"], set()).add(message["messageId"])
    assert {kind: len(ids) for kind, ids in ids_by_type.items()} == {"identify": 1, "track": 1}
    assert {m["properties"]["variant_id"] for m in stack.tracks("Experiment Viewed")} == {"b"}
    reported = [mid for _, body in answers if body["status"] == "delivered" for mid in body["message_ids"]]
    assert len(reported) == len(set(reported))
    assert set(reported) <= {m["messageId"] for m in sent}
    assert statuses.count("delivered") >= 1


def test_retry_after_is_honoured_within_the_budget(stack):
    stack.sink.set_fault(status=429, count=1, retry_after=1)

    status, body = stack.post("assignment", ASSIGNMENT, stack.handler("assignment", HTTP_DELIVERY_BUDGET_SECONDS="3"))

    assert (status, body["status"]) == (200, "delivered")
    assert [r["status"] for r in stack.sink.requests()] == [429, 200]


def test_retry_after_longer_than_the_budget_queues_at_once(stack):
    stack.sink.set_fault(status=429, count=1, retry_after=120)

    status, body = stack.post("assignment", ASSIGNMENT, stack.handler("assignment", HTTP_DELIVERY_BUDGET_SECONDS="2"))

    assert (status, body) == (202, {"status": "queued"})
    assert len(stack.sink.requests()) == 1
    assert len(stack.drain("assignment")) == 1


def test_one_workspaces_429s_do_not_hold_back_another_workspace_of_the_same_region(stack):
    stack.connect("ws-us-b", "key-us-0003")  # a second workspace in the region us
    stack.sink.set_fault(status=429, count=1000, retry_after=0.1, write_key="key-us-0001")  # ws-us rate limited
    handler = stack.handler("assignment", HTTP_DELIVERY_BUDGET_SECONDS="3")  # one execution environment for both

    limited = stack.post("assignment", ASSIGNMENT, handler)
    other = stack.post("assignment", {**ASSIGNMENT, "workspace_id": "ws-us-b"}, handler)

    assert limited == (202, {"status": "queued"})
    assert {r["status"] for r in stack.sink.requests() if r["write_key"] == "key-us-0001"} == {429}
    # Segment rate limits a source, not a region: the other workspace's request is sent and delivered.
    assert [r["status"] for r in stack.sink.requests() if r["write_key"] == "key-us-0003"] == [200]
    assert (other[0], other[1]["status"]) == (200, "delivered")


@pytest.mark.parametrize("status", [429, 401])
def test_one_workspaces_refusals_never_open_the_regions_breaker_for_another_workspace(stack, status):
    # Segment answers ws-us (key-us-0001) 429 (retrying quickly within each call's budget) or 401, call after
    # call: far more failed requests in a row than the breaker's threshold (3). The region is up all along.
    stack.connect("ws-us-b", "key-us-0003")
    stack.sink.set_fault(status=status, count=10_000, retry_after=0.01, write_key="key-us-0001")
    handler = stack.handler("assignment", HTTP_DELIVERY_BUDGET_SECONDS="1")  # one execution environment for both
    answers = []
    for round_ in range(4):
        limited = stack.post("assignment", {**ASSIGNMENT, "visitor_id": f"v-a-{round_}"}, handler)
        other = stack.post(
            "assignment", {**ASSIGNMENT, "workspace_id": "ws-us-b", "visitor_id": f"v-b-{round_}"}, handler
        )
        answers.append((limited, other))

    refused = [r for r in stack.sink.requests() if r["write_key"] == "key-us-0001"]
    assert {r["status"] for r in refused} == {status}
    assert len(refused) > 3  # well past the breaker's threshold
    for limited, other in answers:
        assert limited == (202, {"status": "queued"})
        assert (other[0], other[1]["status"]) == (200, "delivered")  # answered as if the neighbour were fine
    # every answer of the other workspace came from a request Segment accepted: none was a 202 without a request
    assert [r["status"] for r in stack.sink.requests() if r["write_key"] == "key-us-0003"] == [200] * 4


def test_a_429s_retry_after_holds_back_that_source_only_in_the_warm_environment(stack):
    stack.connect("ws-us-b", "key-us-0003")
    stack.sink.set_fault(status=429, count=10_000, retry_after=30, write_key="key-us-0001")
    handler = stack.handler("assignment", HTTP_DELIVERY_BUDGET_SECONDS="2")

    first = stack.post("assignment", ASSIGNMENT, handler)
    again = [stack.post("assignment", {**ASSIGNMENT, "visitor_id": f"v-{i}"}, handler) for i in range(2, 5)]
    other = stack.post("assignment", {**ASSIGNMENT, "workspace_id": "ws-us-b"}, handler)

    assert first == (202, {"status": "queued"})
    assert again == [(202, {"status": "queued"})] * 3
    # Segment said "not for 30 s": the calls after the first ask it nothing with that key ...
    assert [r["status"] for r in stack.sink.requests() if r["write_key"] == "key-us-0001"] == [429]
    # ... and another source of the same region is sent at once
    assert (other[0], other[1]["status"]) == (200, "delivered")
    assert len(stack.drain("assignment")) == 4


def test_segment_timeout_on_http_queues_and_the_queue_resends_the_same_ids(stack):
    stack.sink.set_fault(status=None, count=1, delay_s=2.5)  # answers only after our read timeout
    handler = stack.handler("assignment", HTTP_DELIVERY_BUDGET_SECONDS="1")

    status, body = stack.post("assignment", ASSIGNMENT, handler)
    assert (status, body) == (202, {"status": "queued"})

    queued = stack.received("assignment")
    batch = stack.run_batch("assignment", queued)
    assert (batch.answer, batch.failed) == ({"batchItemFailures": []}, set())
    assert stack.drain("assignment") == []
    stack.sink.wait_for_events(4, timeout_s=5)  # the stalled first attempt lands too
    tracks = stack.tracks("Experiment Viewed")
    assert len(tracks) == 2
    assert len({t["messageId"] for t in tracks}) == 1  # Segment keeps one: same messageId


@on_both_engines
def test_segment_timeout_on_sqs_reports_the_record_failed(stack):
    stack.sink.set_fault(status=None, count=5, delay_s=3)
    record = sqs_record(ASSIGNMENT)

    answer = stack.handler("assignment")({"Records": [record]}, LambdaContext(timeout_s=5))

    assert answer == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert stack.item("WS#ws-us#V#v-1", "ASSIGN#t-1")["lease_until"] == "0"


# -- a process that dies between claim and send ---------------------------------------------------------------

CRASHING_CALL = """
import json, sys
sys.path[:0] = [{layer!r}, {root!r}]
from tests.component.conftest import LambdaContext, http_event, load_app
handler = load_app("assignment").handler
handler(http_event("assignment", json.loads({body!r})), LambdaContext())
"""


@pytest.fixture
def moto_server(monkeypatch, engine, request):
    """moto in server mode (a process of its own can reach it), the dedup table's endpoint on ``engine``."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto's server keeps its state in this process's backends: start from none (an earlier test's secrets)
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST")).close()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    if engine == "dynalite":
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", request.getfixturevalue("dynalite_server").endpoint)
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def server_resources(moto_server, engine):
    """(session, template, resources): the template's resources on moto's server, the dedup table on ``engine``."""
    session, template = boto3.session.Session(), Template.load()
    if engine != "dynalite":
        yield session, template, template.create_resources(session)
        return
    tables = create_tables(template, session.client("dynamodb"))
    yield session, template, {**tables, **template.create_queues(session.client("sqs"), tables)}
    delete_tables(session.client("dynamodb"), tables)


@pytest.mark.concurrency
@on_both_engines
def test_crash_after_the_claim_then_retry_delivers_once_with_the_same_message_id(server_resources, sink, monkeypatch):
    sink.clear()
    session, template, resources = server_resources
    session.client("secretsmanager").create_secret(
        Name=f"{template.secret_prefix}/ws-us", SecretString=json.dumps({"write_key": "key-us-0001", "region": "us"})
    )
    env = template.function_environment("AssignmentFunction", resources)
    env.update(
        SEGMENT_US_ENDPOINT=sink.region_url("us"),
        SEGMENT_EU_ENDPOINT=sink.region_url("eu"),
        LEASE_SECONDS="2",
        HTTP_DELIVERY_BUDGET_SECONDS="20",
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sink.set_fault(status=None, count=1, delay_s=4)  # the first attempt hangs in its Segment request
    script = CRASHING_CALL.format(layer=str(ROOT / "layers" / "forwarder"), root=str(ROOT), body=json.dumps(ASSIGNMENT))
    process = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ), cwd=Path(ROOT))
    dynamodb = session.client("dynamodb")
    key = {"pk": {"S": "WS#ws-us#V#v-1"}, "sk": {"S": "ASSIGN#t-1"}}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        item = dynamodb.get_item(TableName=env["DEDUP_TABLE"], Key=key).get("Item")
        if item and item.get("status", {}).get("S") == "PENDING":
            break
        time.sleep(0.05)
    else:
        process.kill()
        pytest.fail("the first attempt never claimed")
    while sink.fault() is not None and time.monotonic() < deadline:
        time.sleep(0.05)  # until its Segment request arrived (and hangs there)
    process.send_signal(signal.SIGKILL)  # the process dies after the claim, before marking anything sent
    process.wait()
    # the fact's one id: from the fact and the visitor's generation (never erased: 0); a claim records no id
    claimed_id = message_id("ws-us", "v-1", "ASSIGN#t-1")

    # Retried at once: the lease is live, the event is in flight elsewhere -> queued, not dropped.
    handler = load_app("assignment").handler
    answer = handler(http_event("assignment", ASSIGNMENT), LambdaContext())
    assert (answer["statusCode"], json.loads(answer["body"])) == (202, {"status": "queued"})

    # The crashed attempt's lease expires (whole seconds: it is over once the clock passes the next second).
    time.sleep(max(int(item["lease_until"]["N"]) + 1 - time.time(), 0) + 0.05)
    sqs = session.client("sqs")
    queued = sqs.receive_message(
        QueueUrl=env["QUEUE_URL"], MaxNumberOfMessages=10, MessageAttributeNames=["All"], AttributeNames=["All"]
    )["Messages"]
    records = [sqs_record(m["Body"], message_id=m["MessageId"]) for m in queued]
    assert handler({"Records": records}, LambdaContext()) == {"batchItemFailures": []}

    sink.wait_for_events(4, timeout_s=6)  # the hung request of the dead process completes too
    tracks = [e["message"] for e in sink.events() if e["message"]["type"] == "track"]
    assert {t["messageId"] for t in tracks} == {claimed_id}  # one id: Segment keeps exactly one
    item = dynamodb.get_item(TableName=env["DEDUP_TABLE"], Key=key)["Item"]
    assert (item["status"]["S"], item["message_id"]["S"]) == ("SENT", claimed_id)
