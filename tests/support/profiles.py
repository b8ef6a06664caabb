"""Hypothesis profiles: ``default`` (``make test``, ``make unit``: every example a test asks for) and ``check``
(``make check``, the fast loop before a commit: a fifth of them). tests/conftest.py registers ``check``; pytest's
``--hypothesis-profile=check`` loads it. A test that asks for more examples than hypothesis's default says so
through ``examples``, so that the ``check`` profile scales it down too::

    @settings(max_examples=examples(400), deadline=None)     # 400 under default, 80 under check
    @given(stream=events())
    def test_...(stream): ...
"""

from __future__ import annotations

from hypothesis import settings

CHECK = "check"
CHECK_SHARE = 5  # the check profile runs one example in CHECK_SHARE
CHECK_MIN_EXAMPLES = 10


def register_check_profile() -> None:
    """Register ``check``: the default profile with a fifth of its examples (100 -> 20)."""
    examples_by_default = settings.get_profile("default").max_examples
    settings.register_profile(CHECK, max_examples=max(CHECK_MIN_EXAMPLES, examples_by_default // CHECK_SHARE))


def examples(deep: int) -> int:
    """How many examples a test that asks for ``deep`` runs under the loaded profile (read at import, after pytest
    loaded the profile): ``deep`` under default, a fifth of it (at least 10) under ``check``."""
    if settings.get_current_profile_name() == CHECK:
        return max(CHECK_MIN_EXAMPLES, deep // CHECK_SHARE)
    return deep
