"""When a failed record comes back (backoff), when it stops (the horizon), and the Segment circuit breaker."""

from __future__ import annotations

import pytest

from segment_forwarder.retries import MAX_VISIBILITY_S, RetryPolicy
from segment_forwarder.segment import CircuitBreaker, SourceBackoff, is_region_failure

POLICY = RetryPolicy(horizon_s=72 * 3600, cap_s=900)


def receives_within(policy: RetryPolicy, seconds: float, *, dice: float) -> int:
    """How many receives a record that always fails gets within ``seconds`` (every draw ``dice``)."""
    elapsed, receives = 0.0, 1
    while True:
        elapsed += policy.delay_s(receives=receives, retry_after_s=None, dice=dice)
        if elapsed > seconds:
            return receives
        receives += 1


@pytest.mark.parametrize(("receives", "low", "high"), [(1, 1, 1), (2, 1, 2), (3, 2, 4), (6, 16, 32), (11, 450, 900)])
def test_the_delay_doubles_with_equal_jitter_up_to_the_cap(receives, low, high):
    delays = {POLICY.delay_s(receives=receives, retry_after_s=None, dice=dice) for dice in (0.0, 0.5, 0.999)}

    assert min(delays) == low and max(delays) == high


def test_retry_after_is_honoured_but_never_beyond_the_cap():
    assert POLICY.delay_s(receives=1, retry_after_s=120, dice=0.0) == 120
    assert POLICY.delay_s(receives=1, retry_after_s=5000, dice=0.0) == 900
    assert POLICY.delay_s(receives=1, retry_after_s=float("nan"), dice=0.0) == 1
    assert RetryPolicy(horizon_s=1, cap_s=10**6).delay_s(receives=40, retry_after_s=None, dice=1.0) == MAX_VISIBILITY_S


def test_a_72_hour_outage_costs_a_few_hundred_receives():
    fewest, most = receives_within(POLICY, 72 * 3600, dice=0.999), receives_within(POLICY, 72 * 3600, dice=0.0)

    # about 10 receives to reach the cap, then one every 450-900 s: within the bounds that gives, not thousands
    assert 72 * 3600 / 900 < fewest < most <= 72 * 3600 / 450 + 12


def test_the_policy_is_exhausted_at_the_horizon_or_at_its_receive_limit():
    assert not POLICY.exhausted(now_ms=72 * 3600 * 1000 - 1, since_ms=0)
    assert POLICY.exhausted(now_ms=72 * 3600 * 1000, since_ms=0)
    assert not POLICY.exhausted(now_ms=1, since_ms=0, receives=10**6)  # no receive limit
    limited = RetryPolicy(horizon_s=72 * 3600, cap_s=900, max_receives=5)
    assert not limited.exhausted(now_ms=1, since_ms=0, receives=4)
    assert limited.exhausted(now_ms=1, since_ms=0, receives=5)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_three_failures_in_a_row_and_lets_one_probe_through_after_its_cooldown():
    clock = Clock()
    breaker = CircuitBreaker(clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record(failed=True)
    breaker.record(failed=False)  # a success in between: the count starts again
    for _ in range(3):
        assert breaker.allow()
        breaker.record(failed=True)

    assert not breaker.allow() and breaker.remaining_s() == 5.0
    clock.now += 5.0
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one while it is out
    breaker.record(failed=True)
    assert breaker.remaining_s() == 10.0  # the cooldown doubles
    clock.now += 10.0
    assert breaker.allow()
    breaker.record(failed=False)
    assert breaker.allow() and breaker.remaining_s() == 0.0


def test_the_cooldown_never_exceeds_a_minute():
    clock = Clock()
    breaker = CircuitBreaker(clock=clock)
    for _ in range(20):
        clock.now += breaker.remaining_s()
        assert breaker.allow()
        breaker.record(failed=True)

    assert breaker.remaining_s() == 60.0


@pytest.mark.parametrize(("status", "down"), [(None, True), (500, True), (503, True), (408, True), (460, True)])
def test_what_says_the_region_is_down(status, down):
    assert is_region_failure(status) is down


@pytest.mark.parametrize("status", [200, 400, 401, 403, 404, 410, 413, 422, 429, 501, 505])
def test_a_rate_limit_or_a_refusal_says_the_region_is_up(status):
    assert not is_region_failure(status)


def test_a_source_held_back_by_a_429_is_held_by_a_hash_of_its_key_and_released_on_time():
    clock = Clock()
    backoff = SourceBackoff(clock=clock)
    backoff.hold("key-a-0001", seconds=2.0)
    backoff.hold("key-a-0001", seconds=0.5)  # a shorter hold never shortens the one set

    assert backoff.remaining_s("key-a-0001") == 2.0
    assert backoff.remaining_s("key-b-0002") == 0.0  # another source is not held
    assert "key-a-0001" not in repr(vars(backoff))  # nothing shows the key itself
    clock.now += 2.0
    assert backoff.remaining_s("key-a-0001") == 0.0


def test_the_sources_held_back_are_bounded():
    clock = Clock()
    backoff = SourceBackoff(max_sources=3, clock=clock)
    for index in range(10):
        backoff.hold(f"key-{index}", seconds=10.0 + index)

    assert len(backoff) == 3
    assert [backoff.remaining_s(f"key-{index}") > 0 for index in (7, 8, 9)] == [True] * 3  # the last to pass


def test_a_threshold_of_zero_never_opens():
    breaker = CircuitBreaker(threshold=0, clock=Clock())
    for _ in range(10):
        assert breaker.allow()
        breaker.record(failed=True)

    assert breaker.remaining_s() == 0.0
