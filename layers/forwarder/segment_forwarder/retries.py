"""What becomes of a forwarded SQS record: done, back after a backoff, or parked (pure: the caller passes the time
and the dice).

A record that failed for a reason a later attempt may not have is put back on its queue with its visibility
pushed back (exponential backoff with equal jitter, at least any ``Retry-After``, at most the cap), until its
retry horizon has passed since it was first received (or it was received ``max_receives`` times); then it is
parked with its last reason. One that can never succeed is parked at once::

    policy = RetryPolicy(horizon_s=72 * 3600, cap_s=900, max_receives=1000)
    match decide_record(outcome, read_record(raw, now_ms=now), now_ms=now, policy=policy, dice=random.random()):
        case Done():
            ...consumed...
        case Retry(delay_s=delay):
            ...its next receive in ``delay`` seconds (3rd receive: 2..4 s)...
        case Park(code=code, reason=reason):
            ...to the dead-letter queue, as ``code`` (rejected, retries_exhausted, unexpected_error)...

With a 900 s cap a 72 h outage costs a record about 10 receives to reach the cap, then one every 450-900 s:
between 288 and 576 more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from .facts import Outcome
from .records import SqsRecord

# SQS refuses a visibility beyond 12 h from the receive; the invocation that changes it has run for up to its
# timeout (30 s) since: a minute of margin.
MAX_VISIBILITY_S: Final = 12 * 3600 - 60
INCOMPLETE: Final = "incomplete"  # the reason of a record retried until every fact its event needs is recorded


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long and how often a transiently failing record is retried (``max_receives`` None: no limit but the
    horizon)."""

    horizon_s: float
    cap_s: float
    base_s: float = 1.0
    max_receives: int | None = None

    def exhausted(self, *, now_ms: int, since_ms: int, receives: int = 1) -> bool:
        """Whether the horizon has passed since ``since_ms``, or the record was received ``max_receives`` times."""
        spent = self.max_receives is not None and receives >= self.max_receives
        return spent or now_ms - since_ms >= self.horizon_s * 1000

    def delay_s(self, *, receives: int, retry_after_s: float | None, dice: float) -> int:
        """Seconds until the record's next receive: ``base * 2^(receives-1)`` capped, with equal jitter (between
        half and all of it, ``dice`` in [0, 1)), at least ``retry_after_s``, at most the cap (and SQS's 12 h)."""
        step = min(self.cap_s, self.base_s * 2.0 ** min(max(receives - 1, 0), 32))
        delay = step / 2 + dice * step / 2
        if retry_after_s is not None and math.isfinite(retry_after_s):
            delay = max(delay, retry_after_s)
        return max(1, min(math.ceil(delay), math.ceil(self.cap_s), MAX_VISIBILITY_S))


@dataclass(frozen=True, slots=True)
class Done:
    """The record is consumed (delivered, a duplicate, skipped)."""


@dataclass(frozen=True, slots=True)
class Retry:
    """The record comes back in ``delay_s`` seconds; ``age_s``: how long it has been retried (since its horizon
    started), None when not known (a bug in its bookkeeping)."""

    delay_s: int
    age_s: int | None = None


@dataclass(frozen=True, slots=True)
class Park:
    """The record goes to the dead-letter queue: ``code`` (``rejected``, ``retries_exhausted``,
    ``unexpected_error``) and the reason."""

    code: str
    reason: str


Decision = Done | Retry | Park
DONE: Final = Done()


def as_queued(outcome: Outcome) -> Outcome:
    """The outcome as the SQS path takes it: an event not ``complete`` is a ``retry`` (reason ``incomplete``), with
    the messages it delivered; its record comes back until every fact the event needs is recorded SENT."""
    return outcome if outcome.complete else Outcome("retry", outcome.message_ids, INCOMPLETE)


def decide_record(
    outcome: Outcome | BaseException, record: SqsRecord, *, now_ms: int, policy: RetryPolicy, dice: float
) -> Decision:
    """What to do with a forwarded record (``outcome``; an exception when forwarding its event raised: a bug).

    ``rejected`` (never succeeds as it is) and a bug park it; ``retry`` (or an event not complete) brings it back
    after ``policy.delay_s`` for its receive count, until ``policy.exhausted``: then it is parked as
    ``retries_exhausted`` with its last reason. The horizon starts at ``record.horizon_start``.
    """
    if isinstance(outcome, BaseException):
        return Park("unexpected_error", type(outcome).__name__)
    outcome = as_queued(outcome)
    if outcome.status == "rejected":
        return Park("rejected", outcome.reason)
    if outcome.status != "retry":
        return DONE
    since = record.horizon_start(now_ms=now_ms)
    if policy.exhausted(now_ms=now_ms, since_ms=since, receives=record.receive_count):
        return Park("retries_exhausted", outcome.reason)
    delay = policy.delay_s(receives=record.receive_count, retry_after_s=outcome.retry_after, dice=dice)
    return Retry(delay, age_s=max(now_ms - since, 0) // 1000)


def retry_soon(policy: RetryPolicy) -> Retry:
    """The decision for a record whose bookkeeping failed (a bug): back after the first receive's delay."""
    return Retry(policy.delay_s(receives=1, retry_after_s=None, dice=0.5))
