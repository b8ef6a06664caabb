"""pytest plugin: no write key in any test's logs, errors or metrics, for the whole test suite.

The fixtures that connect workspaces register each write key (``register_write_key``; ``Stack.connect`` does it).
After every phase of every test (setup, call, teardown) the captured stdout, stderr and log sections of its report
are searched for every key registered so far: Powertools' JSON log lines (exceptions included) and its EMF metrics
(when not disabled) go to stdout, standard logging records to the log section. A phase whose output holds a key is
turned into a failure naming the test, the phase and the section; the key itself is never printed (only a hint, its
last 4 characters when it has at least 8, as the product shows it), and it is redacted from the output pytest shows.

Text that never reaches the captured output (an HTTP answer body, a queue message attribute) can be checked with
``scan(text, where)``: a leak found there fails the running test the same way.

Output a test reads itself (``capsys.readouterr()``, ``caplog``) is no longer in its report; such tests check it
themselves (tests/component/test_connection_api.py does).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

_keys: set[str] = set()
_pending: list[str] = []  # leaks found by scan() in the current phase
MIN_KEY_CHARS = 4  # a shorter string would match unrelated output


def register_write_key(key: str) -> None:
    """Register a write key that must never appear in any test's output."""
    if len(key) < MIN_KEY_CHARS:
        raise ValueError(f"write keys under {MIN_KEY_CHARS} characters cannot be checked (they match anything)")
    _keys.add(key)


def _hint(key: str) -> str:
    return "…" + key[-4:] if len(key) >= 8 else "…"  # the product's hint rule (Connection.hint)


def _found(text: str) -> list[str]:
    """Hints of the registered keys that occur in ``text``."""
    return sorted(_hint(key) for key in _keys if key in text)


def _redact(text: str) -> str:
    for key in _keys:
        if key in text:
            text = text.replace(key, f"<write key {_hint(key)} redacted>")
    return text


def scan(text: str, where: str = "scanned text") -> None:
    """Check text that does not go to the captured output; a key in it fails the running test."""
    for hint in _found(text):
        _pending.append(f"a registered write key (hint {hint}) in {where}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    leaks = list(_pending)
    _pending.clear()
    for title, content in report.sections:
        if title.startswith("Captured ") and title.endswith(f" {report.when}"):
            leaks += [f"a registered write key (hint {hint}) in '{title}'" for hint in _found(content)]
    # The report's copy of the output is what pytest prints for a failure: never with a key in it.
    report.sections = [(title, _redact(content)) for title, content in report.sections]
    if not leaks:
        return report
    message = f"WRITE KEY LEAK in {report.nodeid} ({report.when}): " + "; ".join(leaks)
    if report.failed:
        report.sections.append(("write key leak", message))
    else:
        report.outcome = "failed"
        report.longrepr = message
    return report
