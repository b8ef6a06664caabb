"""The dedup core, alone: which facts an event needs, and what each claim answer means for what is sent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from segment_forwarder import LIBRARY
from segment_forwarder.events import Event
from segment_forwarder.facts import (
    IDENTIFY,
    ClaimAnswer,
    ClaimState,
    Fact,
    FactKind,
    Outcome,
    SendResult,
    SettingsOf,
    Slot,
    claim_requests,
    largest_message,
    needs_all,
    needs_of,
    plan_call,
    settle,
)
from segment_forwarder.messages import MAX_MESSAGE_BYTES, message_id, message_size
from segment_forwarder.workspace_settings import WorkspaceSettings

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CLAIMED, SENT, IN_FLIGHT = ClaimState.CLAIMED, ClaimState.SENT, ClaimState.IN_FLIGHT


def event(kind: str = "assignment", visitor: str = "v-1", **body: object) -> Event:
    fields: dict[str, object] = {"workspace_id": "ws", "visitor_id": visitor}
    if kind == "assignment":
        fields.update(test_id="t-1", variant_id="a")
    if kind == "conversion":
        fields.update(conversion_id="c-1", conversion_type="CLICK", origin_url="https://shop.example/")
    fields.update(body)
    return Event.from_body(kind, fields, NOW, delivery_id=f"delivery-{visitor}-{len(body)}")  # type: ignore[arg-type]


def slot(fact: Fact, visitor: str = "v-1") -> Slot:
    return Slot("ws", visitor, fact)


def link(user: str) -> Fact:
    return Fact(FactKind.LINK, user)


ASSIGN = Fact(FactKind.ASSIGNMENT, "t-1")


def answers_for(
    events: list[Event], states: dict[str, ClaimState] | None = None, settings: SettingsOf | None = None
) -> dict[Slot, ClaimAnswer]:
    """Each requested slot answered CLAIMED with its requested content, unless ``states`` (by key) says else."""
    answers = {}
    for request in claim_requests(events, settings):
        state = (states or {}).get(request.slot.fact.key, CLAIMED)
        answers[request.slot] = ClaimAnswer(state, request.content)
    return answers


def ids(plan_events: object) -> list[list[str]]:
    return [[d.message_id for d in e.deliveries] for e in plan_events]  # type: ignore[attr-defined]


# -- which facts ---------------------------------------------------------------------------------------------


def test_each_kind_needs_its_facts_in_the_order_messages_go_out():
    assert [n.slot.fact for n in needs_of(event("identify"))] == [IDENTIFY]
    assert [n.slot.fact for n in needs_of(event("identify", user_id="u"))] == [IDENTIFY, link("u")]
    assert [n.slot.fact for n in needs_of(event("assignment", user_id="u"))] == [IDENTIFY, link("u"), ASSIGN]
    once = event("conversion", one_per_visitor=True)
    assert [n.slot.fact for n in needs_of(once)] == [IDENTIFY, Fact(FactKind.CONVERSION, "c-1")]
    idempotent = event("conversion", event_id="e-9")
    assert [n.slot.fact for n in needs_of(idempotent)] == [IDENTIFY, Fact(FactKind.EVENT, "e-9")]
    assert [n.slot.fact for n in needs_of(event("conversion"))] == [IDENTIFY]


def test_the_primary_facts_are_the_events_purpose():
    assert [n.primary for n in needs_of(event("identify", user_id="u"))] == [True, True]
    assert [n.primary for n in needs_of(event("assignment", user_id="u"))] == [False, False, True]


def test_fact_keys_and_lifetimes():
    assert [f.key for f in (IDENTIFY, link("u-42"), ASSIGN, Fact(FactKind.EVENT, "e"))] == [
        "IDENTIFY",
        "IDENTIFY#U#u-42",
        "ASSIGN#t-1",
        "EVENT#e",
    ]
    assert ASSIGN.per_visitor and not Fact(FactKind.EVENT, "e").per_visitor


def test_a_call_claims_each_distinct_fact_once_with_the_first_events_content():
    first, second = event(variant_id="a"), event(variant_id="b", user_id="u")

    requests = claim_requests([first, second])

    assert [r.slot.fact for r in requests] == [IDENTIFY, ASSIGN, link("u")]
    assert requests[1].content["properties"]["variant_id"] == "a"


# -- what is sent ------------------------------------------------------------------------------------------


def test_a_new_visitor_gets_its_identify_before_the_track():
    new = event()
    plan = plan_call([new], answers_for([new]))

    [deliveries] = [e.deliveries for e in plan.events]
    assert [d.message["type"] for d in deliveries] == ["identify", "track"]
    assert [d.message_id for d in deliveries] == [slot(IDENTIFY).message_id, slot(ASSIGN).message_id]
    assert deliveries[0].message["messageId"] == message_id("ws", "v-1", "IDENTIFY")


def test_a_first_identify_with_a_user_id_is_the_link_too():
    new = event("identify", user_id="u-42")
    plan = plan_call([new], answers_for([new]))

    [delivery] = plan.events[0].deliveries
    assert delivery.message["userId"] == "u-42"
    assert delivery.message_id == slot(IDENTIFY).message_id
    assert delivery.slots == (slot(IDENTIFY), slot(link("u-42")))


def test_a_link_under_a_recorded_anonymous_identify_is_its_own_message_under_its_own_id():
    # The Identify was first recorded without a user id (a crashed attempt): reclaimed now by an event with u-42.
    with_user = event("identify", user_id="u-42")
    answers = answers_for([with_user])
    answers[slot(IDENTIFY)] = ClaimAnswer(CLAIMED, {"type": "identify", "anonymousId": "v-1", "timestamp": "T0"})

    plan = plan_call([with_user], answers)

    first, linking = plan.events[0].deliveries
    assert (first.message_id, first.message.get("userId"), first.message["timestamp"]) == (
        slot(IDENTIFY).message_id,
        None,
        "T0",
    )
    assert (linking.message_id, linking.message["userId"]) == (slot(link("u-42")).message_id, "u-42")


def test_a_link_already_carried_by_a_sent_first_identify_is_marked_without_a_send():
    known = event("identify", user_id="u-42")
    answers = answers_for([known], {"IDENTIFY": SENT})
    answers[slot(IDENTIFY)] = ClaimAnswer(SENT, {"type": "identify", "anonymousId": "v-1", "userId": "u-42"})

    plan = plan_call([known], answers)

    assert plan.events[0].deliveries == ()
    assert plan.mark_now == ((slot(link("u-42")), slot(IDENTIFY).message_id),)
    assert settle(plan, {}).outcomes == (Outcome("duplicate"),)


def test_a_covered_link_needed_by_two_events_of_a_call_is_marked_once():
    # A batch write may not name an item twice: DynamoDB refuses the whole request.
    first, second = event("conversion", user_id="u-42"), event("conversion", user_id="u-42")
    answers = answers_for([first, second], {"IDENTIFY": SENT})
    answers[slot(IDENTIFY)] = ClaimAnswer(SENT, {"type": "identify", "anonymousId": "v-1", "userId": "u-42"})

    plan = plan_call([first, second], answers)

    assert plan.mark_now == ((slot(link("u-42")), slot(IDENTIFY).message_id),)


def test_a_link_whose_identify_is_in_flight_elsewhere_is_left_to_its_claimer_and_released():
    follower = event("assignment", user_id="u-42")
    answers = answers_for([follower])
    answers[slot(IDENTIFY)] = ClaimAnswer(IN_FLIGHT, {"type": "identify", "anonymousId": "v-1", "userId": "u-42"})

    plan = plan_call([follower], answers)

    assert [d.message["type"] for d in plan.events[0].deliveries] == ["track"]
    assert plan.release_now == (slot(link("u-42")),)


def test_a_repeat_in_the_same_call_still_sends_its_new_user_link():
    # Finding 1: {v-1, t-1, a} and {v-1, t-1, a, user_id: u-42} in one batch.
    first, repeat = event(), event(user_id="u-42")
    plan = plan_call([first, repeat], answers_for([first, repeat]))

    assert ids(plan.events) == [
        [slot(IDENTIFY).message_id, slot(ASSIGN).message_id],
        [slot(link("u-42")).message_id],
    ]
    assert set(plan.events[1].depends_on) == {slot(IDENTIFY).message_id, slot(ASSIGN).message_id}
    delivered = {m: SendResult(True) for e in plan.events for m in (d.message_id for d in e.deliveries)}
    assert [o.status for o in settle(plan, delivered).outcomes] == ["delivered", "delivered"]


def test_a_later_event_of_the_call_follows_the_delivery_it_depends_on():
    first, repeat = event(), event(variant_id="b")
    plan = plan_call([first, repeat], answers_for([first, repeat]))
    assert plan.events[1].deliveries == ()

    failed = {d.message_id: SendResult(False, True, "segment answered 503") for d in plan.events[0].deliveries}
    settled = settle(plan, failed)

    assert [o.status for o in settled.outcomes] == ["retry", "retry"]
    assert set(settled.releases) == {slot(IDENTIFY), slot(ASSIGN)}
    ok = {d.message_id: SendResult(True) for d in plan.events[0].deliveries}
    assert [o.status for o in settle(plan, ok).outcomes] == ["delivered", "duplicate"]


def test_a_reclaim_sends_the_recorded_content_not_the_events():
    # Finding 3: the first attempt recorded variant a; an assignment to b reclaims after a failed send.
    later = event(variant_id="b")
    answers = answers_for([later])
    recorded = {**answers[slot(ASSIGN)].content, "properties": {"variant_id": "a", "test_id": "t-1"}}
    answers[slot(ASSIGN)] = ClaimAnswer(CLAIMED, recorded)

    track = plan_call([later], answers).events[0].deliveries[-1]

    assert track.message["properties"]["variant_id"] == "a"


def test_an_event_whose_own_fact_is_in_flight_elsewhere_is_retried():
    busy = event()
    plan = plan_call([busy], answers_for([busy], {"ASSIGN#t-1": IN_FLIGHT}))

    assert plan.events[0].verdict == Outcome("retry", reason="in_flight")
    assert plan.release_now == (slot(IDENTIFY),)


def test_an_identify_in_flight_elsewhere_does_not_hold_the_track():
    track = event()
    plan = plan_call([track], answers_for([track], {"IDENTIFY": IN_FLIGHT}))

    assert [d.message["type"] for d in plan.events[0].deliveries] == ["track"]


@pytest.mark.parametrize(
    ("state", "expected"),
    [(ClaimState.UNAVAILABLE, "retry"), (ClaimState.INVALID, "rejected")],
)
def test_a_claim_that_failed_decides_the_event(state, expected):
    failing = event()
    answers = answers_for([failing])
    answers[slot(IDENTIFY)] = ClaimAnswer(state, reason="SomeError")

    plan = plan_call([failing], answers)

    assert plan.events[0].verdict is not None and plan.events[0].verdict.status == expected
    assert plan.release_now == (slot(ASSIGN),)


def test_a_conversion_without_a_fact_is_sent_under_its_delivery_id_every_time():
    plain = event("conversion")
    answers = answers_for([plain], {"IDENTIFY": SENT})

    plan = plan_call([plain], answers)

    assert [d.message_id for d in plan.events[0].deliveries] == [plain.delivery_id]
    assert plan.events[0].deliveries[0].slots == ()


def test_settle_marks_what_segment_accepted_and_releases_what_it_refused():
    new = event()
    plan = plan_call([new], answers_for([new]))
    identify_id, track_id = (d.message_id for d in plan.events[0].deliveries)

    settled = settle(plan, {identify_id: SendResult(True), track_id: SendResult(False, False, "segment answered 400")})

    assert settled.outcomes == (Outcome("rejected", reason="segment answered 400"),)
    assert settled.marks == ((slot(IDENTIFY), identify_id),)
    assert settled.releases == (slot(ASSIGN),)


def test_largest_message_measures_the_events_own_messages_with_its_context():
    small = event()
    large = event(context={"page": {"title": "x" * 5000}})

    assert largest_message(small) < 1000 < 5000 < largest_message(large)


# -- a recorded content and this event's context over Segment's limit together --------------------------------

CONSENT = {"categoryPreferences": {"Analytics": True, "Advertising": False}}
ESSENTIALS = {"ip": "203.0.113.7", "userAgent": "Mozilla/5.0", "locale": "de-DE", "timezone": "Europe/Berlin"}


def _over_the_limit_together(context: dict[str, object], settings: SettingsOf | None = None) -> dict[str, object]:
    """The Experiment Viewed of a fact whose content another event recorded with a 20 KB name, sent by an event
    whose own messages are within the limit with its 16 KB context, but not with that content."""
    sender = event(context=context)
    answers = answers_for([sender], settings=settings)
    recorded = answers[slot(ASSIGN)].content
    assert recorded is not None
    answers[slot(ASSIGN)] = ClaimAnswer(CLAIMED, {**recorded, "properties": {"test_name": "n" * 20_000}})
    assert largest_message(sender) <= MAX_MESSAGE_BYTES

    track = plan_call([sender], answers, settings).events[0].deliveries[-1].message

    assert track["properties"] == {"test_name": "n" * 20_000}  # the recorded content, whole
    return track


def test_over_the_limit_together_the_context_keeps_consent_library_and_the_small_essentials():
    track = _over_the_limit_together({**ESSENTIALS, "consent": CONSENT, "page": {"title": "p" * 16_000}})

    assert track["context"] == {"consent": CONSENT, **ESSENTIALS, "library": LIBRARY}  # page goes, nothing else
    assert message_size(track) <= MAX_MESSAGE_BYTES


def test_the_fallback_context_is_shaped_by_the_settings_like_the_whole_one():
    settings = {"ws": WorkspaceSettings(ip="truncate", user_agent="drop")}
    context = {**ESSENTIALS, "consent": CONSENT, "page": {"title": "p" * 16_000}}

    track = _over_the_limit_together(context, settings)

    assert track["context"] == {
        "consent": CONSENT,
        "ip": "203.0.113.0",
        "locale": "de-DE",
        "timezone": "Europe/Berlin",
        "library": LIBRARY,
    }


def test_the_fallback_keeps_an_essential_only_while_the_message_fits():
    # A 13 KB user agent does not fit beside the recorded content; the smaller essentials after it still do.
    track = _over_the_limit_together({**ESSENTIALS, "consent": CONSENT, "userAgent": "u" * 13_000})

    essentials = {k: v for k, v in ESSENTIALS.items() if k != "userAgent"}
    assert track["context"] == {"consent": CONSENT, **essentials, "library": LIBRARY}
    assert message_size(track) <= MAX_MESSAGE_BYTES


def test_the_fallback_never_sends_without_the_consent_it_was_given():
    # Consent so large it cannot fit beside the recorded content: it is sent all the same (Segment then refuses
    # the message, which parks the event) rather than sent without it.
    consent = {"categoryPreferences": {f"category-{i:05d}": True for i in range(600)}}
    track = _over_the_limit_together({"consent": consent})

    assert track["context"] == {"consent": consent, "library": LIBRARY}


# -- when an event is complete ---------------------------------------------------------------------------------


def test_the_plan_carries_each_events_facts_and_says_who_needs_the_marks():
    sent, other = event(), event(visitor="v-2")
    answers = answers_for([sent, other], {"IDENTIFY": SENT})
    answers[slot(ASSIGN, "v-2")] = ClaimAnswer(SENT, {})
    plan = plan_call([sent, other], answers)

    assert [e.needs for e in plan.events] == [
        (slot(IDENTIFY), slot(ASSIGN)),
        (slot(IDENTIFY, "v-2"), slot(ASSIGN, "v-2")),
    ]
    delivered = {d.message_id: SendResult(True) for e in plan.events for d in e.deliveries}
    settled = settle(plan, delivered)
    assert settled.marks == ((slot(ASSIGN), slot(ASSIGN).message_id),)
    assert (
        settled.final(marked=True)
        == settled.outcomes
        == (
            Outcome("delivered", (slot(ASSIGN).message_id,)),
            Outcome("duplicate"),
        )
    )
    # the marks could not be written: the event that delivered a fact comes back; the other needed no mark
    assert settled.final(marked=False) == (
        Outcome("delivered", (slot(ASSIGN).message_id,), complete=False),
        Outcome("duplicate"),
    )


def test_an_event_that_needs_a_fact_another_event_of_the_call_delivered_is_not_complete_without_its_mark():
    first, repeat = event(), event(variant_id="b")
    plan = plan_call([first, repeat], answers_for([first, repeat]))
    ok = {d.message_id: SendResult(True) for d in plan.events[0].deliveries}

    assert [o.complete for o in settle(plan, ok).final(marked=False)] == [False, False]


def test_the_needs_the_caller_built_are_the_ones_planned():
    plain = event(user_id="u")
    needs = needs_all([plain], {"ws": WorkspaceSettings(spec_names=False)})
    answers = {r.slot: ClaimAnswer(CLAIMED, r.content) for r in claim_requests([plain], needs=needs)}

    [_, track] = plan_call([plain], answers, needs=needs).events[0].deliveries
    [_, default] = plan_call([plain], answers_for([plain])).events[0].deliveries

    assert "experiment_id" not in track.message["properties"]  # built once, under the settings given
    assert "experiment_id" in default.message["properties"]
    assert needs == (needs_of(plain, WorkspaceSettings(spec_names=False)),)
