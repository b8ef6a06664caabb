"""The soak's invariant evaluator (soak/invariants.py) on crafted inputs: every rule is shown to fire (positive
controls) and to stay quiet on what the contract allows (repeats, concurrency, parked records, disconnections).

Messages are written here by hand, as Segment receives them from the product (an identify, then Experiment Viewed
or Conversion Triggered, each under its messageId), not built with the product's code.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest

from soak import invariants as inv
from soak.invariants import Connection, Parked, Request, evaluate

KEY_US, KEY_EU, KEY_NEW = "key-demo-us", "key-demo-eu", "key-demo-new"
CONNECTIONS = [Connection("demo", KEY_US, "us"), Connection("demo-eu", KEY_EU, "eu")]
T1, T2 = "2026-01-01T10:00:00.000Z", "2026-01-01T10:00:05.000Z"


def record(message: dict[str, Any], key: str = KEY_US, region: str = "us", **envelope: Any) -> dict[str, Any]:
    """One sink record as GET /events gives it."""
    return {
        "region": region,
        "write_key": key,
        "received_at": "2026-01-01T10:00:00.100Z",
        "message": {**message, "context": {"library": {"name": "x"}}, "sentAt": T2, **envelope},
    }


def identify(mid: str, visitor: str = "v1", user: str | None = None, ts: str = T1) -> dict[str, Any]:
    message = {"type": "identify", "messageId": mid, "anonymousId": visitor, "timestamp": ts}
    return message | ({"userId": user} if user else {})


def viewed(mid: str, visitor: str = "v1", test: str = "t1", variant: str = "a", ts: str = T1, **extra: Any) -> dict:
    properties = {"test_id": test, "variant_id": variant, "experiment_id": test, "variation_id": variant}
    message = {"type": "track", "event": "Experiment Viewed", "messageId": mid, "anonymousId": visitor}
    return message | {"properties": properties, "timestamp": ts} | extra


def converted(
    mid: str, visitor: str = "v1", conversion: str = "c1", ts: str = T1, url: str = "https://x.test/"
) -> dict:
    properties = {"conversion_id": conversion, "conversion_type": "CLICK", "origin_url": url}
    message = {"type": "track", "event": "Conversion Triggered", "messageId": mid, "anonymousId": visitor}
    return message | {"properties": properties, "timestamp": ts}


def assignment(variant: str = "a", visitor: str = "v1", ts: str | None = T1, ws: str = "demo", **extra: Any) -> dict:
    body = {"workspace_id": ws, "visitor_id": visitor, "test_id": "t1", "variant_id": variant, **extra}
    return body | ({"timestamp": ts} if ts else {})


def conversion(visitor: str = "v1", ts: str | None = T1, url: str = "https://x.test/", **extra: Any) -> dict:
    body = {"workspace_id": "demo", "visitor_id": visitor, "conversion_id": "c1", "conversion_type": "CLICK"}
    return body | {"origin_url": url, **extra} | ({"timestamp": ts} if ts else {})


def rules(result: inv.Evaluation) -> list[tuple[str, str]]:
    return sorted((v.rule, v.fact) for v in result.violations)


def test_a_delivered_assignment_with_its_two_messages_breaks_nothing():
    request = Request("assignment", assignment(), "delivered", 1.0, 1.2, ("m-id", "m-ev"))

    result = evaluate([request], [record(identify("m-id")), record(viewed("m-ev"))], CONNECTIONS)

    assert result.violations == []
    assert (result.deliveries, result.message_ids, result.repeats, result.facts_required) == (2, 2, 0, 2)


def test_a_repeat_with_the_same_content_is_counted_not_a_violation_even_with_another_envelope():
    request = Request("assignment", assignment(), "delivered", 1.0, 1.2, ("m-id", "m-ev"))
    sink = [record(identify("m-id")), record(viewed("m-ev")), record(viewed("m-ev"), sentAt=T1, context={"ip": "x"})]

    result = evaluate([request], sink, CONNECTIONS)

    assert result.violations == []
    assert result.repeats == 1


def test_one_message_id_with_two_contents_is_reported():
    requests = [Request("assignment", assignment(), "delivered", 1.0, 1.2, ("m-id", "m-ev"))]
    sink = [record(identify("m-id")), record(viewed("m-ev")), record(viewed("m-ev", ts=T2))]

    result = evaluate(requests, sink, CONNECTIONS)

    assert [(v.rule, v.message_ids) for v in result.violations if v.rule == inv.CONTENTS] == [(inv.CONTENTS, ("m-ev",))]


def test_a_fact_of_an_accepted_request_that_never_arrived_is_lost():
    requests = [Request("assignment", assignment(), "queued", 1.0, 1.2)]

    assert rules(evaluate(requests, [record(identify("m-id"))], CONNECTIONS)) == [(inv.LOST, "demo/v1 assign t1")]
    assert rules(evaluate(requests, [record(viewed("m-ev"))], CONNECTIONS)) == [(inv.LOST, "demo/v1 identify")]


def test_a_fact_under_two_message_ids_is_reported_with_both():
    requests = [Request("assignment", assignment(), "delivered", 1.0, 1.2, ("m-id", "m-ev"))]
    sink = [record(identify("m-id")), record(viewed("m-ev")), record(viewed("m-ev2"))]

    result = evaluate(requests, sink, CONNECTIONS)

    assert [(v.rule, v.fact, v.message_ids) for v in result.violations] == [
        (inv.SPLIT, "demo/v1 assign t1", ("m-ev", "m-ev2"))
    ]


def test_a_link_and_a_first_identify_that_already_carried_the_user_is_one_link_under_two_ids():
    body = {"workspace_id": "demo", "visitor_id": "v1", "user_id": "u1", "timestamp": T1}
    requests = [Request("identify", body, "queued", 1.0, 4.0), Request("identify", body, "duplicate", 5.0, 5.1)]
    sink = [record(identify("m-first", user="u1")), record(identify("m-link", user="u1"))]

    assert rules(evaluate(requests, sink, CONNECTIONS)) == [(inv.SPLIT, "demo/v1 link u1")]


def test_a_first_identify_that_carries_the_user_is_also_its_link():
    with_user = {"workspace_id": "demo", "visitor_id": "v1", "user_id": "u1", "timestamp": T1}
    anonymous = {"workspace_id": "demo", "visitor_id": "v1", "timestamp": T2}
    requests = [
        Request("identify", with_user, "delivered", 1.0, 1.1, ("m-first",)),
        Request("identify", anonymous, "duplicate", 2.0, 2.1),
    ]

    assert evaluate(requests, [record(identify("m-first", user="u1"))], CONNECTIONS).violations == []


def test_an_anonymous_first_identify_then_one_link_per_user():
    anonymous = {"workspace_id": "demo", "visitor_id": "v1", "timestamp": T1}
    requests = [
        Request("identify", anonymous, "delivered", 1.0, 1.1, ("m-first",)),
        Request("identify", anonymous | {"user_id": "u1", "timestamp": T2}, "delivered", 2.0, 2.1, ("m-u1",)),
        Request("identify", anonymous | {"user_id": "u2", "timestamp": T2}, "queued", 3.0, 3.1),
    ]
    sink = [record(identify("m-first")), record(identify("m-u1", user="u1", ts=T2))]

    assert rules(evaluate(requests, sink, CONNECTIONS)) == [(inv.LOST, "demo/v1 link u2")]
    sink.append(record(identify("m-u2", user="u2", ts=T2)))
    assert evaluate(requests, sink, CONNECTIONS).violations == []


def test_the_slow_segment_identity_defect_shows_two_contents_and_a_link_under_two_ids():
    # The first attempt's Identify (with the user) reached Segment after the HTTP budget; a later attempt
    # re-sent the first-seen Identify without the user under the same id, and the link under a second id.
    first = {"workspace_id": "demo", "visitor_id": "v1", "user_id": "u1", "timestamp": T1}
    other = {"workspace_id": "demo", "visitor_id": "v1", "timestamp": T2}
    requests = [Request("identify", first, "queued", 1.0, 4.0), Request("identify", other, "delivered", 2.0, 2.5)]
    sink = [
        record(identify("m-first", user="u1")),
        record(identify("m-first", ts=T2)),
        record(identify("m-link", user="u1")),
    ]

    result = evaluate(requests, sink, CONNECTIONS)

    assert rules(result) == [(inv.SPLIT, "demo/v1 link u1"), (inv.CONTENTS, "identify anon=v1 user=u1")]


def test_a_link_carried_only_by_a_dropped_repeat_of_the_first_identify_is_lost():
    # The first-seen Identify arrived without user; a later event re-sent it under the same id with its user:
    # Segment keeps the first record and drops the second, so the visitor is never linked to u1.
    anonymous = {"workspace_id": "demo", "visitor_id": "v1", "timestamp": T1}
    requests = [
        Request("identify", anonymous, "queued", 1.0, 4.0),
        Request("identify", anonymous | {"user_id": "u1", "timestamp": T2}, "delivered", 5.0, 5.5, ("m-first",)),
    ]
    sink = [record(identify("m-first")), record(identify("m-first", user="u1", ts=T2))]

    result = evaluate(requests, sink, CONNECTIONS)

    assert rules(result) == [(inv.LOST, "demo/v1 link u1"), (inv.CONTENTS, "identify anon=v1 user=-")]


def test_a_message_for_an_event_answered_skipped_is_reported_unless_an_attempt_was_uncertain():
    body = {"workspace_id": "demo", "visitor_id": "v1", "timestamp": T1}
    sink = [record(identify("m1"))]

    skipped = evaluate([Request("identify", body, "skipped", 1.0, 1.1)], sink, CONNECTIONS)
    uncertain = evaluate([Request("identify", body, "skipped", 1.0, 1.1, uncertain_attempts=1)], sink, CONNECTIONS)
    nothing_sent = evaluate([Request("identify", body, "skipped", 1.0, 1.1)], [], CONNECTIONS)

    assert rules(skipped) == [(inv.SKIPPED_SENT, "demo/v1 identify")]
    assert uncertain.violations == []
    assert nothing_sent.violations == []


def test_a_message_nobody_asked_for_is_unexpected():
    result = evaluate([], [record(identify("m1", visitor="ghost")), record(viewed("m2", visitor="ghost"))], CONNECTIONS)

    assert [v.rule for v in result.violations] == [inv.UNEXPECTED, inv.UNEXPECTED]


def test_keys_regions_and_workspaces_are_checked_per_record():
    request = Request("identify", {"workspace_id": "demo", "visitor_id": "v1", "timestamp": T1}, "delivered", 1, 2)
    sink = [
        record(identify("m1")),
        record(identify("m1"), key="someone-elses-key"),
        record(identify("m1"), region="eu"),  # demo's key, EU host
        record(identify("m1"), key=KEY_EU, region="eu"),  # the same messageId with demo-eu's key
    ]

    result = evaluate([request], sink, CONNECTIONS)

    assert sorted(v.rule for v in result.violations) == [inv.TWO_WORKSPACES, inv.UNKNOWN_KEY, inv.WRONG_REGION]


def test_a_new_key_or_region_of_the_workspace_is_accepted_for_its_messages():
    connections = [*CONNECTIONS, Connection("demo", KEY_NEW, "eu", at=10.0)]
    request = Request("identify", {"workspace_id": "demo", "visitor_id": "v1", "timestamp": T1}, "delivered", 11, 12)

    result = evaluate([request], [record(identify("m1"), key=KEY_NEW, region="eu")], connections)

    assert result.violations == []


def test_the_variant_must_be_the_first_one():
    a = Request("assignment", assignment("a"), "delivered", 1.0, 2.0, ("m-id", "m-ev"))
    later_b = Request("assignment", assignment("b", ts=T2), "duplicate", 3.0, 3.1)
    concurrent_b = Request("assignment", assignment("b", ts=T2), "duplicate", 1.5, 3.1)
    first_a = [record(identify("m-id")), record(viewed("m-ev", variant="a"))]
    sent_b = [record(identify("m-id")), record(viewed("m-ev", variant="b", ts=T2))]

    assert evaluate([a, later_b], first_a, CONNECTIONS).violations == []
    assert rules(evaluate([a, later_b], sent_b, CONNECTIONS)) == [(inv.NOT_FIRST, "demo/v1 assign t1")] * 2
    assert evaluate([a, concurrent_b], sent_b, CONNECTIONS).violations == []


def test_a_recorded_first_variant_may_travel_with_the_resending_events_user_and_time():
    a = Request("assignment", assignment("a", variant_name="A"), "failed", 1.0, uncertain_attempts=1)
    b = Request("assignment", assignment("b", ts=T2, user_id="u1"), "delivered", 2.0, 2.5, ("m-link", "m-ev"))
    message = viewed("m-ev", variant="a", ts=T2, userId="u1")
    sink = [record(identify("m-link", user="u1", ts=T2)), record(message)]

    assert evaluate([a, b], sink, CONNECTIONS).violations == []
    mixed = viewed("m-ev", variant="a", ts=T1, userId="u1")  # A's time with B's user: no single event sent that
    assert rules(evaluate([a, b], [sink[0], record(mixed)], CONNECTIONS)) == [(inv.MISMATCH, "demo/v1 assign t1")]


def test_a_value_no_request_gave_is_a_mismatch():
    request = Request("assignment", assignment("a"), "delivered", 1.0, 2.0, ("m-id", "m-ev"))
    sink = [record(identify("m-id")), record(viewed("m-ev", variant="z"))]

    assert rules(evaluate([request], sink, CONNECTIONS)) == [(inv.MISMATCH, "demo/v1 assign t1")]


def test_a_one_per_visitor_conversion_is_one_message_however_often_it_is_sent():
    body = conversion(one_per_visitor=True)
    requests = [
        Request("conversion", body, "delivered", 1, 2, ("m-id", "m-c")),
        Request("conversion", body, "duplicate"),
    ]
    once = [record(identify("m-id")), record(converted("m-c"))]

    assert evaluate(requests, once, CONNECTIONS).violations == []
    assert rules(evaluate(requests, [*once, record(converted("m-c2"))], CONNECTIONS)) == [
        (inv.SPLIT, "demo/v1 conv c1")
    ]


def test_an_event_id_makes_a_conversion_one_message():
    body = conversion(event_id="e1")
    requests = [Request("conversion", body, "consumed", 1), Request("conversion", body, "consumed", 2)]
    sink = [record(identify("m-id")), record(converted("m-c")), record(converted("m-c2"))]

    assert rules(evaluate(requests, sink, CONNECTIONS)) == [(inv.SPLIT, "demo/v1 event e1")]


def test_a_plain_conversion_is_one_message_per_call_and_more_only_after_uncertain_attempts():
    body = conversion()
    two_calls = [Request("conversion", body, "delivered", 1, 2, label="r1"), Request("conversion", body, "queued", 3)]
    identified = [record(identify("m-id"))]
    one = [*identified, record(converted("m1"))]
    two = [*one, record(converted("m2"))]
    three = [*two, record(converted("m3"))]

    assert evaluate(two_calls, two, CONNECTIONS).violations == []
    assert [v.rule for v in evaluate(two_calls, one, CONNECTIONS).violations] == [inv.LOST]
    assert [v.rule for v in evaluate(two_calls, three, CONNECTIONS).violations] == [inv.SPLIT]
    retried = [Request("conversion", body, "delivered", 1, 2, uncertain_attempts=1), two_calls[1]]
    assert evaluate(retried, three, CONNECTIONS).violations == []
    gave_up = [Request("conversion", body, "failed", 1, uncertain_attempts=2)]  # two attempts, no answer
    assert evaluate(gave_up, [], CONNECTIONS).violations == []
    assert evaluate(gave_up, two, CONNECTIONS).violations == []
    assert [v.rule for v in evaluate(gave_up, three, CONNECTIONS).violations] == [inv.SPLIT]


def test_a_plain_conversion_message_belongs_to_a_call_made_before_its_delivered_answer():
    body = conversion()
    later = Request("conversion", body, "queued", 3.0, 3.2, label="later")
    earlier = Request("conversion", body, "delivered", 1.0, 2.0, ("m1",), label="earlier")
    sink = [record(identify("m-id")), record(converted("m2")), record(converted("m1"))]

    assert evaluate([later, earlier], sink, CONNECTIONS).violations == []


def test_conversion_messages_are_matched_so_that_required_calls_are_covered_first():
    # The failed call (no timestamp: any) fits both messages, the accepted call only the first: a greedy
    # assignment in request order would call the accepted one lost and the failed one split.
    failed = Request("conversion", conversion(ts=None), "failed", 1, uncertain_attempts=1)
    accepted = Request("conversion", conversion(ts=T1), "delivered", 2, 3)
    sink = [record(identify("m-id")), record(converted("m-t1", ts=T1)), record(converted("m-t2", ts=T2))]

    assert evaluate([failed, accepted], sink, CONNECTIONS).violations == []
    # One message for both: it is the accepted call's (the failed call may never have been forwarded).
    assert evaluate([failed, accepted], sink[:2], CONNECTIONS).violations == []


def test_a_parked_record_with_its_reason_accounts_for_its_event():
    body = assignment(ts=None)
    queued_copy = '{"workspace_id": "demo", "visitor_id": "v1", "test_id": "t1", "variant_id": "a", "timestamp": "%s"}'
    parked = [Parked("assignment", queued_copy % T1, {"error_code": "retries_exhausted"})]
    requests = [Request("assignment", body, "queued", 1, 2)]

    result = evaluate(requests, [], CONNECTIONS, parked)

    assert result.violations == []
    assert (result.parked, result.parked_with_reason, result.facts_required, result.facts_optional) == (1, 1, 0, 2)


def test_a_parked_copy_of_an_answered_request_accounts_for_it_and_its_answer_still_counts():
    # An HTTP call answered before every fact was recorded queues a copy of itself; that copy may be parked.
    request = Request("assignment", assignment(), "delivered", 1, 2, ("m-ev",))
    parked = [Parked("assignment", json.dumps(assignment()), {"error_code": "retries_exhausted"})]

    assert evaluate([request], [record(viewed("m-ev"))], CONNECTIONS, parked).violations == []
    missing = evaluate([request], [], CONNECTIONS, parked)
    assert [v.rule for v in missing.violations] == [inv.ANSWER_MISSING]


def test_an_answered_events_identity_may_be_skipped_by_a_later_disconnection_and_its_own_fact_may_not():
    connections = [Connection("demo", KEY_US, "us"), Connection("demo", None, None, at=10.0)]
    request = Request("assignment", assignment(), "duplicate", 5.0, 5.1)

    assert rules(evaluate([request], [], connections)) == [(inv.LOST, "demo/v1 assign t1")]
    assert rules(evaluate([request], [], CONNECTIONS)) == [
        (inv.LOST, "demo/v1 assign t1"),
        (inv.LOST, "demo/v1 identify"),
    ]


def test_a_parked_record_needs_a_reason_and_a_request():
    requests = [Request("assignment", assignment(), "queued", 1, 2)]
    without_reason = Parked(
        "assignment",
        f'{{"workspace_id": "demo", "visitor_id": "v1", "test_id": "t1", "variant_id": "a", "timestamp": "{T1}"}}',
        {"error_message": "?"},
    )
    unknown = Parked("identify", "not json", {"error_code": "invalid_json"})

    result = evaluate(requests, [], CONNECTIONS, [without_reason, unknown])

    assert sorted(v.rule for v in result.violations) == [inv.PARKED_UNKNOWN, inv.PARKED_NO_REASON]

    # SQS's redrive policy moves a record without a reason when its function died on the last receive: accepted
    # only for a kind whose function was killed during the run
    moved = evaluate(requests, [], CONNECTIONS, [without_reason], crashed=["assignment"])
    assert (moved.violations, moved.parked_by_sqs, moved.parked_with_reason) == ([], 1, 0)
    elsewhere = evaluate(requests, [], CONNECTIONS, [without_reason], crashed=["identify", "conversion"])
    assert [v.rule for v in elsewhere.violations] == [inv.PARKED_NO_REASON]


def test_a_queued_event_may_be_skipped_while_its_workspace_is_disconnected_and_must_arrive_otherwise():
    connections = [
        Connection("demo", KEY_US, "us", at=-math.inf),
        Connection("demo", None, None, at=10.0),
        Connection("demo", KEY_US, "us", at=20.0),
    ]
    body = {"workspace_id": "demo", "visitor_id": "v1", "timestamp": T1}

    before = evaluate([Request("identify", body, "consumed", 5.0)], [], connections, cache_s=2)
    within_cache = evaluate([Request("identify", body, "consumed", 21.0)], [], connections, cache_s=2)
    after = evaluate([Request("identify", body, "consumed", 23.0)], [], connections, cache_s=2)

    assert before.violations == [] and within_cache.violations == []
    assert rules(after) == [(inv.LOST, "demo/v1 identify")]


def test_a_delivered_answer_is_a_promise_about_its_message_ids():
    request = Request("identify", {"workspace_id": "demo", "visitor_id": "v1", "timestamp": T1}, "delivered", 1, 2)
    other = Request("identify", {"workspace_id": "demo", "visitor_id": "v2", "timestamp": T1}, "delivered", 1, 2)

    missing = evaluate([replace(request, message_ids=("m-gone",))], [], CONNECTIONS)
    foreign = evaluate(
        [replace(request, message_ids=("m2",)), other],
        [record(identify("m1")), record(identify("m2", visitor="v2"))],
        CONNECTIONS,
    )

    assert inv.ANSWER_MISSING in [v.rule for v in missing.violations]
    assert [v.rule for v in foreign.violations] == [inv.ANSWER_MISMATCH]


def test_a_failed_request_may_or_may_not_have_been_forwarded():
    body = {"workspace_id": "demo", "visitor_id": "v1", "timestamp": T1}
    failed = [Request("identify", body, "failed", 1.0, uncertain_attempts=3)]

    assert evaluate(failed, [], CONNECTIONS).violations == []
    assert evaluate(failed, [record(identify("m1"))], CONNECTIONS).violations == []


def test_a_message_without_message_id_is_malformed():
    message = identify("x")
    del message["messageId"]

    assert [v.rule for v in evaluate([], [record(message)], CONNECTIONS).violations] == [inv.MALFORMED]


def test_every_rule_is_documented():
    names = {value for name, value in vars(inv).items() if name.isupper() and isinstance(value, str)}
    assert set(inv.RULES) <= names
    assert {inv.LOST, inv.SPLIT, inv.CONTENTS, inv.NOT_FIRST, inv.SKIPPED_SENT, inv.WRONG_REGION} <= set(inv.RULES)


@pytest.mark.parametrize(
    ("left", "right", "same"),
    [("2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00", True), ("2026-01-01T00:00:00.001Z", T1, False)],
)
def test_timestamps_compare_as_instants(left, right, same):
    assert (inv.timestamp_ms(left) == inv.timestamp_ms(right)) is same
