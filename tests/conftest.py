"""Fixtures of every test layer: the write-key leak check, a Segment sink per test, cold-started app modules.

Layers: ``tests/domain`` (pure, no AWS, no HTTP), ``tests/component`` (handlers + moto + the sink),
``tests/integration`` (the product over the local stack's HTTP API and queues), ``tests/local_stack`` (the local
stack's and the sink's own behaviour).

Hypothesis runs every example a test asks for, unless ``--hypothesis-profile=check`` (``make check``) asks for a
fifth of them or ``--hypothesis-profile=deep`` (``make deep``) four times as many (tests/support/profiles.py).

At the end of a session that started local stacks, the summary tells how many of the functions' AWS calls the IAM
check decided, which it denied, and which grants of template.yaml no call used ("IAM: granted but never used: ...").
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from local_stack import iam
from local_stack.segment_sink import SegmentSink
from tests.support.profiles import register_profiles

register_profiles()  # before the hypothesis plugin loads the profile a --hypothesis-profile option names

pytest_plugins = ["tests.support.leak_check"]  # fails any test whose output holds a registered write key


@pytest.fixture
def sink() -> Iterator[SegmentSink]:
    """A sink per test: a request a test left stalled (fault delay) cannot land in the next test's sink."""
    with SegmentSink() as running:
        yield running


@pytest.fixture(autouse=True)
def _no_stray_modules() -> Iterator[None]:
    """Forget the per-test app modules so that each test's handler is a cold start."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("app_"):
            del sys.modules[name]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The IAM check's report over every local stack the session started (nothing when none did)."""
    lines = list(iam.session_report())
    if lines:
        terminalreporter.section("IAM")
        for line in lines:
            terminalreporter.write_line(line)
