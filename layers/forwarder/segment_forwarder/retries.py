"""When a failed record comes back, and when it stops coming back (pure: the caller passes the time and the dice).

A record that failed for a reason a later attempt may not have is put back on its queue with its visibility
pushed back (exponential backoff with equal jitter, at least any ``Retry-After``, at most the cap), until its
retry horizon has passed since it was first received; then it is parked with its last reason::

    policy = RetryPolicy(horizon_s=72 * 3600, cap_s=900)
    if policy.exhausted(now_ms=now, since_ms=horizon_start(attributes, first_receive_ms, now_ms=now)):
        ...park as retries_exhausted...
    else:
        delay_s = policy.delay_s(receives=3, retry_after_s=None, dice=random.random())   # 2..4 s

With a 900 s cap a 72 h outage costs a record about 10 receives to reach the cap, then one every 450-900 s:
between 288 and 576 more (``receives_within``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

# SQS refuses a visibility beyond 12 h from the receive; the invocation that changes it has run for up to its
# timeout (30 s) since: a minute of margin.
MAX_VISIBILITY_S: Final = 12 * 3600 - 60
FIRST_RECEIVED_AT: Final = "first_received_at"  # message attribute: ms since the epoch of the event's first receipt
RETRY_SINCE: Final = "retry_since"  # message attribute: ms since the epoch the retry horizon counts from
# A time read from a message attribute is believed only within this window around now: the queues keep a message
# 14 days, a redrive gives it 14 more, and a year covers many redrives; a few minutes ahead covers clock skew.
TRUSTED_PAST_MS: Final = 366 * 24 * 3600 * 1000
TRUSTED_FUTURE_MS: Final = 5 * 60 * 1000
_MILLISECONDS = re.compile(r"[0-9]{1,16}")  # ASCII digits only (str.isdigit also accepts "²" and "٣")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long and how often a transiently failing record is retried."""

    horizon_s: float
    cap_s: float
    base_s: float = 1.0

    def exhausted(self, *, now_ms: int, since_ms: int) -> bool:
        """Whether the horizon has passed since ``since_ms``."""
        return now_ms - since_ms >= self.horizon_s * 1000

    def delay_s(self, *, receives: int, retry_after_s: float | None, dice: float) -> int:
        """Seconds until the record's next receive: ``base * 2^(receives-1)`` capped, with equal jitter (between
        half and all of it, ``dice`` in [0, 1)), at least ``retry_after_s``, at most the cap (and SQS's 12 h)."""
        step = min(self.cap_s, self.base_s * 2.0 ** min(max(receives - 1, 0), 32))
        delay = step / 2 + dice * step / 2
        if retry_after_s is not None and math.isfinite(retry_after_s):
            delay = max(delay, retry_after_s)
        return max(1, min(math.ceil(delay), math.ceil(self.cap_s), MAX_VISIBILITY_S))

    def receives_within(self, seconds: float, *, dice: float) -> int:
        """How many receives a record that always fails gets within ``seconds`` (every draw ``dice``)."""
        elapsed, receives = 0.0, 1
        while True:
            elapsed += self.delay_s(receives=receives, retry_after_s=None, dice=dice)
            if elapsed > seconds:
                return receives
            receives += 1


def attribute_ms(value: object, *, now_ms: int) -> int | None:
    """A time in ms since the epoch read from a message attribute a producer may have written, or None unless it
    is 1 to 16 ASCII digits within ``TRUSTED_PAST_MS`` before and ``TRUSTED_FUTURE_MS`` after ``now_ms``::

        attribute_ms("1767225600000", now_ms=now)   # 1767225600000 (if within the window)
        attribute_ms("²", now_ms=now), attribute_ms("0", now_ms=now), attribute_ms("9" * 5000, now_ms=now)  # None
    """
    if not isinstance(value, str) or not _MILLISECONDS.fullmatch(value):
        return None
    moment = int(value)
    return moment if now_ms - TRUSTED_PAST_MS <= moment <= now_ms + TRUSTED_FUTURE_MS else None


def horizon_start(attributes: Mapping[str, object], first_receive_ms: int, *, now_ms: int) -> int:
    """Where a record's retry horizon starts (ms since the epoch): ``retry_since`` (set when a redrive moved it
    back), else ``first_received_at`` (set when the HTTP path queued it), else when SQS first delivered it. An
    attribute that is not a plausible time (``attribute_ms``) is ignored: a producer can write any attribute."""
    for name in (RETRY_SINCE, FIRST_RECEIVED_AT):
        moment = attribute_ms(attributes.get(name), now_ms=now_ms)
        if moment is not None:
            return moment
    return first_receive_ms
