"""The dedup core under workspace settings (pure), and the real ``Forwarder`` with in-memory fakes: which events
are screened out, which facts an event needs, the content built for a claim and the context of a send; keys and
message ids never depend on settings."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from segment_forwarder.connections import Connection
from segment_forwarder.facts import (
    IDENTIFY,
    Outcome,
    claim_requests,
    largest_message,
    needs_of,
    plan_call,
    screen,
)
from segment_forwarder.forwarding import Forwarder
from segment_forwarder.messages import message_id, message_size, with_delivery
from segment_forwarder.workspace_settings import DEFAULT_SETTINGS, WorkspaceSettings
from tests.support.fakes import Clock, Faults, MemoryConnections, MemorySegment, MemoryStore

from .test_facts import ASSIGN, answers_for, event, link, slot

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
AJS = "ajs-3f1c"
BRIDGED = WorkspaceSettings(anonymous_id="segment")
NO_IDENTIFY = WorkspaceSettings(events=("experiment_viewed", "conversion_triggered"))
ANALYTICS = WorkspaceSettings(consent_category="Analytics")
GRANTED = {"consent": {"categoryPreferences": {"Analytics": True}}}
DENIED = {"consent": {"categoryPreferences": {"Analytics": False}}}

# Every combination of the settings that shape what is claimed and sent.
ALL_SETTINGS = [
    WorkspaceSettings(anonymous_id=a, ip=i, user_agent=u, events=tuple(e), spec_names=s)
    for a, i, u, s in itertools.product(
        ("visitor_id", "segment"), ("pass", "truncate", "drop"), ("pass", "drop"), (True, False)
    )
    for e in (
        ("identify", "experiment_viewed", "conversion_triggered"),
        ("experiment_viewed", "conversion_triggered"),
    )
]
EVENTS = [
    event("identify", user_id="u-1", segment_anonymous_id=AJS),
    event("assignment", user_id="u-1", segment_anonymous_id=AJS, test_name="T", variant_name="V"),
    event("conversion", one_per_visitor=True, segment_anonymous_id=AJS),
    event("conversion", event_id="e-1"),
]


# -- screening ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "events"),
    [
        ("identify", ("experiment_viewed", "conversion_triggered")),
        ("assignment", ("identify", "conversion_triggered")),
        ("conversion", ("identify", "experiment_viewed")),
    ],
)
def test_an_event_whose_own_kind_is_not_forwarded_is_skipped(kind, events):
    settings = WorkspaceSettings(events=events)
    assert screen(event(kind), settings) == Outcome("skipped", reason="not_forwarded")
    assert screen(event(kind), DEFAULT_SETTINGS) is None


def test_an_event_without_the_consent_category_granted_is_skipped():
    assert screen(event(context=DENIED), ANALYTICS) == Outcome("skipped", reason="no_consent")
    assert screen(event(), ANALYTICS) == Outcome("skipped", reason="no_consent")
    assert screen(event(context=GRANTED), ANALYTICS) is None
    assert screen(event(context=DENIED), DEFAULT_SETTINGS) is None


def test_not_forwarded_is_said_before_no_consent():
    settings = WorkspaceSettings(consent_category="Analytics", events=("identify",))
    assert screen(event("assignment", context=DENIED), settings) == Outcome("skipped", reason="not_forwarded")


# -- which facts --------------------------------------------------------------------------------------------


def test_without_identify_a_track_needs_only_its_own_fact():
    assert [n.slot.fact for n in needs_of(event("assignment", user_id="u"), NO_IDENTIFY)] == [ASSIGN]
    assert needs_of(event("conversion"), NO_IDENTIFY) == ()


def test_a_call_claims_nothing_of_identity_for_a_workspace_without_identify():
    events = [event("assignment", user_id="u"), event("assignment", workspace_id="ws-2", user_id="u")]
    requests = claim_requests(events, {"ws": NO_IDENTIFY})
    assert [(r.slot.workspace_id, r.slot.fact.key, r.probe) for r in requests] == [
        ("ws", "ASSIGN#t-1", False),
        ("ws", "IDENTIFY", True),  # only read: the item holds the visitor's erasure
        ("ws-2", "IDENTIFY", False),
        ("ws-2", "IDENTIFY#U#u", False),
        ("ws-2", "ASSIGN#t-1", False),
    ]


@pytest.mark.parametrize("settings", ALL_SETTINGS, ids=repr)
@pytest.mark.parametrize("sample", EVENTS, ids=lambda e: e.kind)
def test_keys_and_message_ids_never_depend_on_settings(settings, sample):
    default = {n.slot: n.slot.message_id for n in needs_of(sample, DEFAULT_SETTINGS)}
    shaped = {n.slot: n.slot.message_id for n in needs_of(sample, settings)}
    assert shaped.items() <= default.items()  # the same slots and ids, fewer when Identify is not forwarded
    assert all(slot.visitor_id == "v-1" for slot in shaped)


# -- content ------------------------------------------------------------------------------------------------


def test_bridged_anonymous_id_carries_the_visitor_id_as_trait_and_property():
    identify, linking, track = (n.content for n in needs_of(EVENTS[1], BRIDGED))
    assert identify == {
        "type": "identify",
        "anonymousId": AJS,
        "userId": "u-1",
        "traits": {"visitor_id": "v-1"},
        "timestamp": "2026-11-29T12:00:00.000Z",
    }
    assert linking == identify
    assert (track["anonymousId"], track["properties"]["visitor_id"]) == (AJS, "v-1")
    [_, conversion] = (n.content for n in needs_of(EVENTS[2], BRIDGED))
    assert (conversion["anonymousId"], conversion["properties"]["visitor_id"]) == (AJS, "v-1")


def test_without_a_segment_anonymous_id_a_bridged_workspace_sends_as_today():
    plain = event("assignment", user_id="u-1")
    assert [n.content for n in needs_of(plain, BRIDGED)] == [n.content for n in needs_of(plain)]


def test_a_segment_anonymous_id_is_ignored_unless_the_workspace_bridges():
    bridged_event, plain = EVENTS[1], event("assignment", user_id="u-1", test_name="T", variant_name="V")
    assert [n.content for n in needs_of(bridged_event)] == [n.content for n in needs_of(plain)]


def test_spec_names_off_keeps_only_the_products_names():
    [_, _, track] = needs_of(EVENTS[1], WorkspaceSettings(spec_names=False))
    assert track.content["properties"] == {"test_id": "t-1", "variant_id": "a", "test_name": "T", "variant_name": "V"}


def test_a_claim_sends_the_content_its_first_claim_recorded_under_other_settings():
    # Recorded under the defaults; the workspace now bridges and drops spec names: the resend keeps the record.
    later = event("assignment", segment_anonymous_id=AJS)
    recorded = answers_for([later])  # contents as built under the defaults
    plan = plan_call([later], recorded, {"ws": WorkspaceSettings(anonymous_id="segment", spec_names=False)})

    identify, track = plan.events[0].deliveries
    assert identify.message["anonymousId"] == track.message["anonymousId"] == "v-1"
    assert "experiment_id" in track.message["properties"]
    assert [identify.message_id, track.message_id] == [slot(IDENTIFY).message_id, slot(ASSIGN).message_id]


def test_the_largest_message_counts_the_bridged_visitor_id():
    long_id = "v" * 128
    bridged = event(visitor=long_id, segment_anonymous_id="a" * 128)
    plain = event(visitor=long_id)
    assert largest_message(bridged) > largest_message(plain)
    longest_id = "00000000-0000-0000-0000-000000000000"
    sizes = [message_size(with_delivery(n.content, longest_id, {})) for n in needs_of(bridged, BRIDGED)]
    assert largest_message(bridged) == max(sizes)


# -- context ------------------------------------------------------------------------------------------------


def test_the_context_of_each_send_is_shaped_by_the_settings():
    sent = event(context={"ip": "2001:db8:abcd:12::1", "userAgent": "Mozilla/5.0", "locale": "de-DE", **GRANTED})
    settings = {"ws": WorkspaceSettings(ip="truncate", user_agent="drop")}
    plan = plan_call([sent], answers_for([sent], settings=settings), settings)

    contexts = [d.message["context"] for d in plan.events[0].deliveries]
    expected = {
        "ip": "2001:db8:abcd::",
        "locale": "de-DE",
        **GRANTED,
        "library": {"name": "segment-forwarder", "version": "1.0.0"},
    }
    assert contexts == [expected, expected]
    assert sent.context["ip"] == "2001:db8:abcd:12::1"  # the event itself is unchanged


# -- the real Forwarder with in-memory fakes ----------------------------------------------------------------


def forwarder(settings: WorkspaceSettings) -> tuple[Forwarder, MemorySegment, MemoryStore, MemoryConnections]:
    faults = Faults()
    store, segment = MemoryStore(Clock(), faults), MemorySegment(faults)
    connections = MemoryConnections({"ws": Connection("key-ws-0001", "us", settings)})
    return Forwarder(store, connections, segment), segment, store, connections


def test_a_skipped_for_consent_event_claims_nothing_and_a_consented_one_is_the_first():
    forward, segment, store, _ = forwarder(ANALYTICS)

    assert forward.forward([event(context=DENIED)], deadline=1e12) == [Outcome("skipped", reason="no_consent")]
    assert store.items == {} and segment.received == []

    [outcome] = forward.forward([event(context=GRANTED)], deadline=1e12)
    assert outcome.status == "delivered"
    assert outcome.message_ids == (slot(IDENTIFY).message_id, slot(ASSIGN).message_id)
    [again] = forward.forward([event(context=GRANTED)], deadline=1e12)
    assert again.status == "duplicate"
    assert [r.message["type"] for r in segment.received] == ["identify", "track"]


def test_in_one_batch_only_the_consented_events_go_out():
    forward, segment, _, _ = forwarder(ANALYTICS)
    batch = [event(visitor="v-1", context=DENIED), event(visitor="v-2", context=GRANTED), event(visitor="v-3")]

    outcomes = forward.forward(batch, deadline=1e12)

    assert [(o.status, o.reason) for o in outcomes] == [
        ("skipped", "no_consent"),
        ("delivered", ""),
        ("skipped", "no_consent"),
    ]
    assert {r.message["anonymousId"] for r in segment.received} == {"v-2"}


def test_identify_forwarded_again_later_sends_the_visitors_first_identify_then():
    forward, segment, store, connections = forwarder(NO_IDENTIFY)
    assert forward.forward([event(user_id="u-1")], deadline=1e12)[0].status == "delivered"
    assert [r.message["type"] for r in segment.received] == ["track"]
    assert {s.fact.key for s in store.items} == {"ASSIGN#t-1"}

    connections.connect("ws", Connection("key-ws-0001", "us", DEFAULT_SETTINGS))
    [outcome] = forward.forward([event(user_id="u-1")], deadline=1e12)

    assert outcome.status == "delivered"  # the Identify was never sent: sending it now is no resend
    assert outcome.message_ids == (message_id("ws", "v-1", "IDENTIFY"),)
    assert [r.message.get("userId") for r in segment.received[1:]] == ["u-1"]  # the first Identify is the link
    assert store.items[slot(link("u-1"))].status == "SENT"


def test_changing_a_setting_never_resends_a_fact():
    forward, segment, _, connections = forwarder(DEFAULT_SETTINGS)
    assert forward.forward([event(segment_anonymous_id=AJS)], deadline=1e12)[0].status == "delivered"

    changed = WorkspaceSettings("segment", "drop", "drop", None, ("experiment_viewed",), False)
    connections.connect("ws", Connection("key-ws-0001", "us", changed))
    assert forward.forward([event(segment_anonymous_id=AJS)], deadline=1e12) == [Outcome("duplicate")]
    assert len(segment.received) == 2
