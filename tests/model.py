"""The model of the product's promises, checked against what Segment received and what the table recorded.

Independent of how the forwarder works: it derives, from the consumed events alone, which facts must have
reached Segment, and checks::

    problems = violations(events, received, connections, recorded)   # [] when every promise holds

* every messageId reached Segment with one content, with its workspace's write key and region;
* per visitor: one first Identify, and one Identify with ``userId`` per user id of its events (the first
  Identify counts when it carried that user id); nothing else;
* one Experiment Viewed per (visitor, test), with a variant the visitor was assigned;
* one Conversion Triggered per one-per-visitor conversion id, per event id, and per plain conversion (under
  that event's delivery id);
* every fact the events need is recorded SENT, and only under a messageId Segment accepted with that content.

Precondition: a visitor id belongs to one workspace in the history (the generators make them unique).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segment_forwarder.connections import Connection
from segment_forwarder.events import Event
from segment_forwarder.facts import FactKind, Slot, needs_of

ENVELOPE = ("messageId", "context", "sentAt", "receivedAt", "writeKey", "integrations")


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


def content_of(message: Mapping[str, Any]) -> dict[str, Any]:
    """A message's content: everything but its id, the sender's context and the envelope's fields."""
    return {k: v for k, v in message.items() if k not in ENVELOPE}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def violations(
    events: Sequence[Event],
    received: Sequence[Received],
    connections: Mapping[str, Connection],
    recorded: Sequence[Recorded],
) -> list[str]:
    """Every broken promise, as a sentence; [] when all hold."""
    problems: list[str] = []
    workspace_of = {event.visitor_id: event.workspace_id for event in events}
    copies: dict[str, list[Received]] = defaultdict(list)
    for item in received:
        copies[item.message["messageId"]].append(item)
    for message_id, same in copies.items():
        if len({_canonical(content_of(c.message)) for c in same}) != 1:
            problems.append(
                f"{message_id} reached Segment with {len({_canonical(content_of(c.message)) for c in same})} contents"
            )
        workspace = workspace_of.get(same[0].message.get("anonymousId", ""))
        if workspace is None:
            problems.append(f"{message_id} is for no event's visitor")
            continue
        expected = connections[workspace]
        if {(c.write_key, c.region) for c in same} != {(expected.write_key, expected.region)}:
            problems.append(f"{message_id} of {workspace} sent with another key or region")
    messages = {message_id: same[0].message for message_id, same in copies.items()}
    by_visitor: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_visitor[event.visitor_id].append(event)
    for visitor, mine_events in by_visitor.items():
        mine = {i: m for i, m in messages.items() if m.get("anonymousId") == visitor}
        problems.extend(_identity(visitor, mine_events, mine))
        problems.extend(_tracks(visitor, mine_events, mine))
    problems.extend(_recorded(events, messages, recorded))
    return problems


def _identity(visitor: str, events: Sequence[Event], mine: Mapping[str, dict[str, Any]]) -> list[str]:
    identifies = {i: m for i, m in mine.items() if m["type"] == "identify"}
    users = {e.user_id for e in events if e.user_id is not None}
    anonymous = [i for i, m in identifies.items() if "userId" not in m]
    problems = []
    if len(anonymous) > 1:
        problems.append(f"{visitor}: {len(anonymous)} first Identifies")
    for user in users:
        linked = [i for i, m in identifies.items() if m.get("userId") == user]
        if len(linked) != 1:
            problems.append(f"{visitor} linked to {user} under {len(linked)} messageIds")
    if not len(identifies) == len(users) + len(anonymous) >= 1:
        problems.append(f"{visitor}: Identifies {sorted(identifies)} for users {sorted(users)}")
    return problems


def _tracks(visitor: str, events: Sequence[Event], mine: Mapping[str, dict[str, Any]]) -> list[str]:
    problems = []
    tracks = {i: m for i, m in mine.items() if m["type"] == "track"}
    for test in {e.test_id for e in events if e.kind == "assignment"}:
        viewed = [
            m for m in tracks.values() if m["event"] == "Experiment Viewed" and m["properties"]["test_id"] == test
        ]
        variants = {e.variant_id for e in events if e.kind == "assignment" and e.test_id == test}
        if len(viewed) != 1:
            problems.append(f"{visitor}/{test}: {len(viewed)} Experiment Viewed")
        elif viewed[0]["properties"]["variant_id"] not in variants:
            problems.append(f"{visitor}/{test}: variant {viewed[0]['properties']['variant_id']} never assigned")
    conversions = [e for e in events if e.kind == "conversion"]
    plain = [e for e in conversions if not e.one_per_visitor and e.event_id is None]
    expected = (
        len({e.conversion_id for e in conversions if e.one_per_visitor})
        + len({e.event_id for e in conversions if not e.one_per_visitor and e.event_id is not None})
        + len(plain)
    )
    triggered = {i for i, m in tracks.items() if m["event"] == "Conversion Triggered"}
    if len(triggered) != expected:
        problems.append(f"{visitor}: {len(triggered)} Conversion Triggered, expected {expected}")
    missing = {e.delivery_id for e in plain if e.delivery_id} - triggered  # "": the id is not known
    if missing:
        problems.append(f"{visitor}: plain conversions never delivered under their ids: {sorted(missing)}")
    return problems


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
        elif content_of(delivered) != item.content:
            problems.append(f"{item.slot} recorded SENT with content other than Segment accepted")
    return problems
