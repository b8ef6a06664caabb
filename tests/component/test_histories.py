"""Random histories through the real handlers, the real ``DedupStore`` on moto and the Segment sink (hypothesis).

Events arrive over HTTP and SQS in random batches; faults are injected at the real boundaries only: AWS errors and
process deaths at botocore's API-call boundary (``aws_faults``: throttled claims or marks, a crash after a claim,
after Segment accepted, after the marks; the queue refusing the HTTP path's copy) and the sink's fault switch (503s,
a stall longer than the HTTP budget, so Segment accepts what the caller never hears of). DynamoDB's eventually
consistent reads may be stale throughout (``stale_dynamodb``): the SQS path's pre-read may find a fact absent or
PENDING that is SENT by now. What the HTTP path queues goes through the function's real queue. Then the faults stop,
leases expire, and the queues are redelivered until every event is consumed; ``tests/support/model.py`` checks what
Segment received and what the table recorded, and no record may have reached a dead-letter queue.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from segment_forwarder.connections import Connection
from segment_forwarder.events import Event
from segment_forwarder.facts import Fact, FactKind, Slot
from tests.component.conftest import LambdaContext, sqs_record
from tests.support.fakes import Crash
from tests.support.model import KINDS, Received, Recorded, event_bodies, violations
from tests.support.profiles import examples

HISTORIES = examples(14)  # make deep runs four times as many
DYNALITE_HISTORIES = examples(6)  # the same histories with the dedup table on dynalite (its faults include the reads)
LEASE_S = 1
CONNECTIONS = {"ws-us": Connection("key-us-0001", "us"), "ws-eu": Connection("key-eu-0002", "eu")}

AWS_FAULTS = [
    None,
    ("fail", "dynamodb:UpdateItem", 1),
    ("fail", "dynamodb:UpdateItem", 3),
    ("fail", "dynamodb:BatchWriteItem", 1),
    ("crash", "dynamodb:UpdateItem", True),  # after a claim was written
    ("crash", "dynamodb:BatchWriteItem", False),  # after Segment accepted, before the marks
    ("crash", "dynamodb:BatchWriteItem", True),  # after the marks
    ("fail", "sqs:SendMessage", 1),  # the HTTP path cannot queue
]
# dynalite leaves the item out of a failed condition: the store reads it (GetItem), and that read can fail too
DYNALITE_AWS_FAULTS = [*AWS_FAULTS, ("fail", "dynamodb:GetItem", 1), ("crash", "dynamodb:GetItem", False)]
SINK_FAULTS = [None, (503, 1, 0.0), (503, 3, 0.0), (None, 1, 1.5)]  # (status, count, delay_s)


@st.composite
def bodies(draw: st.DrawFn) -> list[tuple[str, dict[str, Any], str]]:
    """(kind, body, path) of 1-8 events over two workspaces, two visitors each, two users and two tests."""
    stream = []
    for index in range(draw(st.integers(1, 8))):
        kind, body = draw(event_bodies(sorted(CONNECTIONS), index=index, timestamp=f"2026-11-29T10:00:{index:02d}Z"))
        plain = kind == "conversion" and "one_per_visitor" not in body and "event_id" not in body
        # a plain conversion is forwarded per call: a client's retry of one is a new conversion, so it is not
        # sent over HTTP here (the client of the API sets event_id to make retries idempotent)
        path = "sqs" if plain else draw(st.sampled_from(["http", "sqs"]))
        stream.append((kind, body, path))
    return stream


@dataclass(frozen=True)
class Step:
    take: int
    http_first: bool
    aws: Any
    sink: Any


def steps(aws_faults: list[Any]) -> st.SearchStrategy[list[Step]]:
    return st.lists(
        st.builds(
            Step,
            take=st.integers(1, 4),
            http_first=st.booleans(),
            aws=st.sampled_from(aws_faults),
            sink=st.sampled_from(SINK_FAULTS),
        ),
        max_size=5,
    )


@dataclass
class Pending:
    """An accepted event not yet consumed: a client still to call over HTTP, or a record on a queue."""

    kind: str
    body: dict[str, Any]
    path: str
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    receives: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        record = sqs_record(self.body, message_id=self.message_id, receive_count=self.receives + 1)
        record["messageAttributes"] = self.attributes
        return record


class Run:
    """One history against the stack; ``prefix`` keeps its visitors apart from other histories'."""

    def __init__(self, stack: Any, aws_faults: Any, handlers: dict[str, Any], stream: list[Any]) -> None:
        self.stack, self.aws, self.handlers = stack, aws_faults, handlers
        self.prefix = uuid.uuid4().hex[:8]
        self.pending: list[Pending] = []
        self.accepted: list[tuple[str, dict[str, Any]]] = []
        for kind, body, path in stream:
            body = {**body, "visitor_id": f"{self.prefix}:{body['visitor_id']}"}
            self.pending.append(Pending(kind, body, path))
            self.accepted.append((kind, body))

    def arm(self, step: Step) -> None:
        if step.aws is not None:
            action, operation, arg = step.aws
            if action == "fail":
                self.aws.fail(operation, count=arg)
            else:
                self.aws.crash(operation, after=arg)
        if step.sink is not None:
            status, count, delay_s = step.sink
            self.stack.sink.set_fault(status=status, count=count, delay_s=delay_s)

    def disarm(self) -> None:
        self.aws.clear()
        self.stack.sink.clear_faults()

    def http(self, item: Pending) -> None:
        try:
            status, _ = self.stack.post(item.kind, item.body, self.handlers[item.kind])
        except Crash:
            return  # the client sees a 500 and calls again
        assert status in (200, 202, 503), status
        if status != 503:
            self.pending.remove(item)

    def sqs(self, kind: str, batch: list[Pending]) -> None:
        try:
            answer = self.handlers[kind]({"Records": [p.record() for p in batch]}, LambdaContext(timeout_s=5))
        except Crash:
            answer = {"batchItemFailures": [{"itemIdentifier": p.message_id} for p in batch]}
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        for item in batch:
            if item.message_id in failed:
                item.receives += 1
            else:
                self.pending.remove(item)

    def collect_queued(self) -> None:
        """What the HTTP path put on the functions' queues becomes pending records."""
        for kind in KINDS:
            for record in self.stack.as_records(self.stack.drain(kind)):
                body = json.loads(record["body"])
                self.pending.append(
                    Pending(kind, body, "sqs", record["messageId"], attributes=record["messageAttributes"])
                )

    def step(self, step: Step) -> None:
        self.arm(step)
        try:
            http = [p for p in self.pending if p.path == "http"][: step.take]
            if step.http_first and http:
                self.http(http[0])
            else:
                queued = [p for p in self.pending if p.path == "sqs"]
                if queued:
                    kind = queued[0].kind
                    self.sqs(kind, [p for p in queued if p.kind == kind][: step.take])
        finally:
            self.disarm()
        self.collect_queued()

    def settle(self) -> None:
        for round_ in range(12):
            self.collect_queued()
            if not self.pending:
                return
            if round_:
                time.sleep(LEASE_S + 0.1)  # leases of crashed attempts expire
            for item in [p for p in self.pending if p.path == "http"]:
                self.http(item)
            for kind in KINDS:
                batch = [p for p in self.pending if p.path == "sqs" and p.kind == kind]
                if batch:
                    self.sqs(kind, batch)
        pytest.fail(f"events never consumed: {[(p.kind, p.body) for p in self.pending]}")

    def check(self) -> None:
        events = [_model_event(kind, body) for kind, body in self.accepted]
        received = [
            Received(e["write_key"], e["region"], e["message"])
            for e in self.stack.sink.events()
            if str(e["message"].get("anonymousId", "")).startswith(self.prefix)
        ]
        assert violations(events, received, CONNECTIONS, self.recorded()) == []
        for kind in KINDS:
            assert self.stack.drain(kind, dead=True) == [], f"a {kind} record was dead-lettered"

    def recorded(self) -> list[Recorded]:
        client = self.stack.session.client("dynamodb")
        table = self.stack.resources["DedupTable"].ref
        items = client.scan(TableName=table, ConsistentRead=True)["Items"]
        recorded = []
        for item in items:
            pk, sk = item["pk"]["S"], item["sk"]["S"]
            if not pk.startswith(f"WS#ws-us#V#{self.prefix}") and not pk.startswith(f"WS#ws-eu#V#{self.prefix}"):
                continue
            workspace, visitor = pk.removeprefix("WS#").split("#V#", 1)
            kind, _, name = sk.partition("#")
            fact = Fact(FactKind.LINK, name.removeprefix("U#")) if sk.startswith("IDENTIFY#U#") else None
            if fact is None:
                fact = Fact(FactKind(kind), name)
            content = json.loads(item["content"]["S"])
            slot = Slot(workspace, visitor, fact)
            recorded.append(Recorded(slot, item["status"]["S"], item["message_id"]["S"], content))
        return recorded


def _model_event(kind: str, body: dict[str, Any]) -> Event:
    # plain conversions come only over SQS, where the delivery id derives from the record: not known here
    return replace(Event.from_body(kind, body, _START), delivery_id="")  # type: ignore[arg-type]


_START = datetime(2026, 11, 29, tzinfo=UTC)


@pytest.mark.filterwarnings("ignore:No application metrics to publish")  # the warm-up invocations
@settings(
    max_examples=HISTORIES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=bodies(), history_steps=steps(AWS_FAULTS))
def test_histories_through_the_handlers(stack, aws_faults, stale_dynamodb, stream, history_steps):
    run_history(stack, aws_faults, stream, history_steps)


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
@pytest.mark.parametrize("engine", ["dynalite"])
@settings(
    max_examples=DYNALITE_HISTORIES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=bodies(), history_steps=steps(DYNALITE_AWS_FAULTS))
def test_histories_through_the_handlers_on_dynalite(stack, aws_faults, stream, history_steps):
    run_history(stack, aws_faults, stream, history_steps)


def run_history(stack: Any, aws_faults: Any, stream: list[Any], history_steps: list[Step]) -> None:
    """Play one history: the events through warmed handlers, step by step, then settle and check."""
    env = {"LEASE_SECONDS": str(LEASE_S), "HTTP_DELIVERY_BUDGET_SECONDS": "1", "MAX_RECEIVE_COUNT": "1000"}
    handlers = {}
    for kind in KINDS:  # each warmed at once: its runtime reads the environment on its first invocation
        handlers[kind] = stack.handler(kind, **env)
        handlers[kind]({"Records": []}, LambdaContext())
    note("\n".join(f"{kind} via {path}: {body}" for kind, body, path in stream))
    note("\n".join(map(repr, history_steps)))
    run = Run(stack, aws_faults, handlers, stream)
    for step in history_steps:
        run.step(step)
    run.settle()
    run.check()


# -- a failing neighbour -----------------------------------------------------------------------------------------

NEIGHBOUR, NEIGHBOUR_KEY = "ws-bad", "key-bad-0003"  # in ws-us's region
NEIGHBOUR_FAULTS = {  # what Segment does with the neighbour's source: (status, retry_after, delay_s)
    "429": (429, 0.05, 0.0),
    "401": (401, None, 0.0),
    "400": (400, None, 0.0),
    "slow": (None, None, 0.3),  # accepted after 0.3 s, within the HTTP budget
}


@st.composite
def tenant_bodies(draw: st.DrawFn) -> list[tuple[str, dict[str, Any], str]]:
    """(kind, body, path) of 3-9 events over the two workspaces and the neighbour: the neighbour's first, then one of
    ws-us (its region) over HTTP, then any."""
    stream = []
    for index in range(draw(st.integers(1, 7))):
        workspaces = [*sorted(CONNECTIONS), NEIGHBOUR]
        kind, body = draw(event_bodies(workspaces, index=index, timestamp=f"2026-11-29T10:00:{index:02d}Z"))
        plain = kind == "conversion" and "one_per_visitor" not in body and "event_id" not in body
        stream.append((kind, body, "sqs" if plain else draw(st.sampled_from(["http", "sqs"]))))
    first = {"workspace_id": NEIGHBOUR, "visitor_id": f"{NEIGHBOUR}:v-0", "test_id": "t-1", "variant_id": "a"}
    first["timestamp"] = "2026-11-29T09:59:59Z"
    second = {**first, "workspace_id": "ws-us", "visitor_id": "ws-us:v-0"}
    return [("assignment", first, "http"), ("assignment", second, "http"), *stream]


def run_tenant_history(stack: Any, stream: list[Any], mode: str | None) -> tuple[list[Any], dict[str, list[str]]]:
    """The stream through fresh handlers, in order (consecutive SQS events of a kind in one batch), the neighbour's
    source failing as ``mode`` says (None: the neighbour's events left out). The healthy events' answers, and what
    Segment accepted per healthy source (each message without its id and sentAt, the run's visitor prefix taken out)."""
    prefix = uuid.uuid4().hex[:8]
    used = sorted({kind for kind, _, _ in stream})
    handlers = {kind: stack.handler(kind, HTTP_DELIVERY_BUDGET_SECONDS="1") for kind in used}
    stack.sink.clear()
    if mode is not None:
        status, retry_after, delay_s = NEIGHBOUR_FAULTS[mode]
        stack.sink.set_fault(
            status=status, count=10_000, retry_after=retry_after, delay_s=delay_s, write_key=NEIGHBOUR_KEY
        )
    groups: list[list[tuple[str, dict[str, Any], str]]] = []  # an HTTP call, or consecutive SQS events of a kind
    for kind, body, path in stream:
        same = groups and path == "sqs" and groups[-1][0][2] == "sqs" and groups[-1][0][0] == kind
        if not same:
            groups.append([])
        groups[-1].append((kind, {**body, "visitor_id": f"{prefix}:{body['visitor_id']}"}, path))
    answers: list[Any] = []
    for group in groups:  # without the neighbour: the same groups, its events taken out
        group = [item for item in group if mode is not None or item[1]["workspace_id"] != NEIGHBOUR]
        if not group:
            continue
        kind, body, path = group[0]
        if path == "http":
            status, answer = stack.post(kind, body, handlers[kind])
            if body["workspace_id"] != NEIGHBOUR:
                answers.append((status, answer.get("status"), len(answer.get("message_ids", []))))
            continue
        records = [sqs_record(item[1]) for item in group]
        retried = set(stack.invoke_sqs(kind, records, handler=handlers[kind]).retried)
        healthy = [r for r, item in zip(records, group, strict=True) if item[1]["workspace_id"] != NEIGHBOUR]
        if healthy:
            answers.append(("sqs", kind, [r["messageId"] in retried for r in healthy]))
    stack.sink.clear_faults()
    received: dict[str, list[str]] = {}
    for event in stack.sink.events():
        if event["write_key"] == NEIGHBOUR_KEY:
            continue
        message = {k: v for k, v in event["message"].items() if k not in ("messageId", "sentAt")}
        received.setdefault(event["write_key"], []).append(json.dumps(message, sort_keys=True).replace(prefix, "P"))
    return answers, received


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
@pytest.mark.parametrize("mode", sorted(NEIGHBOUR_FAULTS))
@settings(
    max_examples=examples(2),
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: each example runs two histories
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=tenant_bodies())
def test_a_failing_neighbour_changes_nothing_for_the_other_workspaces(stack, stream, mode):
    stack.connect(NEIGHBOUR, NEIGHBOUR_KEY)
    note("\n".join(f"{kind} via {path}: {body}" for kind, body, path in stream))

    with_neighbour = run_tenant_history(stack, stream, mode)
    without = run_tenant_history(stack, stream, None)

    assert with_neighbour == without
