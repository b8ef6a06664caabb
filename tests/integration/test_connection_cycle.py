"""A workspace's whole connection life over the local stack's API: connect → events delivered → disconnect →
events skipped → reconnect with region EU → events reach the EU host only, with the new key."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.stack_client import DEFAULT_SETTINGS, events_of, new_id, wait_for

pytestmark = pytest.mark.integration

CACHE_S = 1
# Ingest functions cache connections (ConnectionCacheSeconds, 60 s by default): 1 s keeps the test short.
STACK_OVERRIDES = {"parameters": {"ConnectionCacheSeconds": str(CACHE_S)}}


def assign(api: Any, workspace: str) -> tuple[str, dict]:
    visitor = new_id("v")
    status, answer = api.post(
        "/v1/assignments", {"workspace_id": workspace, "visitor_id": visitor, "test_id": "t-1", "variant_id": "a"}
    )
    assert status == 200, answer
    return visitor, answer


def test_connect_disconnect_and_reconnect_in_another_region(stack, api):
    from tests.support.leak_check import register_write_key  # imported by pytest_plugins first (assert rewrite)

    workspace = new_id("ws")
    us_key, eu_key = new_id("key-us"), new_id("key-eu")
    register_write_key(us_key)
    register_write_key(eu_key)
    path = f"/v1/workspaces/{workspace}/segment"

    status, answer = api.request("PUT", path, {"write_key": us_key, "region": "us"})
    assert (status, answer) == (
        200,
        {"connected": True, "region": "us", "write_key_hint": "…" + us_key[-4:], "settings": DEFAULT_SETTINGS},
    )
    visitor, answer = assign(api, workspace)
    assert answer["status"] == "delivered"
    assert {(e["region"], e["write_key"]) for e in events_of(stack, visitor)} == {("us", us_key)}

    assert api.request("DELETE", path) == (204, None)
    status, answer = api.request("GET", path)
    assert (status, answer["connected"]) == (200, False)
    assert set(answer) == {"connected", "health"}
    # Within the cache time the ingest functions stop forwarding.
    wait_for(lambda: assign(api, workspace)[1]["status"] == "skipped", timeout_s=CACHE_S + 5)
    before = len(stack.sink.events(write_key=us_key))
    visitor, answer = assign(api, workspace)
    assert answer == {"status": "skipped", "reason": "not_connected"}
    assert events_of(stack, visitor) == []

    status, answer = api.request("PUT", path, {"write_key": eu_key, "region": "EU"})
    assert (status, answer) == (
        200,
        {"connected": True, "region": "eu", "write_key_hint": "…" + eu_key[-4:], "settings": DEFAULT_SETTINGS},
    )

    def delivered_visitor() -> str | None:
        visitor, answer = assign(api, workspace)
        return visitor if answer["status"] == "delivered" else None

    visitor = wait_for(delivered_visitor, timeout_s=CACHE_S + 5)
    assert {(e["region"], e["write_key"]) for e in events_of(stack, visitor)} == {("eu", eu_key)}
    assert stack.sink.events(region="us", write_key=eu_key) == []
    assert len(stack.sink.events(write_key=us_key)) == before  # nothing more with the old key
