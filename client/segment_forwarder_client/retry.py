"""The retry schedule: capped exponential backoff with full jitter, ``Retry-After`` honoured, a total budget.

::

    policy = RetryPolicy()                    # 6 attempts, base 0.25 s, cap 8 s, budget 30 s
    policy.ceiling(1), policy.ceiling(5)      # 0.25, 4.0: the upper bound of the wait before retry 1 and 5
    policy.next_delay(attempt=1, elapsed_s=0.4, retry_after_s=None)    # uniform in [0, 0.25]; None = stop

Before retry *n* (attempt *n + 1*) the client waits a time drawn uniformly from ``[0, min(cap_s, base_s * 2**(n-1))]``
("full jitter", so that many producers failing together do not come back together), but never less than the
answer's ``Retry-After``. With the defaults the ceilings are 0.25, 0.5, 1, 2 and 4 s: at most 7.75 s of waiting
over the 5 retries. A retry whose wait would end more than ``budget_s`` after the first attempt started is not made:
the last error is raised instead (so a ``Retry-After: 60`` ends the call at once). Each attempt is also bounded by
the client's timeouts (default: connect 3.05 s, read 10 s).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

_RANDOM = random.SystemRandom()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts, how long to wait between them, and the total time a call may take to start its last."""

    max_attempts: int = 6
    base_s: float = 0.25
    cap_s: float = 8.0
    budget_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_s < 0 or self.cap_s < 0 or self.budget_s < 0:
            raise ValueError("base_s, cap_s and budget_s must not be negative")

    def ceiling(self, retry: int) -> float:
        """Upper bound of the jittered wait before retry number ``retry`` (1 for the second attempt)."""
        return min(self.cap_s, self.base_s * 2.0 ** (retry - 1))

    def next_delay(self, attempt: int, elapsed_s: float, retry_after_s: float | None = None) -> float | None:
        """Seconds to wait before the attempt after ``attempt``; None when no further attempt may be made.

        ``elapsed_s``: time since the first attempt started; ``retry_after_s``: the answer's ``Retry-After``.
        """
        if attempt >= self.max_attempts:
            return None
        delay = max(_RANDOM.uniform(0.0, self.ceiling(attempt)), retry_after_s or 0.0)
        if elapsed_s + delay > self.budget_s:
            return None
        return delay


DEFAULT_RETRY = RetryPolicy()


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds (delay-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
