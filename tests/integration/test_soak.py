"""The short soak (``python -m soak --quick``) inside ``make test``: 50 clients over HTTP and SQS, ~40% repeats, both
workspaces, a neighbour workspace whose source Segment refuses, workers SIGKILLed, Segment failing / slow / healthy, a
connection changed mid-run; then every invariant is checked from what the sink received (soak/invariants.py), and
the healthy workspaces' p95 answer time with the failing neighbour against the one with a quiet neighbour.

The seed is random and printed with the report (``SOAK_SEED=<n>`` repeats a workload; the timing never repeats).
Any violation fails the test, and so do an undrained queue, a request that never got an answer below 500, a
transport error (the stack must hold its 50 clients), a failed chaos step and a phase without its chaos.
"""

from __future__ import annotations

import os
import random

import pytest

from soak.run import PHASES, quick_config, run_soak
from tests.support.leak_check import register_write_key

pytestmark = pytest.mark.integration


def test_a_short_soak_keeps_every_invariant():
    seed = int(os.environ.get("SOAK_SEED") or random.SystemRandom().randrange(1_000_000))

    report = run_soak(quick_config(seed=seed), out=print)

    for key in report.write_keys:
        register_write_key(key)  # the report and the log must never show them
    print(report.format())
    assert not report.errors, report.errors  # every kill, fault switch and connection change worked
    assert report.settle_s is not None, "the queues did not drain"
    assert report.tally.outcomes["failed"] == 0, "a request never got an answer below 500"
    assert report.tally.transport_errors.total() == 0, "the stack reset or refused a connection"
    assert sorted(report.phase_requests) == sorted(PHASES)
    assert sum(report.phase_requests.values()) == len(report.requests) == quick_config().requests
    assert report.kills.total() > 0 and report.segment_periods.total() > 0
    assert len(report.connection_changes) == 3  # demo moved, demo-eu off and on again
    assert report.evaluation.deliveries > 0
    assert report.evaluation.violations == [], "\n".join(map(str, report.evaluation.violations))
    # a failing neighbour (its source refused: 429, 401, 400) leaves the healthy workspaces' answer times alone
    assert report.neighbour_periods.total() > 0 and report.neighbour_requests
    assert report.tenants.ok, report.tenants.format()
