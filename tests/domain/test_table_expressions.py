"""The table's pure parts: a claim's update expression, and when an erase that met held facts is to run again."""

from __future__ import annotations

import re

import pytest

from segment_forwarder.claims import claim_update
from segment_forwarder.visitor_facts import retry_after_s


def clauses(update: str) -> dict[str, list[str]]:
    """An UpdateExpression's clauses: {"SET": ["a = :a", ...], "ADD": ["n :one"]} (no commas inside functions)."""
    parts = re.split(r"\b(SET|ADD|REMOVE|DELETE)\s", update)
    assert parts[0] == ""
    found: dict[str, list[str]] = {}
    for action, body in zip(parts[1::2], parts[2::2], strict=True):
        assert action not in found, f"{action} twice in {update!r}"
        found[action] = [part.strip() for part in re.split(r",(?![^(]*\))", body) if part.strip()]
    return found


def targets(update: str) -> list[str]:
    found = clauses(update)
    return [part.split("=")[0].strip() for part in found["SET"]] + [part.split()[0] for part in found["ADD"]]


@pytest.mark.parametrize("identify", [False, True])
@pytest.mark.parametrize("hashed", [False, True])
def test_a_claim_takes_the_lease_keeps_the_first_content_and_counts_the_attempt(identify, hashed):
    found = clauses(claim_update(identify=identify, hashed=hashed))

    assert set(found) == {"SET", "ADD"}
    assert found["ADD"] == ["attempts :one"]
    assert {"#status = :pending", "lease_until = :lease", "claim_token = :token", "updated_at = :now"} <= set(
        found["SET"]
    )
    assert "content = if_not_exists(content, :content)" in found["SET"]  # a resend carries what was recorded
    assert "first_attempt_at = if_not_exists(first_attempt_at, :now)" in found["SET"]
    names = targets(claim_update(identify=identify, hashed=hashed))
    assert len(names) == len(set(names))  # DynamoDB refuses an expression that sets an attribute twice


def test_only_a_hashed_key_records_the_fact_id():
    assert "fact_name = :name" in clauses(claim_update(identify=False, hashed=True))["SET"]
    assert "fact_name" not in claim_update(identify=False, hashed=False)
    assert "fact_name = :name" in clauses(claim_update(identify=True, hashed=True))["SET"]


def test_an_identify_claim_sets_its_expiry_over_a_tombstone_s_and_other_facts_keep_their_first():
    assert "expires_at = :expires" in clauses(claim_update(identify=True, hashed=False))["SET"]
    assert (
        "expires_at = if_not_exists(expires_at, :expires)" in clauses(claim_update(identify=False, hashed=False))["SET"]
    )


def test_an_erase_that_met_held_facts_runs_again_a_second_after_the_last_lease_ends():
    assert retry_after_s([], now=1_000) == 0  # nothing held: nothing to wait for
    assert retry_after_s([1_030], now=1_000) == 31
    assert retry_after_s([1_010, 1_030, 1_020], now=1_000) == 31  # the last lease, not the first
    assert retry_after_s([1_000], now=1_000) == 1  # a lease ending now
    assert retry_after_s([990], now=1_000) == 1  # already ended (the lease keeps changing hands): at least 1 s
