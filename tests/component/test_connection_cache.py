"""Unknown workspaces cost nothing unbounded: the connection cache of a warm ingest function is bounded (LRU),
remembers "not connected" briefly, and a flood of unknown workspace ids neither grows it past its bound nor evicts
the connected workspaces' entries. Secrets Manager calls are counted at botocore's boundary (``aws_faults``)."""

from __future__ import annotations

import time

import pytest

from segment_forwarder.connections import Connections
from tests.component.conftest import LambdaContext, sqs_record

GET = "secretsmanager:GetSecretValue"


def assignment(workspace: str, visitor: str = "v-1") -> dict:
    return {"workspace_id": workspace, "visitor_id": visitor, "test_id": "t-1", "variant_id": "a"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def connections(stack, clock: Clock, **kw: int) -> Connections:
    return Connections(stack.session.client("secretsmanager"), stack.prefix, 60, clock=clock, **kw)


def test_a_flood_of_unknown_ids_costs_at_most_the_cache_bound_and_never_evicts_a_connected_workspace(stack, aws_faults):
    cache = connections(stack, Clock(), max_entries=100)
    assert cache.get("ws-us") is not None

    assert [cache.get(f"unknown-{i}") for i in range(400)] == [None] * 400

    assert aws_faults.calls[GET] == 401  # one call per id: nothing is known of an id never seen
    assert cache.cached() == (1, 100)  # the connected workspace, and at most the bound of "not connected"
    before = aws_faults.calls[GET]
    assert cache.get("ws-us").region == "us"
    assert aws_faults.calls[GET] == before  # still cached: the flood did not evict it


def test_unknown_ids_repeated_within_the_miss_period_cost_no_call(stack, aws_faults):
    clock = Clock()
    cache = connections(stack, clock, max_entries=1000, miss_max_age=30)
    for i in range(400):
        cache.get(f"unknown-{i}")
    calls = aws_faults.calls[GET]

    clock.now += 29
    assert [cache.get(f"unknown-{i}") for i in range(400)] == [None] * 400
    assert aws_faults.calls[GET] == calls

    clock.now += 2  # the miss period has passed: asked again
    cache.get("unknown-0")
    assert aws_faults.calls[GET] == calls + 1


def test_a_newly_connected_workspace_is_seen_within_the_miss_period_not_the_connection_period(stack):
    clock = Clock()
    cache = connections(stack, clock, miss_max_age=30)
    assert cache.get("ws-new") is None
    stack.connect("ws-new", "key-new-0004")

    clock.now += 29
    assert cache.get("ws-new") is None  # remembered as not connected
    clock.now += 2
    assert cache.get("ws-new").region == "us"  # seen after 30 s, though connections are cached 60 s


@pytest.mark.filterwarnings("ignore:No application metrics to publish")  # every event skipped
def test_the_handler_pays_one_call_per_unknown_id_and_none_for_its_repeats(stack, aws_faults):
    handler = stack.handler("assignment")  # the template's defaults: misses remembered 30 s, 1000 entries
    batches = [[sqs_record(assignment(f"unknown-{b}-{i}")) for i in range(50)] for b in range(8)]
    for batch in batches:
        assert handler({"Records": batch}, LambdaContext()) == {"batchItemFailures": []}  # skipped: not connected
    assert aws_faults.calls[GET] == 400
    for batch in batches:
        handler({"Records": batch}, LambdaContext())
    assert aws_faults.calls[GET] == 400  # the repeats cost nothing


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_the_handler_sees_a_newly_connected_workspace_within_the_miss_period(stack):
    handler = stack.handler("assignment", CONNECTION_MISS_CACHE_SECONDS="1", CONNECTION_CACHE_SECONDS="3600")
    handler({"Records": [sqs_record(assignment("ws-late", "v-early"))]}, LambdaContext())  # not connected yet

    stack.connect("ws-late", "key-late-0005")
    time.sleep(1.1)
    handler({"Records": [sqs_record(assignment("ws-late", "v-late"))]}, LambdaContext())

    assert [m["anonymousId"] for m in stack.tracks("Experiment Viewed")] == ["v-late"]
