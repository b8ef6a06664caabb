"""Workspace settings alone (pure): parsing and its errors, the OpenAPI schema agreeing with the parser, IP
truncation, context shaping, consent and the kinds forwarded."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segment_forwarder.connections import Connection, parse_secret, secret_value
from segment_forwarder.errors import ConnectionConfigError
from segment_forwarder.validation import is_valid, openapi_document
from segment_forwarder.workspace_settings import (
    DEFAULT_SETTINGS,
    SettingsError,
    WorkspaceSettings,
    truncate_ip,
)

KINDS = ["identify", "experiment_viewed", "conversion_triggered"]


# -- parsing -------------------------------------------------------------------------------------------------


def test_no_settings_are_the_defaults_and_show_every_default():
    assert WorkspaceSettings.from_dict({}) == DEFAULT_SETTINGS == WorkspaceSettings()
    assert DEFAULT_SETTINGS.as_dict() == {
        "anonymous_id": "visitor_id",
        "ip": "pass",
        "user_agent": "pass",
        "events": KINDS,
        "spec_names": True,
    }


def test_the_defaults_are_the_ones_the_openapi_document_states():
    properties = openapi_document()["components"]["schemas"]["WorkspaceSettings"]["properties"]
    documented = {name: schema["default"] for name, schema in properties.items() if "default" in schema}
    assert DEFAULT_SETTINGS.as_dict() == documented


def test_each_setting_is_read():
    settings = WorkspaceSettings.from_dict(
        {
            "anonymous_id": "segment",
            "ip": "truncate",
            "user_agent": "drop",
            "consent_category": "Analytics",
            "events": ["conversion_triggered", "identify"],
            "spec_names": False,
        }
    )
    assert settings == WorkspaceSettings(
        "segment", "truncate", "drop", "Analytics", ("identify", "conversion_triggered"), False
    )
    assert settings.as_dict() == {
        "anonymous_id": "segment",
        "ip": "truncate",
        "user_agent": "drop",
        "consent_category": "Analytics",
        "events": ["identify", "conversion_triggered"],  # the canonical order, whatever order was given
        "spec_names": False,
    }


BAD = [
    ({"anonymous_id": "cookie"}, "settings.anonymous_id"),
    ({"anonymous_id": None}, "settings.anonymous_id"),
    ({"ip": "mask"}, "settings.ip"),
    ({"ip": "PASS"}, "settings.ip"),
    ({"user_agent": "truncate"}, "settings.user_agent"),
    ({"consent_category": ""}, "settings.consent_category"),
    ({"consent_category": "   "}, "settings.consent_category"),
    ({"consent_category": "a" * 101}, "settings.consent_category"),
    ({"consent_category": "Ana\nlytics"}, "settings.consent_category"),
    ({"consent_category": 7}, "settings.consent_category"),
    ({"events": []}, "settings.events"),
    ({"events": "identify"}, "settings.events"),
    ({"events": ["identify", "page"]}, "settings.events.1"),
    ({"events": ["identify", "identify"]}, "settings.events.1"),
    ({"spec_names": 1}, "settings.spec_names"),
    ({"spec_names": "false"}, "settings.spec_names"),
    ({"ip": "drop", "pii": "none"}, "settings.pii"),
]


@pytest.mark.parametrize(("data", "field"), BAD, ids=[f"{field}={data}" for data, field in BAD])
def test_a_bad_setting_is_refused_naming_its_field(data, field):
    with pytest.raises(SettingsError) as caught:
        WorkspaceSettings.from_dict(data)
    assert caught.value.field == field
    assert str(caught.value).startswith(field)


def test_settings_must_be_an_object():
    with pytest.raises(SettingsError, match=r"^settings must be an object"):
        WorkspaceSettings.from_dict(["ip", "drop"])


def test_the_longest_consent_category_and_any_printable_text_are_accepted():
    assert WorkspaceSettings.from_dict({"consent_category": "a" * 100}).consent_category == "a" * 100
    assert WorkspaceSettings.from_dict({"consent_category": "C0004 Ärger"}).consent_category == "C0004 Ärger"


# Settings-like JSON objects: mostly valid values, some invalid, now and then an unknown key.
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "anonymous_id": st.sampled_from(["visitor_id", "segment", "Segment", "", 1]),
    "ip": st.sampled_from(["pass", "truncate", "drop", "keep", None]),
    "user_agent": st.sampled_from(["pass", "drop", "truncate"]),
    "consent_category": st.one_of(st.text(max_size=102), st.integers()),
    "events": st.one_of(st.lists(st.sampled_from([*KINDS, "page"]), max_size=4), st.just("identify")),
    "spec_names": st.sampled_from([True, False, 0, "true"]),
    "unknown": st.just("x"),
}
SETTINGS_LIKE = st.fixed_dictionaries({}, optional=VALUES)


@given(SETTINGS_LIKE)
def test_the_openapi_schema_and_the_parser_agree(data):
    """The PUT validates against the OpenAPI document's WorkspaceSettings, the secret is read by from_dict: one
    accepts what the other does (a consent category that is blank once trimmed is the one rule only the parser
    states, as the document says in prose)."""
    try:
        WorkspaceSettings.from_dict(data)
        parsed = True
    except SettingsError:
        parsed = False
    category = data.get("consent_category")
    blank_category = isinstance(category, str) and category != "" and not category.strip()
    schema_valid = is_valid("WorkspaceSettings", data)
    assert parsed == (schema_valid and not blank_category)


VALID = st.builds(
    WorkspaceSettings,
    anonymous_id=st.sampled_from(["visitor_id", "segment"]),
    ip=st.sampled_from(["pass", "truncate", "drop"]),
    user_agent=st.sampled_from(["pass", "drop"]),
    consent_category=st.one_of(st.none(), st.sampled_from(["Analytics", "C0002", "data sharing"])),
    events=st.lists(st.sampled_from(KINDS), min_size=1, max_size=3, unique=True).map(tuple),
    spec_names=st.booleans(),
)


@given(VALID)
def test_effective_settings_read_back_as_themselves(settings):
    assert WorkspaceSettings.from_dict(settings.as_dict()) == settings
    assert is_valid("WorkspaceSettings", settings.as_dict())


@given(VALID)
def test_a_connection_is_stored_and_read_back_with_its_settings(settings):
    connection = Connection("wk_0123456789", "eu", settings)
    assert parse_secret(secret_value(connection)) == connection


def test_a_connection_without_settings_is_stored_as_before_settings_existed():
    assert secret_value(Connection("wk_0123456789", "us")) == '{"write_key": "wk_0123456789", "region": "us"}'
    assert parse_secret('{"write_key": "wk_0123456789", "region": "us"}').settings == DEFAULT_SETTINGS
    assert parse_secret('{"write_key": "wk_0123456789", "settings": null}').settings == DEFAULT_SETTINGS


@pytest.mark.parametrize("settings", ['"drop"', "[]", '{"ip": "mask"}', '{"events": []}', '{"colour": "red"}'])
def test_a_secret_with_bad_settings_is_malformed_and_the_error_names_the_setting(settings):
    with pytest.raises(ConnectionConfigError, match=r"^the workspace secret's settings") as caught:
        parse_secret(f'{{"write_key": "wk_0123456789", "settings": {settings}}}')
    assert "wk_0123456789" not in str(caught.value)


# -- ip truncation ------------------------------------------------------------------------------------------

IPS = [
    ("203.0.113.7", "203.0.113.0"),
    ("203.0.113.255", "203.0.113.0"),
    ("10.1.2.3", "10.1.2.0"),
    ("2001:db8:abcd:12::1", "2001:db8:abcd::"),
    ("2001:0db8:abcd:ffff:ffff:ffff:ffff:ffff", "2001:db8:abcd::"),
    ("::1", "::"),
    ("::ffff:203.0.113.7", "203.0.113.0"),  # IPv4-mapped: truncated as the IPv4 address it is
    ("fe80::1%eth0", "fe80::"),  # the zone goes too
    (" 203.0.113.7 ", "203.0.113.0"),
    ("not an ip", None),
    ("203.0.113", None),
    ("203.0.113.7/24", None),
    ("", None),
    (7, None),
]


@pytest.mark.parametrize(("given_ip", "truncated"), IPS)
def test_ip_truncation(given_ip, truncated):
    assert truncate_ip(given_ip) == truncated


# IPv6 addresses that carry a visitor's IPv4 address inside them: each is truncated as that IPv4 address.
EMBEDDED = [
    ("2002:cb00:7107::1", "203.0.113.0"),  # 6to4: the IPv4 address in bits 16-47
    ("2002:cb00:7107:12:ab::cd", "203.0.113.0"),
    # Teredo: server 65.54.227.120 in bits 32-63, client 192.0.2.45 obfuscated (xor 0xffffffff) in bits 96-127
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.0"),
    ("64:ff9b::cb00:7107", "203.0.113.0"),  # NAT64 well-known prefix: the IPv4 address in bits 96-127
    ("64:ff9b::203.0.113.7", "203.0.113.0"),
    ("::ffff:203.0.113.7", "203.0.113.0"),  # IPv4-mapped
    ("::203.0.113.7", "::"),  # IPv4-compatible (deprecated): nothing of it within the /48
]


@pytest.mark.parametrize(("given_ip", "truncated"), EMBEDDED)
def test_an_ipv6_address_that_embeds_an_ipv4_address_is_truncated_as_that_ipv4_address(given_ip, truncated):
    assert truncate_ip(given_ip) == truncated


def _embed(form: str, ipv4: int, other: int) -> str:
    """``ipv4`` (an int) inside an IPv6 address of ``form``; ``other`` fills the bits the form leaves free."""
    if form == "mapped":
        value = 0xFFFF << 32 | ipv4
    elif form == "compatible":
        value = ipv4
    elif form == "6to4":
        value = 0x2002 << 112 | ipv4 << 80 | other & (1 << 80) - 1
    elif form == "teredo":  # server address, flags and obfuscated port from ``other``, client obfuscated
        value = 0x20010000 << 96 | (other & (1 << 64) - 1) << 32 | ipv4 ^ 0xFFFFFFFF
    elif form == "nat64":
        value = 0x64FF9B << 96 | ipv4
    else:  # RFC 6052 local-use prefix 64:ff9b:1::/48: the address in bits 48-63 and 72-87
        value = 0x64FF9B0001 << 80 | (ipv4 >> 16) << 64 | (ipv4 & 0xFFFF) << 40
    return str(ipaddress.IPv6Address(value))


FORMS = ["mapped", "compatible", "6to4", "teredo", "nat64", "nat64-local"]


@given(
    form=st.sampled_from(FORMS),
    ipv4=st.integers(0, 2**32 - 1),
    host=st.integers(0, 255),
    other=st.integers(0, 2**80 - 1),
    other_server_host=st.integers(0, 255),
)
def test_an_embedded_ipv4_address_reveals_no_more_than_that_address_truncated(
    form, ipv4, host, other, other_server_host
):
    # Whatever the form, the truncated address depends on the embedded IPv4 address only through its /24: two
    # addresses of one /24 give the same answer (for Teredo, whatever its server's host part is, too) ...
    neighbour = ipv4 & ~0xFF | host
    other_server = other & ~(0xFF << 32) | other_server_host << 32
    truncated = truncate_ip(_embed(form, ipv4, other))
    assert truncated == truncate_ip(_embed(form, neighbour, other_server))
    # ... and the answer names no address outside that /24 (an IPv4 answer is the /24 itself).
    address = ipaddress.ip_address(truncated)
    if isinstance(address, ipaddress.IPv4Address):
        assert truncated == truncate_ip(str(ipaddress.IPv4Address(ipv4)))


# -- context shaping ----------------------------------------------------------------------------------------

CONTEXT = {
    "ip": "203.0.113.7",
    "userAgent": "Mozilla/5.0",
    "userAgentData": {"mobile": False, "platform": "macOS"},
    "locale": "de-DE",
    "page": {"url": "https://shop.example.com/"},
    "consent": {"categoryPreferences": {"Analytics": True}},
}


def test_pass_keeps_the_context_as_given():
    assert DEFAULT_SETTINGS.shape_context(CONTEXT) == CONTEXT


def test_ip_truncate_and_drop_touch_only_the_ip():
    others = {k: v for k, v in CONTEXT.items() if k != "ip"}
    assert WorkspaceSettings(ip="truncate").shape_context(CONTEXT) == {**others, "ip": "203.0.113.0"}
    assert WorkspaceSettings(ip="drop").shape_context(CONTEXT) == others
    assert WorkspaceSettings(ip="truncate").shape_context({**CONTEXT, "ip": "localhost"}) == others  # unparseable
    assert WorkspaceSettings(ip="truncate").shape_context({"locale": "de-DE"}) == {"locale": "de-DE"}


def test_user_agent_drop_removes_the_user_agent_and_its_client_hints_only():
    shaped = WorkspaceSettings(user_agent="drop").shape_context(CONTEXT)
    assert shaped == {k: v for k, v in CONTEXT.items() if k not in ("userAgent", "userAgentData")}


def test_shaping_never_changes_the_events_context():
    before = {**CONTEXT}
    WorkspaceSettings(ip="drop", user_agent="drop").shape_context(CONTEXT)
    assert before == CONTEXT


# -- consent and kinds --------------------------------------------------------------------------------------


def test_without_a_consent_category_every_event_is_granted():
    assert DEFAULT_SETTINGS.grants({})
    assert DEFAULT_SETTINGS.grants({"consent": {"categoryPreferences": {"Analytics": False}}})


@pytest.mark.parametrize(
    ("context", "granted"),
    [
        ({"consent": {"categoryPreferences": {"Analytics": True}}}, True),
        ({"consent": {"categoryPreferences": {"Analytics": True, "Advertising": False}}}, True),
        ({"consent": {"categoryPreferences": {"Analytics": False}}}, False),
        ({"consent": {"categoryPreferences": {"Advertising": True}}}, False),  # missing: not granted
        ({"consent": {"categoryPreferences": {"analytics": True}}}, False),  # ids match exactly
        ({"consent": {"categoryPreferences": {"Analytics": "true"}}}, False),
        ({"consent": {"categoryPreferences": {"Analytics": 1}}}, False),
        ({"consent": {"categoryPreferences": {}}}, False),
        ({"consent": {"categoryPreferences": ["Analytics"]}}, False),
        ({"consent": {}}, False),
        ({"consent": "Analytics"}, False),
        ({}, False),
    ],
)
def test_a_consent_category_is_granted_only_by_true(context, granted):
    assert WorkspaceSettings(consent_category="Analytics").grants(context) is granted


def test_each_event_kind_is_forwarded_by_its_own_message_kind():
    settings = WorkspaceSettings(events=("experiment_viewed",))
    assert [settings.forwards(kind) for kind in ("identify", "assignment", "conversion")] == [False, True, False]
    assert not settings.identifies
    assert all(DEFAULT_SETTINGS.forwards(kind) for kind in ("identify", "assignment", "conversion"))
    assert DEFAULT_SETTINGS.identifies
