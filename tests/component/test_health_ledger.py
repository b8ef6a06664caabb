"""The hourly health buckets against moto: tallies of several execution environments summed into one bucket."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from segment_forwarder.health import Tally, hour_of, summary
from segment_forwarder.health_ledger import HealthLedger
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
