"""A workspace's delivery health: tallies of a warm function, when they are written, and the 24-hour summary."""

from __future__ import annotations

from segment_forwarder.health import Bucket, HealthRecorder, hour_of, summary

HOUR_MS = 3600 * 1000
NOW = 1_796_000_000_000  # 2026-11-30T...


def test_deliveries_are_written_once_a_minute_failures_at_once():
    recorder = HealthRecorder()
    recorder.delivered("ws", messages=2, now_ms=NOW)
    recorder.delivered("ws", messages=1, now_ms=NOW + 1000)
    assert recorder.due(now_ms=NOW + 59_000) == {}

    [tally] = recorder.due(now_ms=NOW + 60_000).values()
    assert (tally.delivered, tally.messages, tally.last_delivery_messages) == (2, 3, 1)
    assert recorder.due(now_ms=NOW + 120_000) == {}  # written once: forgotten

    recorder.failed("other", reason="segment answered 503", now_ms=NOW + 121_000, parked=True)
    [(workspace, tally)] = recorder.due(now_ms=NOW + 121_000).items()
    assert (workspace, tally.failed, tally.parked, tally.last_failure_reason) == ("other", 1, 1, "segment answered 503")


def test_the_summary_adds_the_last_24_hours_and_names_the_latest_delivery_and_failure():
    buckets = [
        Bucket(hour_of(NOW - 30 * HOUR_MS), delivered=100, failed=9, last_delivery_at=NOW - 30 * HOUR_MS),
        Bucket(
            hour_of(NOW - 2 * HOUR_MS),
            delivered=5,
            messages=8,
            failed=2,
            parked=1,
            last_delivery_at=NOW - 2 * HOUR_MS,
            last_delivery_messages=2,
            last_failure_at=NOW - 2 * HOUR_MS + 10,
            last_failure_reason="segment answered 429",
        ),
        Bucket(hour_of(NOW), delivered=1, last_delivery_at=NOW - 5, last_delivery_messages=1),
    ]

    health = summary(buckets, now_ms=NOW)

    assert health["last_24h"] == {"delivered": 6, "failed": 2, "parked": 1}
    assert health["last_delivery"]["messages"] == 1
    assert health["last_failure"]["status"] == 429
    assert health["last_failure"]["reason"] == "segment answered 429"
    assert health["last_failure"]["at"].endswith("Z")


def test_a_workspace_never_seen_has_an_empty_summary():
    assert summary([], now_ms=NOW) == {
        "last_delivery": None,
        "last_failure": None,
        "last_24h": {"delivered": 0, "failed": 0, "parked": 0},
    }


def test_a_failure_without_an_answer_from_segment_has_no_status():
    buckets = [Bucket(hour_of(NOW), failed=1, last_failure_at=NOW, last_failure_reason="segment unreachable: X")]

    assert summary(buckets, now_ms=NOW)["last_failure"]["status"] is None
