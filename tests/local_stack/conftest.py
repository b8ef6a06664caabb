"""Tests of the local stack itself (Lambda emulation, CLI) and of the Segment sink."""

from tests.support.stack_client import _no_iam_denials, api, stack

__all__ = ["_no_iam_denials", "api", "stack"]
