"""Workspace settings over the local stack: connect with settings (PUT), events over HTTP and the queue, what
the sink received; a settings change reaches the ingest functions within the connection cache period.

Messages are found by the workspace's own write key (a bridged workspace does not send the visitor id as
``anonymousId``, so ``events_of`` would not find them).
"""

from __future__ import annotations

from typing import Any

import pytest

from local_stack.stack import LocalStack
from tests.support.stack_client import DEFAULT_SETTINGS, Api, new_id, queue_producer, wait_for

pytestmark = pytest.mark.integration

CACHE_S = 1
STACK_OVERRIDES = {"parameters": {"ConnectionCacheSeconds": str(CACHE_S)}}
LIBRARY = {"name": "segment-forwarder", "version": "1.0.0"}
GRANTED = {"consent": {"categoryPreferences": {"Analytics": True}}}
SETTINGS = {
    "anonymous_id": "segment",
    "ip": "truncate",
    "user_agent": "drop",
    "consent_category": "Analytics",
    "events": ["identify", "experiment_viewed", "conversion_triggered"],
    "spec_names": False,
}


def connect(api: Api, settings: dict[str, Any] | None) -> tuple[str, str]:
    """A new workspace connected to the sink with ``settings``; its id and write key."""
    from tests.support.leak_check import register_write_key  # imported by pytest_plugins first (assert rewrite)

    workspace, key = new_id("ws"), new_id("key")
    register_write_key(key)
    body: dict[str, Any] = {"write_key": key}
    if settings is not None:
        body["settings"] = settings
    status, answer = api.request("PUT", f"/v1/workspaces/{workspace}/segment", body)
    assert status == 200, answer
    return workspace, key


def messages(stack: LocalStack, key: str) -> list[dict[str, Any]]:
    """What the sink received with this write key, without ``sentAt`` and ``messageId``."""
    return [
        {k: v for k, v in e["message"].items() if k not in ("sentAt", "messageId")}
        for e in stack.sink.events(write_key=key)
    ]


def test_settings_set_with_the_connection_shape_what_segment_receives(stack, api):
    workspace, key = connect(api, SETTINGS)
    assert api.request("GET", f"/v1/workspaces/{workspace}/segment")[1]["settings"] == SETTINGS
    visitor, ajs = new_id("v"), new_id("ajs")
    context = {"ip": "203.0.113.7", "userAgent": "Mozilla/5.0", "locale": "de-DE", **GRANTED}
    assignment = {
        "workspace_id": workspace,
        "visitor_id": visitor,
        "segment_anonymous_id": ajs,
        "test_id": "t-checkout",
        "variant_id": "b",
        "timestamp": "2026-11-29T12:00:00Z",
    }

    denied = api.post("/v1/assignments", {**assignment, "context": {**context, "consent": {}}})
    delivered = api.post("/v1/assignments", {**assignment, "context": context})
    conversion = {
        "workspace_id": workspace,
        "visitor_id": visitor,
        "segment_anonymous_id": ajs,
        "conversion_id": "c-signup",
        "conversion_type": "CLICK",
        "origin_url": "https://shop.example.com/pricing",
        "one_per_visitor": True,
        "timestamp": "2026-11-29T12:00:01Z",
        "context": context,
    }
    queue_producer(stack).send("conversion", [conversion])

    assert denied == (200, {"status": "skipped", "reason": "no_consent"})
    assert delivered[0] == 200 and delivered[1]["status"] == "delivered"
    wait_for(lambda: len(messages(stack, key)) >= 3)
    sent_context = {"ip": "203.0.113.0", "locale": "de-DE", **GRANTED, "library": LIBRARY}
    assert messages(stack, key) == [
        {
            "type": "identify",
            "anonymousId": ajs,
            "traits": {"visitor_id": visitor},
            "timestamp": "2026-11-29T12:00:00.000Z",
            "context": sent_context,
        },
        {
            "type": "track",
            "event": "Experiment Viewed",
            "anonymousId": ajs,
            "properties": {"test_id": "t-checkout", "variant_id": "b", "visitor_id": visitor},
            "timestamp": "2026-11-29T12:00:00.000Z",
            "context": sent_context,
        },
        {
            "type": "track",
            "event": "Conversion Triggered",
            "anonymousId": ajs,
            "properties": {
                "conversion_id": "c-signup",
                "conversion_type": "CLICK",
                "origin_url": "https://shop.example.com/pricing",
                "visitor_id": visitor,
            },
            "timestamp": "2026-11-29T12:00:01.000Z",
            "context": sent_context,
        },
    ]


def test_a_settings_change_takes_effect_within_the_cache_period(stack, api):
    workspace, key = connect(api, None)
    assert api.request("GET", f"/v1/workspaces/{workspace}/segment")[1]["settings"] == DEFAULT_SETTINGS
    path = f"/v1/workspaces/{workspace}/segment"

    def assign() -> str:
        visitor = new_id("v")
        body = {"workspace_id": workspace, "visitor_id": visitor, "test_id": "t-1", "variant_id": "a"}
        status, answer = api.post("/v1/assignments", body)
        assert status == 200, answer
        return visitor

    first = assign()
    assert [m["type"] for m in messages(stack, key) if m["anonymousId"] == first] == ["identify", "track"]

    status, answer = api.request("PUT", path, {"write_key": key, "settings": {"events": ["experiment_viewed"]}})
    assert (status, answer["settings"]["events"]) == (200, ["experiment_viewed"])

    def track_only() -> str | None:
        visitor = assign()
        types = [m["type"] for m in messages(stack, key) if m["anonymousId"] == visitor]
        return visitor if types == ["track"] else None

    wait_for(track_only, timeout_s=CACHE_S + 5)
    status, answer = api.post("/v1/identify", {"workspace_id": workspace, "visitor_id": new_id("v")})
    assert (status, answer) == (200, {"status": "skipped", "reason": "not_forwarded"})
