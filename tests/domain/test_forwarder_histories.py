"""The real ``Forwarder`` over random histories, with in-memory fakes of its ports (hypothesis).

A history is a stream of events for a few visitors, users, tests and conversions, delivered in random batches
(as SQS does, redelivering what was not consumed), with random faults at every step: a crash after the claims,
after Segment accepted, or after the marks; a claim the table cannot answer; Segment failing, or accepting and
then timing out; a mark that fails or is half written; leases expiring; and attempts interleaved (one paused in
its Segment call while another runs, then resuming after its lease expired). Then the faults stop and the
remaining events are redelivered until every one is consumed.

The model checks, from what Segment received and from the product's rules alone:

* every fact reached Segment, each under exactly one messageId (repeats of a messageId are allowed: Segment
  drops them), every messageId with one content and with its workspace's key and region;
* the identity rule: per visitor one first Identify and one link Identify per user id, unless the first
  Identify carried that user id; an Experiment Viewed per (visitor, test) with a variant the visitor was
  assigned; a Conversion Triggered per one-per-visitor conversion, per event id, and per plain conversion;
* nothing is recorded SENT that Segment did not accept under that id with that content, and every fact of a
  consumed event is recorded SENT (else a later resend, beyond Segment's dedup window, would duplicate it);
* every event is consumed (nothing accepted is lost).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from segment_forwarder.connections import Connection
from segment_forwarder.events import Event
from segment_forwarder.facts import FactKind, needs_of
from segment_forwarder.forwarding import Forwarder

from .fakes import Clock, Crash, Faults, MemoryConnections, MemorySegment, MemoryStore, content_of

HISTORIES = 400
LEASE_S = 90
WORKSPACES = {"ws-a": Connection("key-a-0001", "us"), "ws-b": Connection("key-b-0002", "eu")}
START = datetime(2026, 11, 1, tzinfo=UTC)


@st.composite
def events(draw: st.DrawFn) -> list[Event]:
    """A stream of 1-14 events over 2 workspaces, 2 visitors, 2 users, 2 tests and 1 conversion id."""
    stream = []
    for index in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(["identify", "assignment", "conversion"]))
        workspace = draw(st.sampled_from(sorted(WORKSPACES)))
        body: dict[str, Any] = {
            "workspace_id": workspace,
            "visitor_id": f"{workspace}:{draw(st.sampled_from(['v-1', 'v-2']))}",  # tells its workspace
            "timestamp": (START + timedelta(seconds=index)).isoformat(),
        }
        user = draw(st.sampled_from([None, "u-1", "u-2"]))
        if user is not None:
            body["user_id"] = user
        if kind == "assignment":
            body.update(test_id=draw(st.sampled_from(["t-1", "t-2"])), variant_id=draw(st.sampled_from("ab")))
        if kind == "conversion":
            body.update(conversion_id="c-1", conversion_type="CLICK", origin_url=f"https://shop.example/{index}")
            mode = draw(st.sampled_from(["once", "event", "plain"]))
            if mode == "once":
                body["one_per_visitor"] = True
            elif mode == "event":
                body["event_id"] = draw(st.sampled_from(["e-1", "e-2"]))
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

    def attempt(self, batch: Sequence[int]) -> None:
        """One invocation over ``batch``; consumed events leave ``pending`` (a crash consumes nothing)."""
        try:
            results = self.forwarder.forward([self.stream[i] for i in batch], deadline=float("inf"))
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
            self.attempt(batch)
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
    """The model's invariants over what Segment received and what the store recorded."""
    by_id: dict[str, list[Any]] = defaultdict(list)
    for received in history.segment.received:
        by_id[received.message["messageId"]].append(received)
    for message_id, copies in by_id.items():
        assert len({_frozen(content_of(c.message)) for c in copies}) == 1, f"{message_id} with two contents"
        connection = WORKSPACES[copies[0].message["anonymousId"].split(":")[0]]
        assert {(c.write_key, c.region) for c in copies} == {(connection.write_key, connection.region)}
    messages = {message_id: copies[0].message for message_id, copies in by_id.items()}
    visitors: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for event in history.stream:
        visitors[(event.workspace_id, event.visitor_id)].append(event)
    for (_, visitor), events_of in visitors.items():
        mine = {i: m for i, m in messages.items() if m["anonymousId"] == visitor}
        identifies = {i: m for i, m in mine.items() if m["type"] == "identify"}
        users = {e.user_id for e in events_of if e.user_id is not None}
        anonymous = [i for i, m in identifies.items() if "userId" not in m]
        assert len(anonymous) <= 1, f"{visitor}: {len(anonymous)} first Identifies"
        for user in users:
            linked = [i for i, m in identifies.items() if m.get("userId") == user]
            assert len(linked) == 1, f"{visitor} linked to {user} under {len(linked)} messageIds"
        assert len(identifies) == len(users) + len(anonymous) >= 1, f"{visitor}: {list(identifies.values())}"
        tracks = [m for m in mine.values() if m["type"] == "track"]
        for test in {e.test_id for e in events_of if e.kind == "assignment"}:
            viewed = [m for m in tracks if m["event"] == "Experiment Viewed" and m["properties"]["test_id"] == test]
            assert len(viewed) == 1, f"{visitor}/{test}: {len(viewed)} Experiment Viewed"
            variants = {e.variant_id for e in events_of if e.kind == "assignment" and e.test_id == test}
            assert viewed[0]["properties"]["variant_id"] in variants
        conversions = [e for e in events_of if e.kind == "conversion"]
        plain = [e for e in conversions if not e.one_per_visitor and e.event_id is None]
        expected = (
            len({e.conversion_id for e in conversions if e.one_per_visitor})
            + len({e.event_id for e in conversions if not e.one_per_visitor and e.event_id is not None})
            + len(plain)
        )
        triggered = {i for i, m in mine.items() if m["type"] == "track" and m["event"] == "Conversion Triggered"}
        assert len(triggered) == expected, f"{visitor}: {len(triggered)} conversions, expected {expected}"
        assert {e.delivery_id for e in plain} <= triggered
    needed = {need.slot for event in history.stream for need in needs_of(event)}
    unsettled = {slot for slot in needed if history.store.items[slot].status != "SENT"}
    assert not unsettled, f"consumed, but facts not recorded SENT: {unsettled}"
    for slot, item in history.store.items.items():
        if item.status != "SENT":
            continue
        assert item.message_id in messages, f"{slot} recorded SENT but never accepted"
        delivered = messages[item.message_id]
        if slot.fact.kind is FactKind.LINK:
            assert delivered["type"] == "identify" and delivered.get("userId") == slot.fact.name
        else:
            assert content_of(delivered) == item.content, f"{slot} recorded SENT with other content"
    assert not history.pending


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


@settings(max_examples=HISTORIES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=events(), history_steps=steps)
def test_every_fact_once_under_one_message_id_with_its_recorded_content(stream, history_steps):
    note("\n".join(f"event {i}: {e.kind} {e.body}" for i, e in enumerate(stream)))
    note("\n".join(map(repr, history_steps)))
    history = History(stream)
    for step in history_steps:
        history.run(step)
    history.settle()
    check(history)
