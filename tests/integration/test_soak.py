"""The short soak (``python -m soak --quick``) inside ``make test``: 50 clients over HTTP and SQS, ~40% repeats, both
workspaces, workers SIGKILLed, Segment failing / slow / healthy, a connection changed mid-run; then every invariant
is checked from what the sink received (soak/invariants.py). Under a minute on two cores.

The seed is random and printed with the report (``SOAK_SEED=<n>`` repeats a workload; the timing never repeats).
While the core (being rewritten in parallel) still has the identity defects that
tests/integration/test_core_defects_found_by_the_soak.py reproduces, a run may find them: only those violations
turn the test into an expected failure (``KnownCoreDefect``); any other violation, an undrained queue, a request
that never got an answer, a transport error or a phase without its chaos fails it.
"""

from __future__ import annotations

import os
import random

import pytest

from soak import invariants as inv
from soak.run import PHASES, quick_config, run_soak
from tests.leak_check import register_write_key

pytestmark = pytest.mark.integration


class KnownCoreDefect(AssertionError):
    """Only violations of the kinds the core is known to have (see the module docstring)."""


def is_known_core_defect(violation: inv.Violation) -> bool:
    """A messageId re-sent with another content, an identity fact split or lost, a later variant kept."""
    identity = violation.fact.endswith(" identify") or " link " in violation.fact
    return violation.rule in (inv.CONTENTS, inv.NOT_FIRST) or (violation.rule in (inv.SPLIT, inv.LOST) and identity)


@pytest.mark.xfail(
    strict=False,
    raises=KnownCoreDefect,
    reason="known core defects, reproduced in test_core_defects_found_by_the_soak.py and left to the core rewrite: "
    "a Segment call slower than the HTTP budget releases claims Segment did receive (a messageId re-sent with another "
    "content, a user link under two messageIds); a crashed attempt's Identify is left in flight and never sent; an "
    "event following another of its SQS batch never sends its own user link",
)
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
    others = [v for v in report.evaluation.violations if not is_known_core_defect(v)]
    assert not others, "\n".join(map(str, others))
    if report.evaluation.violations:
        raise KnownCoreDefect("\n".join(map(str, report.evaluation.violations)))
