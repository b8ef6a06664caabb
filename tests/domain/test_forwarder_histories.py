"""The real ``Forwarder`` over random histories, with in-memory fakes of its ports (hypothesis).

A history is a stream of events for a few visitors, users, tests and conversions, delivered in random batches
(as SQS does, redelivering what was not consumed), with random faults at every step: a crash after the claims,
after Segment accepted, or after the marks; a claim the table cannot answer; Segment failing, or accepting and
then timing out; a mark that fails or is half written; leases expiring; and attempts interleaved (one paused in
its Segment call while another runs, then resuming after its lease expired). Then the faults stop and the
remaining events are redelivered until every one is consumed.

The multi-tenant histories add a third workspace, the neighbour, whose source Segment rate-limits (429), refuses
(401, 403, 400 or 422 for everything) or answers slowly, behind the real ``SegmentClient`` (its region breakers and
per-source backoff): the other workspaces' outcomes and what Segment received from them are identical, pass by pass,
to the same history without the neighbour.

The model (``tests/support/model.py``) checks, from what Segment received and from the product's rules alone, that
every fact reached Segment under exactly one messageId with one content (repeats of a messageId are allowed:
Segment drops them), with its workspace's key and region; that every fact of a consumed event is recorded SENT,
and only under a messageId Segment accepted with that content (else a later resend, beyond Segment's dedup
window, would duplicate it); and the history checks that every event is consumed (nothing accepted is lost).
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from segment_forwarder.connections import Connection
from segment_forwarder.events import Event
from segment_forwarder.facts import needs_of
from segment_forwarder.forwarding import Forwarder
from segment_forwarder.segment import SegmentClient
from tests.support.fakes import Clock, Crash, Faults, MemoryConnections, MemorySegment, MemoryStore
from tests.support.model import Received, Recorded, event_bodies, violations
from tests.support.profiles import examples

HISTORIES = 400
LEASE_S = 90
WORKSPACES = {"ws-a": Connection("key-a-0001", "us"), "ws-b": Connection("key-b-0002", "eu")}
START = datetime(2026, 11, 1, tzinfo=UTC)


@st.composite
def events(draw: st.DrawFn) -> list[Event]:
    """A stream of 1-14 events over 2 workspaces, 2 visitors, 2 users, 2 tests and 1 conversion id."""
    stream = []
    for index in range(draw(st.integers(1, 14))):
        timestamp = (START + timedelta(seconds=index)).isoformat()
        kind, body = draw(event_bodies(sorted(WORKSPACES), index=index, timestamp=timestamp))
        stream.append(Event.from_body(kind, body, START, delivery_id=f"delivery-{index}"))
    return stream


@dataclass(frozen=True)
class Step:
    """One invocation: which pending events it gets, and what goes wrong in it."""

    skip: int
    take: int
    crash_at: str | None
    segment: tuple[str, ...]
    mark: str
    unavailable: int | None  # index of a claim request that the table cannot answer
    advance_s: int
    interleave: bool = False
    resume_after_s: int = 0
    precheck: bool = False


steps = st.lists(
    st.builds(
        Step,
        skip=st.integers(0, 3),
        take=st.integers(1, 5),
        crash_at=st.sampled_from([None, None, "after_claim", "after_send", "after_mark"]),
        segment=st.lists(st.sampled_from(["ok", "ok", "fail", "accept_then_fail"]), max_size=3).map(tuple),
        mark=st.sampled_from(["ok", "ok", "ok", "fail", "partial"]),
        unavailable=st.one_of(st.none(), st.integers(0, 4)),
        advance_s=st.sampled_from([0, 0, 30, LEASE_S + 1]),
        interleave=st.booleans(),
        resume_after_s=st.sampled_from([0, LEASE_S + 1]),
        precheck=st.booleans(),
    ),
    max_size=8,
)


@dataclass
class History:
    """The forwarder, its fakes, and which events are still pending (not consumed)."""

    stream: list[Event]
    clock: Clock = field(default_factory=Clock)
    faults: Faults = field(default_factory=Faults)
    pending: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.pending = list(range(len(self.stream)))
        self.store = MemoryStore(self.clock, self.faults, lease_s=LEASE_S)
        self.segment = MemorySegment(self.faults)
        self.forwarder = Forwarder(self.store, MemoryConnections(WORKSPACES), self.segment)

    def attempt(self, batch: Sequence[int], precheck: bool = False) -> None:
        """One invocation over ``batch``; consumed events leave ``pending`` (a crash consumes nothing)."""
        try:
            events = [self.stream[i] for i in batch]
            results = self.forwarder.forward(events, deadline=float("inf"), precheck=precheck)
        except Crash:
            return
        for index, outcome in zip(batch, results, strict=True):
            assert outcome.status in ("delivered", "duplicate", "retry"), outcome
            if outcome.status != "retry" and outcome.complete and index in self.pending:  # SQS: at least once
                self.pending.remove(index)

    def batch(self, skip: int, take: int) -> list[int]:
        start = min(skip, max(len(self.pending) - 1, 0))
        return self.pending[start : start + take]

    def run(self, step: Step) -> None:
        batch = self.batch(step.skip, step.take)
        if not batch:
            return
        if step.interleave:
            self.interleaved(batch, step)
        else:
            self.faults.crash_at, self.faults.mark = step.crash_at, step.mark
            self.faults.segment = list(step.segment)
            requests = [n.slot for i in batch for n in needs_of(self.stream[i])]
            if step.unavailable is not None and step.unavailable < len(requests):
                self.faults.unavailable = {requests[step.unavailable]}
            self.attempt(batch, step.precheck)
        self.faults.crash_at, self.faults.segment, self.faults.mark = None, [], "ok"
        self.faults.unavailable = set()
        self.clock.advance(step.advance_s)

    def interleaved(self, batch: list[int], step: Step) -> None:
        """Attempt A pauses in its Segment call; attempt B runs whole; the clock moves; A resumes."""
        self.faults.pause = True
        self.faults.paused.clear()
        self.faults.resume.clear()
        first = threading.Thread(target=self.attempt, args=(batch,))
        first.start()
        while not self.faults.paused.wait(0.005) and first.is_alive():
            pass  # A reaches Segment, or ends without sending anything
        self.faults.pause = False
        self.attempt(self.batch(step.skip, step.take))
        self.clock.advance(step.resume_after_s)
        self.faults.segment = list(step.segment)
        self.faults.mark = step.mark
        self.faults.resume.set()
        first.join(timeout=10)
        assert not first.is_alive()

    def settle(self) -> None:
        """No more faults: redeliver until every event is consumed (leases of crashed attempts expire)."""
        for _ in range(40):
            if not self.pending:
                return
            self.clock.advance(LEASE_S + 1)
            self.attempt(self.pending[:4])
        raise AssertionError(f"events never consumed: {[self.stream[i] for i in self.pending]}")


def check(history: History) -> None:
    """The model's promises over what Segment received and what the store recorded; every event consumed."""
    received = [Received(r.write_key, r.region, r.message) for r in history.segment.received]
    recorded = [
        Recorded(slot, item.status, item.message_id, item.content) for slot, item in history.store.items.items()
    ]
    assert violations(history.stream, received, WORKSPACES, recorded) == []
    assert not history.pending


@pytest.mark.concurrency
@settings(max_examples=examples(HISTORIES), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=events(), history_steps=steps)
def test_every_fact_once_under_one_message_id_with_its_recorded_content(stream, history_steps):
    note("\n".join(f"event {i}: {e.kind} {e.body}" for i, e in enumerate(stream)))
    note("\n".join(map(repr, history_steps)))
    history = History(stream)
    for step in history_steps:
        history.run(step)
    history.settle()
    check(history)


# -- a failing neighbour -----------------------------------------------------------------------------------------

NEIGHBOUR = "ws-bad"
TENANTS = {**WORKSPACES, NEIGHBOUR: Connection("key-bad-0003", "us")}  # in ws-a's region
# What Segment does with the neighbour's source. Not its requests failing at the network level: a region whose
# requests time out is down for every source as far as anyone can tell (the region's breaker counts those).
NEIGHBOUR_MODES = ("429", "401", "403", "400", "422", "slow")
ENDPOINTS = {"us": "https://us.segment.example", "eu": "https://eu.segment.example"}


@dataclass
class _Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


class SegmentBehindHttp:
    """Segment's ``/v1/batch`` at the HTTP boundary, for the real ``SegmentClient`` (its region breakers and its
    per-source backoff): a connection pool whose requests Segment answers, the neighbour's source as ``mode`` says
    (``slow``: accepted after a pause), every other source with 200, recording what it accepted."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.received: list[Received] = []
        self._lock = threading.Lock()

    def request(self, method: str, url: str, *, body: bytes, headers: dict[str, str], **_: object) -> _Answer:
        write_key = base64.b64decode(headers["Authorization"].removeprefix("Basic ")).decode().removesuffix(":")
        region = next(name for name, endpoint in ENDPOINTS.items() if url.startswith(endpoint))
        if write_key == TENANTS[NEIGHBOUR].write_key and self.mode != "slow":
            return _Answer(int(self.mode), {"Retry-After": "1"} if self.mode == "429" else {})
        if write_key == TENANTS[NEIGHBOUR].write_key:
            time.sleep(0.003)
        with self._lock:
            self.received.extend(Received(write_key, region, m) for m in json.loads(body)["batch"])
        return _Answer(200)


@st.composite
def tenant_streams(draw: st.DrawFn) -> list[Event]:
    """1-16 events over the two healthy workspaces and the neighbour."""
    stream = []
    for index in range(draw(st.integers(1, 16))):
        timestamp = (START + timedelta(seconds=index)).isoformat()
        kind, body = draw(event_bodies(sorted(TENANTS), index=index, timestamp=timestamp))
        stream.append(Event.from_body(kind, body, START, delivery_id=f"delivery-{index}"))
    return stream


def run_tenants(
    stream: list[Event], cuts: list[int], mode: str, precheck: bool, before: int = 0
) -> tuple[list, dict[str, list]]:
    """``before`` calls of the neighbour alone, then the stream in the batches ``cuts`` delimit, in one warm
    execution environment, then what was not consumed once more in one batch. Returns the healthy events'
    outcomes (per pass, by stream index) and what Segment accepted per healthy source."""
    clock, faults = Clock(), Faults()
    segment = SegmentBehindHttp(mode)
    client = SegmentClient(ENDPOINTS, pool=segment)  # type: ignore[arg-type]
    forwarder = Forwarder(MemoryStore(clock, faults, lease_s=LEASE_S), MemoryConnections(TENANTS), client)
    bounds = [0, *sorted({min(cut, len(stream)) for cut in cuts}), len(stream)]
    batches = [list(range(a, b)) for a, b in itertools.pairwise(bounds) if b > a]
    seen: list[tuple[int, int, object]] = []
    pending: list[int] = []
    for number in range(before):  # the neighbour's own traffic, earlier in the same environment
        body = {"workspace_id": NEIGHBOUR, "visitor_id": f"{NEIGHBOUR}:v-early-{number}", "test_id": "t-1"}
        event = Event.from_body("assignment", {**body, "variant_id": "a"}, START, delivery_id=f"early-{number}")
        forwarder.forward([event], deadline=time.monotonic() + 0.5, precheck=precheck)
    for pass_, pass_batches in enumerate((batches, None)):
        for batch in pass_batches if pass_batches is not None else [list(pending)]:
            if not batch:
                continue
            deadline = time.monotonic() + 0.5  # a 429's Retry-After (1 s) is not waited for within the call
            outcomes = forwarder.forward([stream[i] for i in batch], deadline=deadline, precheck=precheck)
            for index, outcome in zip(batch, outcomes, strict=True):
                if stream[index].workspace_id != NEIGHBOUR:
                    seen.append((pass_, index, outcome))
                if pass_ == 0 and (outcome.status == "retry" or not outcome.complete):
                    pending.append(index)
    received: dict[str, list] = {}
    for item in segment.received:
        received.setdefault(item.write_key, []).append(item.message)
    received.pop(TENANTS[NEIGHBOUR].write_key, None)
    return seen, received


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=tenant_streams(),
    cuts=st.lists(st.integers(0, 16), max_size=5),
    mode=st.sampled_from(NEIGHBOUR_MODES),
    precheck=st.booleans(),
    before=st.integers(0, 4),
)
def test_a_failing_neighbour_changes_nothing_for_the_other_workspaces(stream, cuts, mode, precheck, before):
    note("\n".join(f"event {i}: {e.kind} {e.body}" for i, e in enumerate(stream)))
    alone = [i for i, e in enumerate(stream) if e.workspace_id != NEIGHBOUR]
    # the same history without the neighbour: its events taken out, every batch otherwise the same
    kept = [e for e in stream if e.workspace_id != NEIGHBOUR]
    kept_cuts = [sum(1 for i in alone if i < cut) for cut in cuts]

    with_neighbour, received_with = run_tenants(stream, cuts, mode, precheck, before)
    without, received_without = run_tenants(kept, kept_cuts, mode, precheck)

    renumbered = [(pass_, alone[index], outcome) for pass_, index, outcome in without]
    assert with_neighbour == renumbered  # the same outcomes, pass by pass
    assert received_with == received_without  # the same messages, in the same order, per source
