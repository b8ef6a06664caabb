"""The hourly health buckets against moto: tallies of several execution environments summed into one bucket."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from segment_forwarder.health import HealthRecorder, Tally, hour_of, summary
from segment_forwarder.health_ledger import HealthLedger
from segment_forwarder.table import DedupUnavailableError
from tests.component.conftest import on_both_engines

pytestmark = on_both_engines

NOW_MS = 1_796_000_000_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ledger(stack: Any) -> HealthLedger:
    return HealthLedger(stack.session.client("dynamodb"), stack.resources["DedupTable"].ref)


def test_a_tally_written_late_does_not_take_the_last_delivery_or_failure_back(stack):
    # Environment A delivered at +10 s and keeps its tally for its next write (once a minute); environment B
    # delivered at +20 s and failed at +25 s and wrote at once. A writes later: its older moments must not win.
    health, hour = ledger(stack), hour_of(NOW_MS)
    newer = Tally(delivered=1, messages=2, last_delivery_at=NOW_MS + 20_000, last_delivery_messages=2)
    newer.failed, newer.last_failure_at, newer.last_failure_reason = 1, NOW_MS + 25_000, "segment answered 503"
    older = Tally(delivered=1, messages=1, last_delivery_at=NOW_MS + 10_000, last_delivery_messages=1)
    older.failed, older.last_failure_at, older.last_failure_reason = 1, NOW_MS + 5_000, "segment answered 500"
    health.add("ws-us", newer, hour=hour, now_s=NOW_MS // 1000)
    health.add("ws-us", older, hour=hour, now_s=NOW_MS // 1000 + 60)

    shown = summary(health.buckets("ws-us", since_hour=hour), now_ms=NOW_MS + 70_000)

    assert shown["last_24h"] == {"delivered": 2, "failed": 2, "parked": 0}  # counters add up either way
    assert shown["last_delivery"] == {"at": iso(NOW_MS + 20_000), "messages": 2}
    assert shown["last_failure"] == {"at": iso(NOW_MS + 25_000), "status": 503, "reason": "segment answered 503"}


def test_the_due_tallies_go_to_this_hours_buckets_and_a_lost_one_is_named(stack, aws_faults):
    # Two workspaces seen for the first time in this environment: both tallies are due at once. The table
    # throttles the first write (ws-us's): its tally is lost (health is evidence, not state), the other is kept.
    health, recorder = ledger(stack), HealthRecorder()
    recorder.delivered("ws-us", messages=2, now_ms=NOW_MS)
    recorder.failed("ws-eu", reason="segment answered 401", now_ms=NOW_MS, parked=True)
    aws_faults.fail("dynamodb:UpdateItem", "ProvisionedThroughputExceededException")

    lost = health.write_due(recorder, now_ms=NOW_MS)

    assert aws_faults.calls["dynamodb:UpdateItem"] == 2  # one write per workspace, the failed one not retried
    assert {workspace: str(error) for workspace, error in lost.items()} == {
        "ws-us": "ProvisionedThroughputExceededException"
    }
    assert health.buckets("ws-us", since_hour=hour_of(NOW_MS)) == []
    (kept,) = health.buckets("ws-eu", since_hour=hour_of(NOW_MS))
    assert (kept.hour, kept.failed, kept.parked) == (hour_of(NOW_MS), 1, 1)
    assert recorder.due(now_ms=NOW_MS + 1) == {}  # written or lost, a due tally is not written twice


def test_a_workspaces_health_is_the_summary_of_its_last_24_hours(stack, aws_faults):
    health = ledger(stack)
    old = Tally(delivered=1, messages=1, last_delivery_at=NOW_MS - 30 * 3600_000, last_delivery_messages=1)
    recent = Tally(delivered=2, messages=3, last_delivery_at=NOW_MS - 3600_000, last_delivery_messages=2)
    health.add("ws-us", old, hour=hour_of(NOW_MS - 30 * 3600_000), now_s=NOW_MS // 1000)
    health.add("ws-us", recent, hour=hour_of(NOW_MS - 3600_000), now_s=NOW_MS // 1000)

    shown = health.health("ws-us", now_ms=NOW_MS)

    assert shown == {
        "last_delivery": {"at": iso(NOW_MS - 3600_000), "messages": 2},
        "last_failure": None,
        "last_24h": {"delivered": 2, "failed": 0, "parked": 0},  # the bucket of 30 hours ago is not read
    }
    assert aws_faults.params["dynamodb:Query"][-1]["ExpressionAttributeValues"][":since"] == {
        "S": hour_of(NOW_MS - 24 * 3600_000)
    }
    aws_faults.fail("dynamodb:Query", "ThrottlingException")
    with pytest.raises(DedupUnavailableError, match="ThrottlingException"):
        health.health("ws-us", now_ms=NOW_MS)
