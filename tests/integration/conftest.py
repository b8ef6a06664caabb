"""Integration tests: the product over the local stack's HTTP API and queues (fixtures in
tests/support/stack_client.py)."""

from tests.support.stack_client import _no_iam_denials, api, stack

__all__ = ["_no_iam_denials", "api", "stack"]
