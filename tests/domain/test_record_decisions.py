"""What becomes of a forwarded SQS record (``decide_record``), what the HTTP caller is told (``http_answer``), and
what an outcome counts in its workspace's health (``evidence``): the handler only applies these."""

from __future__ import annotations

import pytest

from segment_forwarder.answers import Answered, Handoff, http_answer
from segment_forwarder.facts import Outcome
from segment_forwarder.health import Evidence, evidence
from segment_forwarder.records import SqsRecord
from segment_forwarder.retries import (
    INCOMPLETE,
    Done,
    Park,
    Retry,
    RetryPolicy,
    as_queued,
    decide_record,
    retry_soon,
)

NOW_MS = 1_900_000_000_000
HOUR_MS = 3600 * 1000
POLICY = RetryPolicy(horizon_s=72 * 3600, cap_s=900, max_receives=1000)
FAILED = Outcome("retry", reason="segment answered 503")


def record(receives: int = 1, **fields: int) -> SqsRecord:
    """A record first delivered a minute ago (its horizon starts there unless ``fields`` say otherwise)."""
    return SqsRecord("m-1", "{}", receive_count=receives, **{"first_receive_ms": NOW_MS - 60_000, **fields})


def decide(outcome: Outcome | BaseException, on: SqsRecord, dice: float = 0.5, policy: RetryPolicy = POLICY):
    return decide_record(outcome, on, now_ms=NOW_MS, policy=policy, dice=dice)


# -- the SQS path ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome("delivered", ("m-1",)),
        Outcome("duplicate"),
        Outcome("skipped", reason="no_consent"),
        Outcome("skipped", reason="erased"),
    ],
)
def test_a_complete_event_consumes_its_record(outcome):
    assert decide(outcome, record()) == Done()


def test_a_refused_event_is_parked_at_once_with_its_reason():
    assert decide(Outcome("rejected", reason="segment answered 400"), record()) == Park(
        "rejected", "segment answered 400"
    )


def test_a_bug_while_forwarding_parks_the_record_with_the_exceptions_name():
    assert decide(KeyError("x"), record()) == Park("unexpected_error", "KeyError")


def test_a_transient_failure_comes_back_after_a_backoff_doubling_with_each_receive():
    delays = [decide(FAILED, record(receives=6), dice=dice) for dice in (0.0, 0.999)]

    assert [d.delay_s for d in delays if isinstance(d, Retry)] == [16, 32]  # the 6th receive: 2^5 s, equal jitter


def test_retry_after_decides_the_next_receive_when_it_is_longer():
    limited = Outcome("retry", reason="segment answered 429", retry_after=120)

    assert decide(limited, record(), dice=0.999) == Retry(120, age_s=60)


def test_within_the_horizon_nothing_is_parked_however_many_receives():
    assert isinstance(decide(FAILED, record(receives=900, first_received_ms=NOW_MS)), Retry)


def test_past_the_horizon_a_transient_failure_is_parked_with_its_last_reason():
    late = record(first_received_ms=NOW_MS - 73 * HOUR_MS)

    assert decide(FAILED, late) == Park("retries_exhausted", "segment answered 503")
    assert isinstance(decide(FAILED, record(first_received_ms=NOW_MS - 71 * HOUR_MS)), Retry)


def test_a_redrive_starts_the_horizon_again():
    redriven = record(first_received_ms=NOW_MS - 100 * HOUR_MS, retry_since_ms=NOW_MS - 2 * HOUR_MS)

    assert decide(FAILED, redriven) == Retry(1, age_s=2 * 3600)  # its age is counted from the redrive


def test_the_receive_limit_parks_a_record_within_the_horizon():
    assert decide(FAILED, record(receives=999)) == Retry(675, age_s=60)  # at the cap, dice 0.5: 450 + 225 s
    assert decide(FAILED, record(receives=1000)) == Park("retries_exhausted", "segment answered 503")


def test_an_event_not_complete_comes_back_until_its_facts_are_recorded_and_is_no_failure():
    waiting = Outcome("delivered", ("m-1",), complete=False)

    assert as_queued(waiting) == Outcome("retry", ("m-1",), INCOMPLETE)
    assert isinstance(decide(waiting, record()), Retry)
    assert decide(waiting, record(first_received_ms=NOW_MS - 73 * HOUR_MS)) == Park("retries_exhausted", INCOMPLETE)
    assert evidence("retry", messages=1, reason=INCOMPLETE) == Evidence(1, None)


def test_a_rejected_event_whose_facts_were_not_recorded_comes_back_instead_of_being_parked():
    assert isinstance(decide(Outcome("rejected", reason="segment answered 400", complete=False), record()), Retry)


def test_a_record_whose_bookkeeping_failed_comes_back_soon():
    assert retry_soon(POLICY) == Retry(1)


# -- the HTTP path --------------------------------------------------------------------------------------------


def test_what_went_out_now_is_answered_at_once():
    assert http_answer(Outcome("delivered", ("m-1", "m-2"))) == Answered(
        {"status": "delivered", "message_ids": ["m-1", "m-2"]}
    )
    assert http_answer(Outcome("duplicate")) == Answered({"status": "duplicate"})
    assert http_answer(Outcome("skipped", reason="not_connected")) == Answered(
        {"status": "skipped", "reason": "not_connected"}
    )


def test_an_event_not_complete_is_answered_and_a_copy_queued():
    assert http_answer(Outcome("delivered", ("m-1",), complete=False)).copy  # type: ignore[union-attr]
    assert http_answer(Outcome("duplicate", complete=False)) == Answered({"status": "duplicate"}, copy=True)


@pytest.mark.parametrize(
    "outcome",
    [FAILED, Outcome("retry", reason="in_flight"), Outcome("rejected", reason="segment answered 400")],
)
def test_what_was_not_delivered_now_is_handed_to_the_queue(outcome):
    assert http_answer(outcome) == Handoff(outcome.reason)


# -- health ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "messages", "reason", "expected"),
    [
        ("delivered", 2, "", Evidence(2, None)),
        ("duplicate", 0, "", Evidence(0, None)),
        ("skipped", 0, "no_consent", Evidence(0, None)),
        ("rejected", 0, "segment answered 400", Evidence(0, "segment answered 400")),
        ("retry", 0, "segment answered 503", Evidence(0, "segment answered 503")),
        ("retry", 1, "segment answered 503", Evidence(1, "segment answered 503")),  # the Identify went out
        ("retry", 0, "in_flight", Evidence(0, None)),
    ],
)
def test_what_an_outcome_counts_in_its_workspaces_health(status, messages, reason, expected):
    assert evidence(status, messages=messages, reason=reason) == expected
