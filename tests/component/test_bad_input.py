"""Bad input gets a clear 4xx naming the field, loses nothing and sends nothing — never a 5xx."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.component.conftest import LambdaContext, http_event

GOOD = {
    "workspace_id": "ws-us",
    "visitor_id": "v-1",
    "conversion_id": "c-1",
    "conversion_type": "CLICK",
    "origin_url": "https://shop.example.com/pricing",
}
FUTURE = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")


def without(name: str) -> dict:
    return {k: v for k, v in GOOD.items() if k != name}


# (id, body, raw?, expected status, expected code, expected field)
CASES = [
    ("empty-body", "", True, 400, "invalid_body", "body"),
    ("whitespace-body", "   ", True, 400, "invalid_body", "body"),
    ("not-json", "workspace_id=ws-us", True, 400, "invalid_json", "body"),
    ("truncated-json", '{"workspace_id": "ws-us"', True, 400, "invalid_json", "body"),
    ("json-array", [GOOD], False, 400, "invalid_body", "body"),
    ("json-string", "hello", False, 400, "invalid_body", "body"),
    ("json-null", None, False, 400, "invalid_body", "body"),
    ("json-number", 42, False, 400, "invalid_body", "body"),
    ("missing-workspace", without("workspace_id"), False, 400, "missing_field", "workspace_id"),
    ("missing-visitor", without("visitor_id"), False, 400, "missing_field", "visitor_id"),
    ("missing-conversion-id", without("conversion_id"), False, 400, "missing_field", "conversion_id"),
    ("missing-origin-url", without("origin_url"), False, 400, "missing_field", "origin_url"),
    ("unknown-field", {**GOOD, "colour": "red"}, False, 400, "unknown_field", "colour"),
    ("numeric-visitor", {**GOOD, "visitor_id": 12345}, False, 400, "invalid_type", "visitor_id"),
    ("numeric-workspace", {**GOOD, "workspace_id": 7}, False, 400, "invalid_type", "workspace_id"),
    ("null-user", {**GOOD, "user_id": None}, False, 400, "invalid_type", "user_id"),
    ("bool-as-string", {**GOOD, "one_per_visitor": "true"}, False, 400, "invalid_type", "one_per_visitor"),
    ("object-visitor", {**GOOD, "visitor_id": {"id": "v"}}, False, 400, "invalid_type", "visitor_id"),
    ("empty-visitor", {**GOOD, "visitor_id": ""}, False, 400, "invalid_value", "visitor_id"),
    ("huge-visitor", {**GOOD, "visitor_id": "v" * 129}, False, 400, "invalid_value", "visitor_id"),
    ("huge-user", {**GOOD, "user_id": "u" * 257}, False, 400, "invalid_value", "user_id"),
    ("workspace-bad-chars", {**GOOD, "workspace_id": "ws us"}, False, 400, "invalid_value", "workspace_id"),
    ("workspace-newline", {**GOOD, "workspace_id": "ws-us\n"}, False, 400, "invalid_value", "workspace_id"),
    ("workspace-too-long", {**GOOD, "workspace_id": "w" * 65}, False, 400, "invalid_value", "workspace_id"),
    ("visitor-control-char", {**GOOD, "visitor_id": "v\x00"}, False, 400, "invalid_value", "visitor_id"),
    ("bad-conversion-type", {**GOOD, "conversion_type": "click"}, False, 400, "invalid_value", "conversion_type"),
    ("relative-url", {**GOOD, "origin_url": "/pricing"}, False, 400, "invalid_value", "origin_url"),
    ("ftp-url", {**GOOD, "origin_url": "ftp://files.example.com/a"}, False, 400, "invalid_value", "origin_url"),
    ("javascript-url", {**GOOD, "origin_url": "javascript:alert(1)"}, False, 400, "invalid_value", "origin_url"),
    ("url-without-host", {**GOOD, "origin_url": "https:///path"}, False, 400, "invalid_value", "origin_url"),
    ("url-with-space", {**GOOD, "origin_url": "https://a.example/x y"}, False, 400, "invalid_value", "origin_url"),
    (
        "url-too-long",
        {**GOOD, "origin_url": "https://a.example/" + "p" * 2048},
        False,
        400,
        "invalid_value",
        "origin_url",
    ),
    ("future-timestamp", {**GOOD, "timestamp": FUTURE}, False, 400, "invalid_value", "timestamp"),
    ("timestamp-without-zone", {**GOOD, "timestamp": "2026-11-29T10:00:00"}, False, 400, "invalid_value", "timestamp"),
    ("timestamp-not-a-date", {**GOOD, "timestamp": "2026-02-30T10:00:00Z"}, False, 400, "invalid_value", "timestamp"),
    ("timestamp-number", {**GOOD, "timestamp": 1764410000}, False, 400, "invalid_type", "timestamp"),
    ("context-not-object", {**GOOD, "context": "ip=1.2.3.4"}, False, 400, "invalid_type", "context"),
    ("context-ip-number", {**GOOD, "context": {"ip": 1234}}, False, 400, "invalid_type", "context.ip"),
    (
        "context-page-url-list",
        {**GOOD, "context": {"page": {"url": ["x"]}}},
        False,
        400,
        "invalid_type",
        "context.page.url",
    ),
    ("event-id-empty", {**GOOD, "event_id": ""}, False, 400, "invalid_value", "event_id"),
    (
        "lone-surrogate",
        '{"workspace_id":"ws-us","visitor_id":"\\ud800","conversion_id":"c","conversion_type":"CLICK",'
        '"origin_url":"https://a.example/"}',
        True,
        400,
        "invalid_value",
        "visitor_id",
    ),
    (
        "lone-surrogate-in-context",
        '{"workspace_id":"ws-us","visitor_id":"v","conversion_id":"c",'
        '"conversion_type":"CLICK","origin_url":"https://a.example/","context":{"page":{"title":"a\\udc00"}}}',
        True,
        400,
        "invalid_value",
        "context.page.title",
    ),
    ("invalid-utf8", b'{"workspace_id":"\xff"}', True, 400, "invalid_json", "body"),
]


@pytest.mark.parametrize(("body", "raw", "status", "code", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_conversion_requests_get_a_4xx_naming_the_field(stack, body, raw, status, code, field):
    handler = stack.handler("conversion")
    if isinstance(body, bytes):  # not UTF-8: API Gateway hands it over base64-encoded
        answer_status, answer = stack.post("conversion", body, handler, raw=True, base64_body=True)
    else:
        answer_status, answer = stack.post("conversion", body, handler, raw=raw)

    assert (answer_status, answer["error"]["code"], answer["error"]["field"]) == (status, code, field)
    assert answer["error"]["message"]
    assert stack.sink.requests() == []
    assert stack.drain("conversion") == []


def test_bad_base64_is_a_400(stack):
    event = http_event("assignment", "%%%", raw=True)
    event["isBase64Encoded"] = True
    result = stack.handler("assignment")(event, LambdaContext())
    assert result["statusCode"] == 400
    assert '"field": "body"' in result["body"]


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("assignment", {"workspace_id": "ws-us", "visitor_id": "v", "test_id": "t"}, "variant_id"),
        ("assignment", {"workspace_id": "ws-us", "visitor_id": "v", "test_id": 1, "variant_id": "b"}, "test_id"),
        ("assignment", {"workspace_id": "ws-us", "visitor_id": "v", "test_id": "t", "variant_id": "b", "x": 1}, "x"),
        ("identify", {"workspace_id": "ws-us", "visitor_id": "v", "test_id": "t"}, "test_id"),
        ("identify", {"visitor_id": "v"}, "workspace_id"),
    ],
)
def test_each_route_validates_its_own_schema(stack, kind, body, field):
    status, answer = stack.post(kind, body)

    assert status == 400
    assert answer["error"]["field"] == field
