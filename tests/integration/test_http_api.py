"""The HTTP API end to end: each ingest route to the sink, duplicates, regions, auth, the gateway's own answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from local_stack.stack import LocalStack
from tests.support.stack_client import events_of, new_id, wait_for

pytestmark = pytest.mark.integration

LIBRARY = {"name": "segment-forwarder", "version": "1.0.0"}
CONTEXT = {"ip": "203.0.113.7", "userAgent": "Mozilla/5.0", "page": {"url": "https://shop.example.com/pricing"}}


def _timestamp() -> tuple[str, str]:
    """A recent timestamp as a client sends it, and as Segment must receive it (UTC, milliseconds)."""
    moment = datetime.now(UTC).replace(microsecond=123456) - timedelta(minutes=5)
    sent = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    expected = moment.strftime("%Y-%m-%dT%H:%M:%S.123Z")
    return sent, expected


def _messages(stack: LocalStack, visitor: str, region: str | None = None) -> list[dict]:
    """The visitor's messages at the sink, without ``sentAt`` (set when posted, not ours to predict)."""
    return [{k: v for k, v in e["message"].items() if k != "sentAt"} for e in events_of(stack, visitor, region)]


# -- each ingest route, end to end ---------------------------------------------------------------------------


def test_assignment_of_a_new_visitor_sends_identify_then_experiment_viewed(stack, api):
    visitor = new_id("v")
    sent_at, timestamp = _timestamp()
    body = {
        "workspace_id": "demo",
        "visitor_id": visitor,
        "test_id": "t-checkout",
        "variant_id": "b",
        "test_name": "Checkout button",
        "variant_name": "Green button",
        "timestamp": sent_at,
        "context": CONTEXT,
    }

    status, answer = api.post("/v1/assignments", body)

    assert status == 200, answer
    assert answer["status"] == "delivered"
    identify_id, track_id = answer["message_ids"]
    context = {**CONTEXT, "library": LIBRARY}
    assert _messages(stack, visitor) == [
        {
            "type": "identify",
            "messageId": identify_id,
            "anonymousId": visitor,
            "timestamp": timestamp,
            "context": context,
        },
        {
            "type": "track",
            "event": "Experiment Viewed",
            "messageId": track_id,
            "anonymousId": visitor,
            "properties": {
                "test_id": "t-checkout",
                "variant_id": "b",
                "experiment_id": "t-checkout",
                "variation_id": "b",
                "test_name": "Checkout button",
                "experiment_name": "Checkout button",
                "variant_name": "Green button",
                "variation_name": "Green button",
            },
            "timestamp": timestamp,
            "context": context,
        },
    ]
    received = events_of(stack, visitor)
    assert {(e["region"], e["write_key"]) for e in received} == {("us", stack.write_key("demo"))}
    assert received[0]["message"]["sentAt"].endswith("Z")


def test_conversion_sends_conversion_triggered_with_its_properties(stack, api):
    visitor = new_id("v")
    body = {
        "workspace_id": "demo",
        "visitor_id": visitor,
        "user_id": "u-42",
        "conversion_id": "c-signup",
        "conversion_type": "PAGE_VIEW",
        "origin_url": "https://shop.example.com/thanks?plan=pro",
    }

    status, answer = api.post("/v1/conversions", body)

    assert status == 200, answer
    messages = _messages(stack, visitor)
    assert [(m["type"], m.get("event")) for m in messages] == [("identify", None), ("track", "Conversion Triggered")]
    identify, track = messages
    assert [identify["messageId"], track["messageId"]] == answer["message_ids"]
    assert identify["userId"] == track["userId"] == "u-42"
    assert track["properties"] == {
        "conversion_id": "c-signup",
        "conversion_type": "PAGE_VIEW",
        "origin_url": "https://shop.example.com/thanks?plan=pro",
    }
    assert track["context"] == {"library": LIBRARY}


def test_identify_sends_one_identify_and_then_is_a_duplicate(stack, api):
    visitor = new_id("v")
    body = {"workspace_id": "demo", "visitor_id": visitor, "user_id": "u-7", "context": {"locale": "de-DE"}}

    first = api.post("/v1/identify", body)
    again = api.post("/v1/identify", body)

    assert first[0] == 200 and first[1]["status"] == "delivered"
    assert again == (200, {"status": "duplicate"})
    messages = _messages(stack, visitor)
    assert len(messages) == 1
    assert messages[0]["type"] == "identify"
    assert messages[0]["messageId"] == first[1]["message_ids"][0]
    assert (messages[0]["anonymousId"], messages[0]["userId"]) == (visitor, "u-7")
    assert messages[0]["context"] == {"locale": "de-DE", "library": LIBRARY}


# -- duplicates ----------------------------------------------------------------------------------------------


def test_repeated_assignment_is_a_duplicate_and_sends_nothing(stack, api):
    visitor = new_id("v")
    body = {"workspace_id": "demo", "visitor_id": visitor, "test_id": "t-1", "variant_id": "a"}
    assert api.post("/v1/assignments", body)[0] == 200
    before = len(stack.sink.events())

    assert api.post("/v1/assignments", body) == (200, {"status": "duplicate"})
    assert api.post("/v1/assignments", {**body, "variant_id": "b"}) == (200, {"status": "duplicate"})

    assert len(stack.sink.events()) == before
    tracks = [m for m in _messages(stack, visitor) if m["type"] == "track"]
    assert [t["properties"]["variant_id"] for t in tracks] == ["a"]


def test_one_per_visitor_conversion_is_forwarded_once_and_a_plain_one_every_time(stack, api):
    visitor = new_id("v")
    base = {
        "workspace_id": "demo",
        "visitor_id": visitor,
        "conversion_id": "c-buy",
        "conversion_type": "CLICK",
        "origin_url": "https://shop.example.com/",
    }
    once = {**base, "one_per_visitor": True}

    assert api.post("/v1/conversions", once)[1]["status"] == "delivered"
    assert api.post("/v1/conversions", once) == (200, {"status": "duplicate"})
    plain = [api.post("/v1/conversions", base) for _ in range(2)]
    with_event_id = [api.post("/v1/conversions", {**base, "event_id": "e-1"}) for _ in range(2)]

    assert [p[1]["status"] for p in plain] == ["delivered", "delivered"]
    assert [p[1]["status"] for p in with_event_id] == ["delivered", "duplicate"]
    tracks = [m for m in _messages(stack, visitor) if m["type"] == "track"]
    assert len(tracks) == 4  # one-per-visitor once, plain twice, with event_id once
    assert len({t["messageId"] for t in tracks}) == 4
    assert sum(m["type"] == "identify" for m in _messages(stack, visitor)) == 1


def test_workspace_without_connection_is_skipped(stack, api):
    visitor = new_id("v")
    body = {"workspace_id": new_id("nobody"), "visitor_id": visitor}

    assert api.post("/v1/identify", body) == (200, {"status": "skipped", "reason": "not_connected"})
    assert events_of(stack, visitor) == []


# -- regions ---------------------------------------------------------------------------------------------------


def test_eu_workspace_reaches_only_the_eu_endpoint_with_its_own_key(stack, api):
    visitor = new_id("v")
    body = {"workspace_id": "demo-eu", "visitor_id": visitor, "test_id": "t-eu", "variant_id": "a"}

    status, answer = api.post("/v1/assignments", body)

    assert status == 200 and answer["status"] == "delivered"
    received = events_of(stack, visitor)
    assert len(received) == 2
    assert {(e["region"], e["write_key"]) for e in received} == {("eu", stack.write_key("demo-eu"))}
    assert events_of(stack, visitor, region="us") == []


# -- authentication and the gateway's own answers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "refusal"),
    [
        ({"token": ""}, (403, {"message": "Forbidden"})),  # API Gateway's answer to an unsigned request (IAM)
        ({"token": "wrong-token"}, (401, {"message": "Unauthorized"})),
        ({"authorization": "Basic aW50ZWdyYXRpb24tdG9rZW46"}, (401, {"message": "Unauthorized"})),
        ({"authorization": "Bearer"}, (401, {"message": "Unauthorized"})),
    ],
    ids=["no-token", "wrong-token", "basic-scheme", "empty-bearer"],
)
@pytest.mark.parametrize("path", ["/v1/identify", "/v1/assignments", "/v1/conversions"])
def test_requests_without_the_token_are_refused_before_the_function_runs(stack, api, auth, refusal, path):
    visitor = new_id("v")
    body = {
        "workspace_id": "demo",
        "visitor_id": visitor,
        "test_id": "t",
        "variant_id": "a",
        "conversion_id": "c",
        "conversion_type": "CLICK",
        "origin_url": "https://x.example/",
    }
    before = len(stack.sink.requests())

    assert api.post(path, body, **auth) == refusal
    assert api.post(path, raw=b"not json", **auth) == refusal
    assert len(stack.sink.requests()) == before
    assert events_of(stack, visitor) == []


def test_connection_routes_require_the_token_too(stack, api):
    assert api.request("GET", "/v1/workspaces/demo/segment", token="") == (403, {"message": "Forbidden"})
    assert api.request("DELETE", "/v1/workspaces/demo/segment", token="nope") == (401, {"message": "Unauthorized"})


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/assignments"), ("POST", "/v1/assignment"), ("POST", "/v1/identify/"), ("GET", "/")],
)
def test_unknown_routes_answer_404_as_api_gateway(api, method, path):
    assert api.request(method, path, token="") == (404, {"message": "Not Found"})
    assert api.request(method, path) == (404, {"message": "Not Found"})


def test_a_body_over_api_gateways_10_mb_is_refused_with_413(stack, api):
    before = len(stack.sink.requests())

    status, body = api.post("/v1/identify", raw=b" " * (10 * 1024 * 1024 + 1))

    assert (status, body) == (413, {"message": "Request Entity Too Large"})
    assert len(stack.sink.requests()) == before


def test_a_body_over_32_kb_reaches_the_function_which_answers_413(api):
    body = {"workspace_id": "demo", "visitor_id": new_id("v"), "context": {"userAgent": "x" * 40_000}}

    status, answer = api.post("/v1/identify", body)

    assert status == 413
    assert answer["error"]["code"] == "payload_too_large"


def test_a_body_that_is_not_utf8_arrives_base64_encoded_and_is_rejected_as_json(api):
    status, answer = api.post("/v1/identify", raw=b'{"workspace_id": "\xff\xfe"}')

    assert status == 400
    assert answer["error"]["code"] == "invalid_json"
    assert answer["error"]["field"] == "body"


def test_schema_violations_name_the_field(api):
    status, answer = api.post(
        "/v1/assignments", {"workspace_id": "demo", "visitor_id": 42, "test_id": "t", "variant_id": "a"}
    )

    assert status == 400
    assert answer["error"]["field"] == "visitor_id"


def test_connection_status_route_reaches_the_connection_function(stack, api):
    assert "ConnectionFunction" not in stack.unavailable_functions()

    status, answer = api.request("GET", "/v1/workspaces/demo-eu/segment")

    assert status == 200, answer
    assert answer["connected"] is True
    assert answer["region"] == "eu"
    assert answer["write_key_hint"] == "…" + stack.write_key("demo-eu")[-4:]


def test_a_workspace_connected_over_the_api_is_forwarded_to_its_region(stack, api):
    assert "ConnectionFunction" not in stack.unavailable_functions()
    workspace, visitor = new_id("ws"), new_id("v")
    write_key = new_id("key-eu")
    from tests.support.leak_check import register_write_key  # imported by pytest_plugins first (assert rewrite)

    register_write_key(write_key)  # never in any output or answer from here on

    status, answer = api.request("PUT", f"/v1/workspaces/{workspace}/segment", {"write_key": write_key, "region": "eu"})
    assert status == 200, answer
    assert answer["connected"] is True and answer["region"] == "eu"
    assert write_key not in str(answer)

    status, answer = api.post("/v1/identify", {"workspace_id": workspace, "visitor_id": visitor})
    assert status == 200 and answer["status"] == "delivered", answer
    assert {(e["region"], e["write_key"]) for e in events_of(stack, visitor)} == {("eu", write_key)}

    status, answer = api.post(f"/v1/workspaces/{workspace}/segment/test")
    assert status == 200, answer
    test_events = wait_for(
        lambda: [e for e in stack.sink.events(write_key=write_key) if e["message"]["type"] == "track"]
    )
    assert test_events[0]["message"]["messageId"] == answer["message_id"]
    assert test_events[0]["region"] == "eu"

    assert api.request("DELETE", f"/v1/workspaces/{workspace}/segment") == (204, None)
    assert api.request("GET", f"/v1/workspaces/{workspace}/segment")[1]["connected"] is False
