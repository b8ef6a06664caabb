"""The retry schedule and the request bodies of the producer client (pure: no network)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from segment_forwarder.validation import parse_body
from segment_forwarder_client import (
    ConversionType,
    RetryPolicy,
    assignment_body,
    conversion_body,
    identify_body,
    parse_retry_after,
    with_event_id,
)

# -- the schedule ---------------------------------------------------------------------------------------------


def test_the_default_schedule_is_6_attempts_with_ceilings_doubling_from_a_quarter_second_up_to_8s():
    policy = RetryPolicy()

    assert (policy.max_attempts, policy.base_s, policy.cap_s, policy.budget_s) == (6, 0.25, 8.0, 30.0)
    assert [policy.ceiling(n) for n in range(1, 8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_waits_are_full_jitter_below_the_ceiling():
    policy = RetryPolicy()

    for attempt in range(1, 6):
        waits = [policy.next_delay(attempt, elapsed_s=0.0) for _ in range(300)]
        assert all(w is not None and 0.0 <= w <= policy.ceiling(attempt) for w in waits)
        assert len(set(waits)) > 250  # drawn, not fixed


def test_no_wait_after_the_last_attempt():
    assert RetryPolicy(max_attempts=3).next_delay(3, elapsed_s=0.0) is None
    assert RetryPolicy(max_attempts=1).next_delay(1, elapsed_s=0.0) is None


def test_retry_after_is_a_floor_and_the_budget_a_limit():
    policy = RetryPolicy(base_s=0.01, cap_s=0.01, budget_s=10)

    assert policy.next_delay(1, elapsed_s=0.0, retry_after_s=3) == 3
    assert policy.next_delay(1, elapsed_s=6.0, retry_after_s=3) == 3
    assert policy.next_delay(1, elapsed_s=8.0, retry_after_s=3) is None  # would start after 11 s
    assert policy.next_delay(1, elapsed_s=10.5) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("3", 3.0), ("0.5", 0.5), (" 12 ", 12.0), ("-4", 0.0), ("soon", None), ("", None), (None, None), ("nan", None)],
)
def test_retry_after_in_seconds(value, seconds):
    assert parse_retry_after(value) == seconds


def test_retry_after_as_an_http_date():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)

    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0


def test_a_policy_needs_one_attempt_and_no_negative_times():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_s=-1)


# -- bodies ---------------------------------------------------------------------------------------------------

SCHEMAS = {"identify": "IdentifyRequest", "assignment": "AssignmentRequest", "conversion": "ConversionRequest"}


def test_every_conversion_body_gets_a_new_uuid4_event_id_unless_it_has_one():
    first = conversion_body("demo", "v-1", "c-1", ConversionType.CLICK, "https://x.example/")
    second = conversion_body("demo", "v-1", "c-1", ConversionType.CLICK, "https://x.example/")
    given = conversion_body("demo", "v-1", "c-1", "PAGE_VIEW", "https://x.example/", event_id="order-1")

    assert uuid.UUID(first["event_id"]).version == 4
    assert first["event_id"] != second["event_id"]
    assert given["event_id"] == "order-1"
    assert first["conversion_type"] == "CLICK"


def test_with_event_id_only_adds_to_conversions_and_never_changes_the_callers_body():
    raw = {"workspace_id": "demo", "visitor_id": "v-1", "conversion_id": "c", "conversion_type": "CLICK"}

    added = with_event_id("conversion", raw)

    assert "event_id" in added and "event_id" not in raw
    assert with_event_id("conversion", {**raw, "event_id": "e"})["event_id"] == "e"
    assert "event_id" not in with_event_id("identify", {"workspace_id": "demo", "visitor_id": "v"})


def test_timestamps_are_sent_with_milliseconds_and_their_zone_and_naive_ones_refused():
    moment = datetime(2025, 3, 1, 10, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2)))

    assert identify_body("demo", "v", timestamp=moment)["timestamp"] == "2025-03-01T10:30:05.123+02:00"
    assert identify_body("demo", "v", timestamp="2025-03-01T08:30:05Z")["timestamp"] == "2025-03-01T08:30:05Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        identify_body("demo", "v", timestamp=datetime(2025, 3, 1))


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("identify", identify_body("demo", "v-1")),
        (
            "identify",
            identify_body("demo", "v-1", user_id="u-1", timestamp=datetime.now(UTC), context={"ip": "203.0.113.7"}),
        ),
        ("assignment", assignment_body("demo", "v-1", "t-1", "b")),
        ("assignment", assignment_body("demo", "v-1", "t-1", "b", test_name="Test", variant_name="Green")),
        ("conversion", conversion_body("demo", "v-1", "c-1", "CLICK", "https://x.example/")),
        ("conversion", conversion_body("demo", "v", "c", "PROGRAMMATIC", "https://x.example/", one_per_visitor=True)),
        ("identify", identify_body("demo", "v-1", segment_anonymous_id="ajs-1")),
        ("assignment", assignment_body("demo", "v-1", "t-1", "b", segment_anonymous_id="ajs-1")),
        ("conversion", conversion_body("demo", "v-1", "c-1", "CLICK", "https://x.example/", segment_anonymous_id="a")),
    ],
)
def test_the_builders_make_bodies_the_api_schema_accepts(kind, body):
    assert parse_body(SCHEMAS[kind], json.dumps(body).encode()) == body


def test_the_sites_segment_anonymous_id_is_sent_only_when_given():
    assert identify_body("demo", "v-1", segment_anonymous_id="ajs-1")["segment_anonymous_id"] == "ajs-1"
    assert "segment_anonymous_id" not in assignment_body("demo", "v-1", "t-1", "b")


def test_a_body_is_encoded_compact_with_non_ascii_text_as_is_and_only_unsendable_characters_escaped():
    from segment_forwarder_client.bodies import encode_body

    body = {"title": "Été 日本", "odd": "a\ud800b\uffffc", "line": "x\ny"}
    text = encode_body(body)

    assert text == '{"title":"Été 日本","odd":"a\\ud800b\\uffffc","line":"x\\ny"}'
    assert json.loads(text) == body  # the same value
    text.encode("utf-8")  # always UTF-8 text (an unpaired surrogate would raise here)
