"""Segment's HTTP tracking API, ``/v1/batch`` only, over one pooled urllib3 connection set.

::

    client = SegmentClient({"us": "https://api.segment.io", "eu": "https://events.eu1.segmentapis.com"})
    result = client.send(write_key, "eu", messages, deadline=time.monotonic() + 3)
    result.ok, result.retryable, result.status, result.requests

Messages are split into as few requests as Segment's limits allow (500 KB with a margin, 2,500 messages); the
body is compact JSON in UTF-8 (``messages.encode_json``), the encoding every size here is measured in.
Retries follow the official clients' rules, bounded by ``deadline`` (a monotonic time) instead of hours.

Segment rate-limits each source (write key), not a region: a 429 backs off that key only. The client keeps, per
key (by a hash of it, never the key itself), a "not before" time from the 429's ``Retry-After`` (or the backoff),
and until then answers for that key at once, without a request (``segment_rate_limited``, ``retry_after`` the
seconds left). The region's circuit breaker counts only the answers that say the region is down (5xx, 408/460,
timeouts, connection errors); any other answer, 429 and 4xx included, shows the region up.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import urllib3

from . import __version__
from .messages import MAX_MESSAGE_BYTES, encode_json, iso_ms
from .ports import SendOutcome
from .segment_batches import MIN_ATTEMPT_S

__all__ = [
    "MAX_MESSAGE_BYTES",
    "CircuitBreaker",
    "SegmentClient",
    "SendOutcome",
    "SourceBackoff",
    "is_region_failure",
    "is_retryable",
]

RETRYABLE = frozenset({408, 410, 429, 460})
RATE_LIMITED = 429
REGION_TIMEOUTS = frozenset({408, 460})  # the request timed out on Segment's side: the region is struggling
NOT_RETRYABLE_5XX = frozenset({501, 505})
BACKOFF_BASE_S, BACKOFF_CAP_S, RETRY_AFTER_CAP_S = 0.5, 60.0, 300.0
BREAKER_THRESHOLD, BREAKER_COOLDOWN_S, BREAKER_MAX_COOLDOWN_S = 3, 5.0, 60.0
MAX_BACKED_OFF_SOURCES = 10_000  # "not before" times a warm environment keeps (expired ones are dropped first)
USER_AGENT = f"segment-forwarder/{__version__}"


def is_retryable(status: int) -> bool:
    """Segment's retry rule: 408, 410, 429, 460 and 5xx except 501/505."""
    return status in RETRYABLE or (500 <= status < 600 and status not in NOT_RETRYABLE_5XX)


def is_region_failure(status: int | None) -> bool:
    """Whether an answer says the region itself is failing: no answer (timeout, connection error), 408/460 or a
    retryable 5xx. A 429 limits one source and a 4xx concerns one request or key: the region answered."""
    return status is None or status in REGION_TIMEOUTS or (is_retryable(status) and status >= 500)


class CircuitBreaker:
    """One region's Segment, as a warm function has found it: after ``threshold`` failed requests in a row
    (``is_region_failure``: 5xx, timeouts, unreachable; never a 429 or another 4xx) it stops sending there for a
    cooldown (5 s, doubling each time it trips again, at most 60 s), then lets one request through: an answer
    that is no region failure closes it, a failure opens it again. A ``threshold`` of 0 never opens::

        breaker = CircuitBreaker()
        if breaker.allow():        # False while open (``remaining_s()`` says for how long)
            ...send...
            breaker.record(failed=True)

    Thread-safe; ``clock`` is ``time.monotonic`` unless a test gives another.
    """

    def __init__(
        self,
        threshold: int = BREAKER_THRESHOLD,
        cooldown_s: float = BREAKER_COOLDOWN_S,
        max_cooldown_s: float = BREAKER_MAX_COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._cooldown_s = cooldown_s
        self._max_cooldown_s = max_cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._trips = 0
        self._open_until: float | None = None
        self._probing = False

    def allow(self) -> bool:
        """Whether a request may go now (while half open: only one, the probe)."""
        with self._lock:
            if self._open_until is None:
                return True
            if self._clock() < self._open_until or self._probing:
                return False
            self._probing = True
            return True

    def record(self, *, failed: bool) -> None:
        """Count one request's answer."""
        with self._lock:
            self._probing = False
            if not failed:
                self._failures, self._trips, self._open_until = 0, 0, None
                return
            self._failures += 1
            if self._threshold and (self._open_until is not None or self._failures >= self._threshold):
                self._trips += 1
                cooldown = min(self._cooldown_s * 2 ** (self._trips - 1), self._max_cooldown_s)
                self._open_until = self._clock() + cooldown

    def remaining_s(self) -> float:
        """Seconds until it lets a request through again (0 when closed)."""
        with self._lock:
            return 0.0 if self._open_until is None else max(self._open_until - self._clock(), 0.0)


class SourceBackoff:
    """Per source (write key) "not before" times of a warm environment, from Segment's 429s::

        backoff = SourceBackoff()
        backoff.hold(write_key, seconds=2.0)   # Segment said Retry-After: 2
        backoff.remaining_s(write_key)         # 2.0 ... 0.0 once passed

    Keys are held by their SHA-256, never as given, so nothing here can show a write key. At most ``max_sources``
    are kept (those that have passed are dropped first, then the soonest to pass). Thread-safe.
    """

    def __init__(self, max_sources: int = MAX_BACKED_OFF_SOURCES, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_sources = max_sources
        self._clock = clock
        self._lock = threading.Lock()
        self._not_before: dict[str, float] = {}

    @staticmethod
    def _id(write_key: str) -> str:
        return hashlib.sha256(write_key.encode()).hexdigest()

    def hold(self, write_key: str, *, seconds: float) -> None:
        """Send nothing more with ``write_key`` for ``seconds`` (a longer hold already set stays)."""
        now = self._clock()
        with self._lock:
            key = self._id(write_key)
            self._not_before[key] = max(self._not_before.get(key, now), now + seconds)
            if len(self._not_before) > self._max_sources:
                self._not_before = {k: t for k, t in self._not_before.items() if t > now}
                while len(self._not_before) > self._max_sources:
                    del self._not_before[min(self._not_before, key=self._not_before.__getitem__)]

    def remaining_s(self, write_key: str) -> float:
        """Seconds until ``write_key`` may be used again (0 when it may now)."""
        with self._lock:
            not_before = self._not_before.get(self._id(write_key))
        return 0.0 if not_before is None else max(not_before - self._clock(), 0.0)

    def __len__(self) -> int:
        with self._lock:
            return len(self._not_before)


class SegmentClient:
    """Posts batches to a region's ``/v1/batch``; one instance (connection pool, circuit breakers, per-source
    backoff) per execution environment."""

    def __init__(
        self,
        endpoints: dict[str, str],
        pool: urllib3.PoolManager | None = None,
        breakers: dict[str, CircuitBreaker] | None = None,
        breaker_threshold: int = BREAKER_THRESHOLD,
        backoff: SourceBackoff | None = None,
    ) -> None:
        self._endpoints = {region: url.rstrip("/") for region, url in endpoints.items()}
        self._pool = pool or urllib3.PoolManager(
            num_pools=4, maxsize=8, retries=False, cert_reqs="CERT_REQUIRED", block=False
        )
        if breakers is None:
            breakers = {region: CircuitBreaker(breaker_threshold) for region in endpoints}
        self._breakers = breakers
        self._backoff = backoff if backoff is not None else SourceBackoff()

    def endpoint(self, region: str) -> str:
        """The batch URL of a region; a region without an endpoint is a KeyError (never another region)."""
        return f"{self._endpoints[region]}/v1/batch"

    def send(self, write_key: str, region: str, messages: list[dict[str, Any]], deadline: float) -> SendOutcome:
        """Send one batch (already within the limits) with retries until success, a final answer, ``deadline``,
        or the region's circuit breaker opening (then nothing more is sent there until it lets a probe through).

        While the source is held back by an earlier 429 (in this environment) nothing is sent: the outcome is
        retryable, ``segment_rate_limited``, with the seconds left as ``retry_after``.
        """
        url = self.endpoint(region)
        breaker = self._breakers[region]
        token = base64.b64encode(f"{write_key}:".encode()).decode()
        headers = {
            "Authorization": f"Basic {token}",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        attempt = requests = 0
        status: int | None = None
        reason = "segment_circuit_open"
        while True:
            held_s = self._backoff.remaining_s(write_key)
            if held_s > 0:
                if time.monotonic() + held_s + MIN_ATTEMPT_S > deadline:
                    return SendOutcome(False, True, status, "segment_rate_limited", requests, held_s)
                time.sleep(held_s)
            if not breaker.allow():
                return SendOutcome(False, True, status, reason, requests, breaker.remaining_s())
            remaining = max(deadline - time.monotonic(), MIN_ATTEMPT_S)
            body = encode_json({"batch": messages, "sentAt": iso_ms(datetime.now(UTC)), "writeKey": write_key})
            requests += 1
            try:
                response = self._pool.request(
                    "POST",
                    url,
                    body=body,
                    headers=headers,
                    timeout=urllib3.Timeout(connect=min(2.0, remaining), read=remaining),
                    redirect=False,
                    preload_content=True,
                )
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
                reason = f"segment answered {status}"
            except urllib3.exceptions.HTTPError as exc:
                status, retry_after = None, None
                reason = f"segment unreachable: {type(exc).__name__}"
            transient = status is None or is_retryable(status)
            breaker.record(failed=is_region_failure(status))
            if status is not None and 200 <= status < 300:
                return SendOutcome(True, False, status, "delivered", requests)
            if not transient:
                return SendOutcome(False, False, status, reason, requests)
            wait = retry_after if retry_after is not None else _backoff(attempt)
            attempt += 1
            if status == RATE_LIMITED:
                self._backoff.hold(write_key, seconds=wait)  # other calls with this key wait as well
            if time.monotonic() + wait + MIN_ATTEMPT_S > deadline:
                return SendOutcome(False, True, status, reason, requests, retry_after)
            time.sleep(wait)


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: 0.5 s base, 60 s cap."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))  # noqa: S311 - jitter, not crypto


def _retry_after(value: str | None) -> float | None:
    """Seconds of a Retry-After header (delta-seconds form), capped; None when absent, unreadable or not finite."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S) if math.isfinite(seconds) else None
