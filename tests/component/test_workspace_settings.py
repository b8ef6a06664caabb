"""Workspace settings through the real ingest handlers (moto, the Segment sink over HTTP), each setting on both
paths, judged field by field on what the sink received.

Messages with a bridged ``anonymousId`` are judged on their own terms here (the soak's evaluator and
``tests/support/model.py`` find a visitor's messages by ``anonymousId`` = visitor id, which a bridged workspace does not
send).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from segment_forwarder import LIBRARY
from tests.component.conftest import LambdaContext, sqs_record
from tests.support.stack_client import DEFAULT_SETTINGS

PATHS = ("http", "sqs")
WS = "ws-set"
KEY = "key-set-0003"
VISITOR = "v-1001"
AJS = "6f1c2e4a-ajs-anonymous-id"
TIMESTAMP = "2026-11-29T12:00:00.000Z"
LIB = {"library": LIBRARY}
GRANTED = {"consent": {"categoryPreferences": {"Analytics": True, "Advertising": False}}}
DENIED = {"consent": {"categoryPreferences": {"Analytics": False, "Advertising": True}}}


def body(kind: str, **fields: Any) -> dict[str, Any]:
    """A request body of ``kind`` for workspace WS and VISITOR, at TIMESTAMP."""
    base: dict[str, Any] = {"workspace_id": WS, "visitor_id": VISITOR, "timestamp": TIMESTAMP}
    if kind == "assignment":
        base.update(test_id="t-checkout", variant_id="b", test_name="Checkout button", variant_name="Green button")
    if kind == "conversion":
        base.update(
            conversion_id="c-signup",
            conversion_type="CLICK",
            origin_url="https://shop.example.com/pricing",
            one_per_visitor=True,
        )
    return {**base, **fields}


def send(stack, path: str, kind: str, request: dict[str, Any], handler=None) -> dict[str, Any] | None:
    """One event through the HTTP route (its answer) or the queue (None; the record must be consumed, not parked)."""
    handler = handler or stack.handler(kind)
    if path == "http":
        status, answer = stack.post(kind, request, handler)
        assert status == 200, answer
        return answer
    assert handler({"Records": [sqs_record(request)]}, LambdaContext()) == {"batchItemFailures": []}
    assert stack.drain(kind, dead=True) == []
    return None


def received(stack) -> list[dict[str, Any]]:
    """Every message the sink received, in order, without the envelope's ``sentAt``."""
    return [{k: v for k, v in e["message"].items() if k != "sentAt"} for e in stack.sink.events()]


def mid(key: str, workspace: str = WS, visitor: str = VISITOR) -> str:
    """The messageId of a fact, derived here as the README states it (independent of settings)."""
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "segment-forwarder:message-id")
    return str(uuid.uuid5(namespace, f"{workspace}\n{visitor}\n{key}"))


def identify(**fields: Any) -> dict[str, Any]:
    """The expected first-seen Identify of VISITOR, as today's forwarder sends it, with ``fields`` changed."""
    return {
        "type": "identify",
        "messageId": mid("IDENTIFY"),
        "anonymousId": VISITOR,
        "timestamp": TIMESTAMP,
        "context": LIB,
        **fields,
    }


SPEC_NAMES = {
    "experiment_id": "t-checkout",
    "variation_id": "b",
    "experiment_name": "Checkout button",
    "variation_name": "Green button",
}
PRODUCT_NAMES = {
    "test_id": "t-checkout",
    "variant_id": "b",
    "test_name": "Checkout button",
    "variant_name": "Green button",
}


def experiment_viewed(properties: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """The expected Experiment Viewed of VISITOR, as today's forwarder sends it, with ``fields`` changed."""
    return {
        "type": "track",
        "event": "Experiment Viewed",
        "messageId": mid("ASSIGN#t-checkout"),
        "anonymousId": VISITOR,
        "properties": {**PRODUCT_NAMES, **SPEC_NAMES} if properties is None else properties,
        "timestamp": TIMESTAMP,
        "context": LIB,
        **fields,
    }


def conversion_triggered(**fields: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Conversion Triggered",
        "messageId": mid("CONV#c-signup"),
        "anonymousId": VISITOR,
        "properties": {
            "conversion_id": "c-signup",
            "conversion_type": "CLICK",
            "origin_url": "https://shop.example.com/pricing",
        },
        "timestamp": TIMESTAMP,
        "context": LIB,
        **fields,
    }


def item(stack, key: str) -> dict | None:
    return stack.item(f"WS#{WS}#V#{VISITOR}", key)


# -- anonymous_id -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_anonymous_id_segment_bridges_to_the_sites_anonymous_id(stack, path):
    stack.connect(WS, KEY, settings={"anonymous_id": "segment"})

    send(stack, path, "identify", body("identify", user_id="u-42", segment_anonymous_id=AJS))
    send(stack, path, "assignment", body("assignment", segment_anonymous_id=AJS))
    send(stack, path, "conversion", body("conversion", segment_anonymous_id=AJS))

    bridged = {"anonymousId": AJS}
    assert received(stack) == [
        identify(**bridged, userId="u-42", traits={"visitor_id": VISITOR}),
        experiment_viewed({**PRODUCT_NAMES, **SPEC_NAMES, "visitor_id": VISITOR}, **bridged),
        conversion_triggered(
            **bridged,
            properties={**conversion_triggered()["properties"], "visitor_id": VISITOR},
        ),
    ]


@pytest.mark.parametrize("path", PATHS)
def test_anonymous_id_segment_without_the_sites_id_sends_the_visitor_id_as_today(stack, path):
    stack.connect(WS, KEY, settings={"anonymous_id": "segment"})

    send(stack, path, "assignment", body("assignment"))

    assert received(stack) == [identify(), experiment_viewed()]


@pytest.mark.parametrize("path", PATHS)
def test_the_sites_anonymous_id_is_not_used_by_default(stack, path):
    stack.connect(WS, KEY)

    send(stack, path, "assignment", body("assignment", segment_anonymous_id=AJS))

    assert received(stack) == [identify(), experiment_viewed()]


# -- ip and user_agent --------------------------------------------------------------------------------------

IP_CASES = [
    ("pass", "203.0.113.7", "203.0.113.7"),
    ("truncate", "203.0.113.7", "203.0.113.0"),
    ("truncate", "2001:db8:abcd:12::1", "2001:db8:abcd::"),
    ("truncate", "::ffff:198.51.100.23", "198.51.100.0"),
    ("truncate", "2002:cb00:7107::1", "203.0.113.0"),  # 6to4: its /48 is the visitor's IPv4 address
    ("truncate", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.0"),  # Teredo: the client's /24
    ("truncate", "unknown", None),  # not an IP address: dropped
    ("drop", "203.0.113.7", None),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("policy", "given_ip", "sent_ip"), IP_CASES)
def test_ip_setting(stack, path, policy, given_ip, sent_ip):
    stack.connect(WS, KEY, settings={"ip": policy})
    context = {"ip": given_ip, "userAgent": "Mozilla/5.0", "locale": "de-DE"}

    send(stack, path, "assignment", body("assignment", context=context))

    expected = {"userAgent": "Mozilla/5.0", "locale": "de-DE", **LIB}
    if sent_ip is not None:
        expected["ip"] = sent_ip
    assert received(stack) == [identify(context=expected), experiment_viewed(context=expected)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("policy", ["pass", "drop"])
def test_user_agent_setting(stack, path, policy):
    stack.connect(WS, KEY, settings={"user_agent": policy})
    hints = {"mobile": False, "platform": "macOS", "brands": [{"brand": "Chromium", "version": "131"}]}
    context = {"ip": "203.0.113.7", "userAgent": "Mozilla/5.0", "userAgentData": hints}

    send(stack, path, "identify", body("identify", context=context))

    expected = {**context, **LIB} if policy == "pass" else {"ip": "203.0.113.7", **LIB}
    assert received(stack) == [identify(context=expected)]


# -- consent_category ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_a_skipped_for_consent_event_followed_by_a_consented_one_sends_once(stack, path):
    stack.connect(WS, KEY, settings={"consent_category": "Analytics"})
    handler = stack.handler("assignment")

    for context in (DENIED, {}, {"consent": {"categoryPreferences": {"Advertising": True}}}):
        answer = send(stack, path, "assignment", body("assignment", context=context), handler)
        assert answer in (None, {"status": "skipped", "reason": "no_consent"})
    assert received(stack) == []
    assert item(stack, "IDENTIFY") is None and item(stack, "ASSIGN#t-checkout") is None  # nothing claimed

    answer = send(stack, path, "assignment", body("assignment", context=GRANTED), handler)
    again = send(stack, path, "assignment", body("assignment", context=GRANTED), handler)

    if path == "http":
        assert answer == {"status": "delivered", "message_ids": [mid("IDENTIFY"), mid("ASSIGN#t-checkout")]}
        assert again == {"status": "duplicate"}
    context = {**GRANTED, **LIB}  # the consent object is forwarded as given
    assert received(stack) == [identify(context=context), experiment_viewed(context=context)]


@pytest.mark.parametrize("path", PATHS)
def test_without_a_consent_category_consent_is_not_considered(stack, path):
    stack.connect(WS, KEY)

    send(stack, path, "identify", body("identify", context=DENIED))

    assert received(stack) == [identify(context={**DENIED, **LIB})]


# -- events -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_without_identify_tracks_go_alone_and_identify_events_are_skipped(stack, path):
    stack.connect(WS, KEY, settings={"events": ["experiment_viewed", "conversion_triggered"]})

    skipped = send(stack, path, "identify", body("identify", user_id="u-42"))
    send(stack, path, "assignment", body("assignment", user_id="u-42"))
    send(stack, path, "conversion", body("conversion"))

    assert skipped in (None, {"status": "skipped", "reason": "not_forwarded"})
    assert received(stack) == [experiment_viewed(userId="u-42"), conversion_triggered()]
    assert item(stack, "IDENTIFY") is None and item(stack, "IDENTIFY#U#u-42") is None


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("kind", "forwarded"),
    [
        ("assignment", ["identify", "conversion_triggered"]),
        ("conversion", ["identify", "experiment_viewed"]),
    ],
)
def test_an_event_whose_kind_is_not_forwarded_sends_and_claims_nothing(stack, path, kind, forwarded):
    stack.connect(WS, KEY, settings={"events": forwarded})

    answer = send(stack, path, kind, body(kind))

    assert answer in (None, {"status": "skipped", "reason": "not_forwarded"})
    assert received(stack) == []
    assert item(stack, "IDENTIFY") is None  # not even the visitor's first Identify

    send(stack, path, "identify", body("identify"))  # a forwarded kind: the visitor's first Identify
    assert received(stack) == [identify()]


# -- spec_names ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("spec_names", [True, False])
def test_spec_names_setting(stack, path, spec_names):
    stack.connect(WS, KEY, settings={"spec_names": spec_names})

    send(stack, path, "assignment", body("assignment"))

    properties = {**PRODUCT_NAMES, **SPEC_NAMES} if spec_names else PRODUCT_NAMES
    assert received(stack) == [identify(), experiment_viewed(properties)]


# -- the defaults -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("settings", [None, {}, DEFAULT_SETTINGS], ids=["no settings", "empty", "explicit defaults"])
def test_the_defaults_send_todays_payloads(stack, path, settings):
    stack.connect(WS, KEY, settings=settings)
    context = {"ip": "203.0.113.7", "userAgent": "Mozilla/5.0", **DENIED}

    send(stack, path, "identify", body("identify", user_id="u-42", context=context, segment_anonymous_id=AJS))
    send(stack, path, "assignment", body("assignment", context=context, segment_anonymous_id=AJS))
    send(stack, path, "conversion", body("conversion", context=context))

    sent = {**context, **LIB}
    assert received(stack) == [
        identify(userId="u-42", context=sent),
        experiment_viewed(context=sent),
        conversion_triggered(context=sent),
    ]


# -- changes ------------------------------------------------------------------------------------------------


def test_a_settings_change_takes_effect_within_the_cache_period(stack):
    stack.connect(WS, KEY, settings={"ip": "pass"})
    cached = stack.handler("identify", CONNECTION_CACHE_SECONDS="3600")
    context = {"ip": "203.0.113.7"}
    send(stack, "http", "identify", body("identify", visitor_id="v-a", context=context), cached)  # warm now
    uncached = stack.handler("identify", CONNECTION_CACHE_SECONDS="0")
    send(stack, "http", "identify", body("identify", visitor_id="v-0", context=context), uncached)

    stack.connect(WS, KEY, settings={"ip": "drop"})
    send(stack, "http", "identify", body("identify", visitor_id="v-b", context=context), cached)
    send(stack, "http", "identify", body("identify", visitor_id="v-c", context=context), uncached)

    contexts = {m["anonymousId"]: m["context"] for m in received(stack)}
    assert contexts == {
        "v-a": {**context, **LIB},
        "v-0": {**context, **LIB},
        "v-b": {**context, **LIB},  # within the cache period the warm function still has the old settings
        "v-c": LIB,  # once the cached connection has expired (here at once), the new settings apply
    }


def test_a_settings_change_never_resends_a_fact_nor_changes_its_recorded_content(stack):
    stack.connect(WS, KEY)
    handler = stack.handler("assignment", CONNECTION_CACHE_SECONDS="0")
    stack.sink.set_fault(status=503, count=100)
    status, answer = stack.post("assignment", body("assignment", segment_anonymous_id=AJS), handler)
    assert (status, answer) == (202, {"status": "queued"})  # claimed and recorded under the defaults, not sent
    stack.sink.clear_faults()
    stack.sink.clear()

    stack.connect(WS, KEY, settings={"anonymous_id": "segment", "spec_names": False, "ip": "drop"})
    # another execution environment (this one's circuit breaker keeps it away from Segment for a while)
    handler = stack.handler("assignment", CONNECTION_CACHE_SECONDS="0")
    records = stack.as_records(stack.drain("assignment"))
    assert handler({"Records": records}, LambdaContext()) == {"batchItemFailures": []}
    again = send(stack, "http", "assignment", body("assignment", segment_anonymous_id=AJS), handler)

    # The resend carries what the first claim recorded, under the fact's one messageId; then it is a duplicate.
    assert received(stack) == [identify(), experiment_viewed()]
    assert again == {"status": "duplicate"}


@pytest.mark.parametrize("path", PATHS)
def test_malformed_settings_in_the_secret_are_a_configuration_error(stack, path):
    stack.put_secret(WS, json.dumps({"write_key": KEY, "region": "us", "settings": {"ip": "mask"}}))
    handler = stack.handler("assignment")

    if path == "http":
        assert stack.post("assignment", body("assignment"), handler) == (202, {"status": "queued"})
    else:
        record = sqs_record(body("assignment"))
        answer = handler({"Records": [record]}, LambdaContext())
        assert answer == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert received(stack) == []
