"""The product's promises, checked on a history: what Segment received (by ``soak.invariants``, the one
evaluator of the repository) and what the dedup table recorded (here, since only tests can see the table)::

    problems = violations(events, received, connections, recorded)   # [] when every promise holds
    kind, body = draw(event_bodies(["ws-a", "ws-b"], index=3, timestamp="2026-11-29T10:00:03Z"))  # in a history

Segment's side (``soak.invariants.evaluate``): every fact of every consumed event reached Segment under one
messageId with one content, from a request of that fact, with its workspace's key and region, and nothing else.

The table's side: every fact a consumed event needs is recorded SENT (else a later resend, beyond Segment's
dedup window, could duplicate it), and only under a messageId Segment accepted with that content.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from segment_forwarder.connections import Connection
from segment_forwarder.events import Event
from segment_forwarder.facts import FactKind, Slot, needs_of
from soak import invariants

KINDS = ("identify", "assignment", "conversion")


@st.composite
def event_bodies(
    draw: st.DrawFn, workspaces: Sequence[str], *, index: int, timestamp: str
) -> tuple[str, dict[str, Any]]:
    """One event of a generated history, its kind and body: over ``workspaces``, two visitors each (the visitor id
    tells its workspace), two users, two tests, one conversion id sent once per visitor, with an ``event_id`` or
    plain; ``index`` makes a conversion's origin URL its own."""
    kind = draw(st.sampled_from(KINDS))
    workspace = draw(st.sampled_from(sorted(workspaces)))
    body: dict[str, Any] = {
        "workspace_id": workspace,
        "visitor_id": f"{workspace}:{draw(st.sampled_from(['v-1', 'v-2']))}",
        "timestamp": timestamp,
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
    return kind, body


@dataclass(frozen=True)
class Received:
    """One message Segment accepted (repeats of a messageId included, as Segment receives them)."""

    write_key: str
    region: str
    message: dict[str, Any]


@dataclass(frozen=True)
class Recorded:
    """A fact as the dedup table holds it."""

    slot: Slot
    status: str
    message_id: str
    content: dict[str, Any] | None


def violations(
    events: Sequence[Event],
    received: Sequence[Received],
    connections: Mapping[str, Connection],
    recorded: Sequence[Recorded],
) -> list[str]:
    """Every broken promise, as a sentence; [] when all hold. Every event counts as consumed from a queue."""
    requests = [invariants.Request(e.kind, e.body, "consumed", sent_at=float(i)) for i, e in enumerate(events)]
    sink_events = [
        {"region": r.region, "write_key": r.write_key, "received_at": "", "message": r.message} for r in received
    ]
    states = [invariants.Connection(w, c.write_key, c.region) for w, c in connections.items()]
    evaluation = invariants.evaluate(requests, sink_events, states)
    messages = {r.message["messageId"]: r.message for r in received}
    return [str(v) for v in evaluation.violations] + _recorded(events, messages, recorded)


def _content(message: Mapping[str, Any]) -> Any:
    """What the table records of a message: its content (as the evaluator defines it) without its id."""
    content = json.loads(invariants.content_of(message))
    content.pop("messageId", None)
    return content


def _recorded(
    events: Sequence[Event], messages: Mapping[str, dict[str, Any]], recorded: Sequence[Recorded]
) -> list[str]:
    problems = []
    by_slot = {item.slot: item for item in recorded}
    needed = {need.slot for event in events for need in needs_of(event)}
    unsettled = sorted(str(slot) for slot in needed if by_slot.get(slot) is None or by_slot[slot].status != "SENT")
    if unsettled:
        problems.append(f"facts of consumed events not recorded SENT: {unsettled}")
    for item in recorded:
        if item.status != "SENT":
            continue
        delivered = messages.get(item.message_id)
        if delivered is None:
            problems.append(f"{item.slot} recorded SENT under {item.message_id}, which Segment never accepted")
        elif item.slot.fact.kind is FactKind.LINK:
            if delivered["type"] != "identify" or delivered.get("userId") != item.slot.fact.name:
                problems.append(f"{item.slot} recorded SENT by a message that is not its link")
        elif _content(delivered) != item.content:
            problems.append(f"{item.slot} recorded SENT with content other than Segment accepted")
    return problems
