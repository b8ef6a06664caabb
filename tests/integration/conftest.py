"""Integration tests: the product over the local stack's HTTP API and queues (fixtures in tests/stack_client.py)."""

from tests.stack_client import api, stack

__all__ = ["api", "stack"]
