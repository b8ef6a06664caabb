"""Tests of the local stack itself (Lambda emulation, CLI) and of the Segment sink."""

from tests.stack_client import api, stack

__all__ = ["api", "stack"]
