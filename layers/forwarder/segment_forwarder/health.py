"""A workspace's delivery health, as its connection's GET shows it (pure: the caller gives the time).

Segment answers 200 even to a wrong write key or region, so the evidence that a workspace's integration works is
what the forwarder sent and what Segment answered. A warm function tallies it per workspace and writes the tally
into an hourly bucket of the table now and then (``HealthRecorder.due``: after a failure or a park, and for the
first event of a workspace in the environment, at once; otherwise once a minute), so health costs at most one small
write per workspace per invocation, and far fewer::

    recorder = HealthRecorder()
    recorder.delivered("demo", messages=2, now_ms=now)
    for workspace, tally in recorder.due(now_ms=now).items():
        ...write the tally into the bucket hour_of(now)...
    summary(buckets, now_ms=now)   # {"last_delivery": ..., "last_failure": ..., "last_24h": {...}}

Counts are approximate in one way: what a function tallied in its last minute before it was retired is lost.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

FLUSH_AFTER_MS: Final = 60_000
WINDOW_MS: Final = 24 * 3600 * 1000
BUCKET_TTL_S: Final = 48 * 3600
_STATUS = re.compile(r"(?:segment answered|segment_refused_all:) (\d{3})")


@dataclass(slots=True)
class Tally:
    """What one execution environment saw of one workspace since it last wrote: events delivered (and their
    messages), events not delivered (failed: Segment or the table failing, or a refusal), records parked."""

    delivered: int = 0
    messages: int = 0
    failed: int = 0
    parked: int = 0
    last_delivery_at: int | None = None
    last_delivery_messages: int = 0
    last_failure_at: int | None = None
    last_failure_reason: str = ""


class HealthRecorder:
    """Per-workspace tallies of a warm function (thread-safe)."""

    def __init__(self, flush_after_ms: int = FLUSH_AFTER_MS) -> None:
        self._flush_after_ms = flush_after_ms
        self._tallies: dict[str, Tally] = {}
        self._written: dict[str, int] = {}  # workspace -> when this environment last wrote its tally
        self._lock = threading.Lock()

    def _tally(self, workspace_id: str) -> Tally:
        return self._tallies.setdefault(workspace_id, Tally())

    def delivered(self, workspace_id: str, *, messages: int, now_ms: int) -> None:
        """An event of the workspace reached Segment in ``messages`` messages."""
        with self._lock:
            tally = self._tally(workspace_id)
            tally.delivered += 1
            tally.messages += messages
            tally.last_delivery_at, tally.last_delivery_messages = now_ms, messages

    def failed(self, workspace_id: str, *, reason: str, now_ms: int, parked: bool = False) -> None:
        """An event of the workspace was not delivered (and was parked, with ``parked``)."""
        with self._lock:
            tally = self._tally(workspace_id)
            tally.failed += 1
            tally.parked += int(parked)
            tally.last_failure_at, tally.last_failure_reason = now_ms, reason

    def due(self, *, now_ms: int) -> dict[str, Tally]:
        """The tallies to write now (and forget): those with a failure, those of a workspace this environment never
        wrote (so a new connection shows its first delivery at once), and those of a workspace it last wrote a
        minute ago or more."""
        with self._lock:
            due = {
                workspace: tally
                for workspace, tally in self._tallies.items()
                if tally.failed
                or workspace not in self._written
                or now_ms - self._written[workspace] >= self._flush_after_ms
            }
            for workspace in due:
                del self._tallies[workspace]
                self._written[workspace] = now_ms
            return due


def hour_of(ms: int) -> str:
    """The hourly bucket a moment falls in: ``2026-11-30T07``."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H")


@dataclass(frozen=True, slots=True)
class Bucket:
    """One hour of a workspace's health as the table holds it (the sum of every function's tallies)."""

    hour: str
    delivered: int = 0
    messages: int = 0
    failed: int = 0
    parked: int = 0
    last_delivery_at: int | None = None
    last_delivery_messages: int = 0
    last_failure_at: int | None = None
    last_failure_reason: str = ""


def _iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def summary(buckets: Iterable[Bucket], *, now_ms: int) -> dict[str, Any]:
    """The health part of a connection's GET: the last delivery (when, how many messages), the last failure
    (when, Segment's status if it answered, the reason) and the counts over the last 24 hours."""
    recent = [b for b in buckets if b.hour >= hour_of(now_ms - WINDOW_MS)]
    delivered = max((b for b in recent if b.last_delivery_at), key=lambda b: b.last_delivery_at or 0, default=None)
    failed = max((b for b in recent if b.last_failure_at), key=lambda b: b.last_failure_at or 0, default=None)
    last_failure: dict[str, Any] | None = None
    if failed is not None and failed.last_failure_at is not None:
        status = _STATUS.search(failed.last_failure_reason)
        last_failure = {
            "at": _iso(failed.last_failure_at),
            "status": int(status.group(1)) if status else None,
            "reason": failed.last_failure_reason,
        }
    return {
        "last_delivery": None
        if delivered is None or delivered.last_delivery_at is None
        else {"at": _iso(delivered.last_delivery_at), "messages": delivered.last_delivery_messages},
        "last_failure": last_failure,
        "last_24h": {
            "delivered": sum(b.delivered for b in recent),
            "failed": sum(b.failed for b in recent),
            "parked": sum(b.parked for b in recent),
        },
    }


NOT_FAILURES: Final = frozenset({"in_flight", "incomplete"})  # a retry for these reasons is no failure


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one event's outcome tells of its workspace's health: messages delivered (0: none), and the reason of
    a failure (None: none)."""

    messages: int
    failure: str | None


def evidence(status: str, *, messages: int, reason: str) -> Evidence:
    """What an event's outcome (its ``status``, the ``messages`` it delivered, its ``reason``) counts in its
    workspace's health: messages delivered count when it was delivered, or when a retry delivered some; a
    rejection is a failure, and so is a retry unless its fact is in flight elsewhere or it only waits for another
    attempt's fact (``NOT_FAILURES``)::

        evidence("delivered", messages=2, reason="")                     # Evidence(2, None)
        evidence("retry", messages=0, reason="segment answered 503")     # Evidence(0, "segment answered 503")
    """
    delivered = messages if status in ("delivered", "retry") else 0
    failed = status == "rejected" or (status == "retry" and reason not in NOT_FAILURES)
    return Evidence(delivered, reason if failed else None)
