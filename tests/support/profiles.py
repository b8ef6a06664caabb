"""Hypothesis profiles, one knob for how many examples the generated tests run:

- ``default`` (``make test``, ``make unit``): the examples each test asks for;
- ``check`` (``make check``, the fast loop before a commit): a fifth of them (at least 10);
- ``deep`` (``make deep``, before a release or after touching the dedup core): four times as many.

tests/conftest.py registers ``check`` and ``deep``; pytest's ``--hypothesis-profile=<name>`` loads one. A test that
asks for a number of examples says so through ``examples``, so that every profile scales it::

    @settings(max_examples=examples(400), deadline=None)     # 400 under default, 80 under check, 1,600 under deep
    @given(stream=events())
    def test_...(stream): ...
"""

from __future__ import annotations

from hypothesis import settings

CHECK = "check"
DEEP = "deep"
CHECK_SHARE = 5  # the check profile runs one example in CHECK_SHARE
CHECK_MIN_EXAMPLES = 10
DEEP_FACTOR = 4  # the deep profile runs DEEP_FACTOR times the examples


def register_profiles() -> None:
    """Register ``check`` (a fifth of the default profile's examples: 100 -> 20) and ``deep`` (four times)."""
    examples_by_default = settings.get_profile("default").max_examples
    settings.register_profile(CHECK, max_examples=max(CHECK_MIN_EXAMPLES, examples_by_default // CHECK_SHARE))
    settings.register_profile(DEEP, max_examples=examples_by_default * DEEP_FACTOR)


def examples(asked: int) -> int:
    """How many examples a test that asks for ``asked`` runs under the loaded profile (read at import, after pytest
    loaded the profile): ``asked`` under default, a fifth of it (at least 10, or ``asked`` if fewer) under
    ``check``, four times under ``deep``."""
    profile = settings.get_current_profile_name()
    if profile == CHECK:
        return max(min(asked, CHECK_MIN_EXAMPLES), asked // CHECK_SHARE)
    if profile == DEEP:
        return asked * DEEP_FACTOR
    return asked
