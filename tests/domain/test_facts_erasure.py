"""The dedup core after an erase: which events are dropped, which messageIds a new life sends under, what is
forgotten rather than released, and when the visitor's IDENTIFY must be read again after the claims."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from segment_forwarder.events import Event
from segment_forwarder.facts import (
    ERASE_IN_PROGRESS,
    ERASED,
    IDENTIFY,
    ClaimAnswer,
    ClaimState,
    SendResult,
    claim_requests,
    plan_call,
    settle,
    to_confirm,
)
from segment_forwarder.messages import message_id
from segment_forwarder.workspace_settings import WorkspaceSettings
from tests.support.fakes import Clock, Faults, MemoryConnections, MemorySegment, MemoryStore

from .test_facts import ASSIGN, NOW, answers_for, event, ids, link, slot

ASSIGN_2 = replace(ASSIGN, name="t-2")
ERASED_AT = int((NOW + timedelta(minutes=1)).timestamp() * 1000)  # one minute after the events' receipt


def received_after(e: Event) -> Event:
    return replace(e, received_ms=ERASED_AT + 1)


def test_an_event_received_before_the_erase_is_dropped_and_what_it_claimed_is_forgotten():
    before = event("assignment", user_id="u")
    answers = answers_for([before])
    answers[slot(IDENTIFY)] = ClaimAnswer(ClaimState.ERASED, generation=1, erased_at_ms=ERASED_AT)

    plan = plan_call([before], answers)

    assert plan.events[0].verdict == ERASED and plan.events[0].deliveries == ()
    assert set(plan.forget_now) == {slot(link("u")), slot(ASSIGN)}  # deleted: nothing of it stays recorded
    assert plan.release_now == ()
    assert settle(plan, {}).outcomes == (ERASED,)


def test_the_first_event_after_an_erase_is_a_first_sighting_under_the_new_generations_ids():
    after = received_after(event("assignment"))
    answers = {
        request.slot: ClaimAnswer(ClaimState.CLAIMED, request.content, generation=2, erased_at_ms=ERASED_AT)
        for request in claim_requests([after])
    }

    plan = plan_call([after], answers)

    assert ids(plan.events) == [[message_id("ws", "v-1", "IDENTIFY", 2), message_id("ws", "v-1", "ASSIGN#t-1", 2)]]
    assert message_id("ws", "v-1", "IDENTIFY", 2) != message_id("ws", "v-1", "IDENTIFY")
    settled = settle(plan, {d.message_id: SendResult(True) for d in plan.events[0].deliveries})
    assert settled.generation(slot(ASSIGN)) == 2  # marked SENT in the visitor's new generation


def test_in_one_batch_the_retry_from_before_is_dropped_and_the_event_from_after_is_sent():
    before, after = event("assignment"), received_after(event("assignment", test_id="t-2"))
    answers = answers_for([before, after])
    identity = answers[slot(IDENTIFY)]
    answers[slot(IDENTIFY)] = replace(identity, generation=1, erased_at_ms=ERASED_AT)  # claimed by `after`

    plan = plan_call([before, after], answers)

    assert plan.events[0].verdict == ERASED
    # the new life's IDENTIFY recorded the dropped event's content (the first event that needs a fact gives it):
    # nothing is sent, the claims are undone (IDENTIFY back to its tombstone), and the later event comes back
    assert plan.events[1].verdict == ERASE_IN_PROGRESS
    assert set(plan.forget_now) == {slot(IDENTIFY), slot(ASSIGN)} and plan.release_now == (slot(ASSIGN_2),)


def test_the_later_event_alone_is_then_a_first_sighting_with_its_own_content():
    after = received_after(event("assignment", test_id="t-2"))
    answers = answers_for([after])
    answers[slot(IDENTIFY)] = replace(answers[slot(IDENTIFY)], generation=1, erased_at_ms=ERASED_AT)

    plan = plan_call([after], answers)

    assert [d.message["type"] for d in plan.events[0].deliveries] == ["identify", "track"]
    assert plan.events[0].deliveries[1].message["properties"]["test_id"] == "t-2"


def test_a_fact_found_sent_in_an_older_generation_sends_nothing_and_the_event_comes_back():
    after = received_after(event("assignment"))
    answers = answers_for([after], {"ASSIGN#t-1": ClaimState.SENT})
    answers[slot(IDENTIFY)] = ClaimAnswer(ClaimState.CLAIMED, {}, generation=1, erased_at_ms=ERASED_AT)

    plan = plan_call([after], answers)

    assert plan.events[0].verdict == ERASE_IN_PROGRESS  # ASSIGN#t-1 SENT in generation 0: not deleted yet
    assert plan.release_now == (slot(IDENTIFY),)  # IDENTIFY is released, never forgotten


def test_an_erase_seen_by_the_read_after_the_claims_drops_the_event():
    e = event("assignment")
    answers = answers_for([e], {"IDENTIFY": ClaimState.SENT})
    assert to_confirm(answers) == [slot(IDENTIFY)]  # ASSIGN claimed while the call does not hold IDENTIFY
    confirmed = {slot(IDENTIFY): ClaimAnswer(ClaimState.ERASED, generation=1, erased_at_ms=ERASED_AT)}

    plan = plan_call([e], answers, confirmed=confirmed)

    assert plan.events[0].verdict == ERASED and plan.forget_now == (slot(ASSIGN),)


def test_no_read_after_the_claims_when_the_call_holds_identify_or_claimed_nothing():
    e = event("assignment")
    assert to_confirm(answers_for([e])) == []  # IDENTIFY claimed by this call: an erase cannot take it
    assert to_confirm(answers_for([e], {"IDENTIFY": ClaimState.SENT, "ASSIGN#t-1": ClaimState.SENT})) == []


def forwarder(settings: WorkspaceSettings | None = None):
    from segment_forwarder.connections import Connection
    from segment_forwarder.forwarding import Forwarder

    clock, faults = Clock(NOW.timestamp()), Faults()
    store, segment = MemoryStore(clock, faults), MemorySegment(faults)
    connection = Connection("key", "us", settings or WorkspaceSettings())
    return Forwarder(store, MemoryConnections({"ws": connection}), segment), store, segment


def test_forwarder_after_an_erase_drops_earlier_events_and_sends_later_ones_as_new(monkeypatch):
    fwd, store, segment = forwarder()
    first = fwd.forward([event("assignment")], deadline=1e18)[0]
    store.erase("ws", "v-1", now_ms=ERASED_AT)

    assert fwd.forward([event("assignment")], deadline=1e18) == [ERASED]  # a retry received before the erase
    again = fwd.forward([received_after(event("assignment"))], deadline=1e18)[0]

    assert again.status == "delivered" and not set(again.message_ids) & set(first.message_ids)
    assert [r.message["type"] for r in segment.received] == ["identify", "track", "identify", "track"]
    assert fwd.forward([received_after(event("assignment"))], deadline=1e18)[0].status == "duplicate"


def test_forwarder_in_a_workspace_without_identify_reads_the_erasure_and_sends_under_new_ids():
    fwd, store, segment = forwarder(WorkspaceSettings(events=("experiment_viewed",)))
    first = fwd.forward([event("assignment")], deadline=1e18)[0]
    store.erase("ws", "v-1", now_ms=ERASED_AT)

    assert fwd.forward([event("assignment")], deadline=1e18) == [ERASED]
    again = fwd.forward([received_after(event("assignment"))], deadline=1e18)[0]

    assert again.status == "delivered" and again.message_ids != first.message_ids
    assert [r.message["type"] for r in segment.received] == ["track", "track"]


def test_forwarder_a_batch_with_a_dropped_retry_and_a_later_event_records_nothing_of_the_retry():
    fwd, store, segment = forwarder()
    fwd.forward([event("assignment", user_id="u-old")], deadline=1e18)
    store.erase("ws", "v-1", now_ms=ERASED_AT)
    segment.received.clear()
    retry, later = event("assignment", user_id="u-old"), received_after(event("assignment", test_id="t-2"))

    assert [o.reason for o in fwd.forward([retry, later], deadline=1e18)] == ["erased", "erase_in_progress"]
    assert segment.received == []
    assert all("u-old" not in str(item.content) for item in store.items.values())
    assert store.items[slot(IDENTIFY)].status == ""  # the tombstone again

    assert fwd.forward([later], deadline=1e18)[0].status == "delivered"  # it comes back, alone
    assert [r.message.get("userId") for r in segment.received] == [None, None]
