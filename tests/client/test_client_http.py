"""ForwarderClient over real HTTP against a scripted gateway that verifies every signature (see conftest.py)."""

from __future__ import annotations

import uuid

import pytest

from segment_forwarder_client import (
    AuthError,
    ConfigurationError,
    ForwarderClient,
    ForwarderError,
    InvalidRequestError,
    NotConnectedError,
    PayloadTooLargeError,
    RetryPolicy,
    Status,
    ThrottledError,
    TransportError,
    UnavailableError,
)
from tests.client.conftest import answer, close, stall

FAST = RetryPolicy(max_attempts=4, base_s=0.01, cap_s=0.05, budget_s=10)
UNAVAILABLE = {"error": {"code": "unavailable", "message": "not delivered and not queued", "field": None}}
CONVERSION = ("demo", "v-1", "c-buy", "CLICK", "https://shop.example.com/")


def client_of(gateway, **kwargs) -> ForwarderClient:
    kwargs.setdefault("retry", FAST)
    return ForwarderClient(gateway.url, region="us-east-1", credentials=("testing", "testing"), **kwargs)


# -- retries --------------------------------------------------------------------------------------------------


def test_a_503_is_retried_with_the_same_event_id_and_a_fresh_valid_signature(gateway):
    gateway.script(answer(503, UNAVAILABLE))

    result = client_of(gateway).conversion(*CONVERSION)

    assert (result.status, result.attempts, result.message_ids) == (Status.DELIVERED, 2, ("m-1",))
    first, second = gateway.requests()
    assert first.json == second.json  # the same call, byte for byte the same event
    assert first.json["event_id"] == second.json["event_id"] == result.event_id
    assert uuid.UUID(result.event_id).version == 4
    assert all(r.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/") for r in (first, second))


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_429_and_5xx_are_retried(gateway, status):
    gateway.script(answer(status, {"message": "Service Unavailable"}), answer(status, {"message": "again"}))

    result = client_of(gateway).identify("demo", "v-1")

    assert (result.status, result.attempts) == (Status.DELIVERED, 3)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, {"error": {"code": "invalid_value", "message": "bad url", "field": "origin_url"}}, InvalidRequestError),
        (413, {"error": {"code": "payload_too_large", "message": "big", "field": "body"}}, PayloadTooLargeError),
        (404, {"error": {"code": "not_connected", "message": "no connection", "field": None}}, NotConnectedError),
        (501, {"message": "Not Implemented"}, UnavailableError),
    ],
    ids=["400", "413", "404-not-connected", "501"],
)
def test_other_errors_are_raised_at_once_with_the_apis_code_and_field(gateway, status, body, error):
    gateway.script(answer(status, body))

    with pytest.raises(error) as raised:
        client_of(gateway).conversion(*CONVERSION)

    assert raised.value.status == status
    assert raised.value.attempts == 1
    assert not raised.value.retryable
    if "error" in body:
        assert (raised.value.code, raised.value.field) == (body["error"]["code"], body["error"]["field"])
        assert raised.value.message == body["error"]["message"]
    assert len(gateway.requests()) == 1


def test_retries_end_after_max_attempts_with_the_last_error(gateway):
    gateway.script(*[answer(503, UNAVAILABLE)] * 10)

    with pytest.raises(UnavailableError) as raised:
        client_of(gateway).conversion(*CONVERSION)

    assert (raised.value.status, raised.value.code, raised.value.attempts) == (503, "unavailable", 4)
    assert raised.value.retryable
    assert len(gateway.requests()) == 4
    assert len({r.json["event_id"] for r in gateway.requests()}) == 1


def test_a_429_waits_at_least_its_retry_after(gateway):
    gateway.script(answer(429, {"message": "Too Many Requests"}, Retry_After="0.4"))

    result = client_of(gateway).identify("demo", "v-1")

    first, second = gateway.requests()
    assert result.attempts == 2
    assert second.arrived - first.arrived >= 0.4  # FAST alone would wait at most 0.01 s


def test_a_retry_after_beyond_the_budget_ends_the_call_at_once(gateway):
    gateway.script(answer(429, {"message": "Too Many Requests"}, Retry_After="30"))

    with pytest.raises(ThrottledError) as raised:
        client_of(gateway, retry=RetryPolicy(max_attempts=5, budget_s=5)).identify("demo", "v-1")

    assert raised.value.attempts == 1
    assert len(gateway.requests()) == 1


def test_a_connection_closed_without_an_answer_is_retried(gateway):
    gateway.script(close(), close())

    result = client_of(gateway).assignment("demo", "v-1", "t-1", "b")

    assert (result.status, result.attempts) == (Status.DELIVERED, 3)


def test_a_read_timeout_is_retried_with_the_same_event_id(gateway):
    gateway.script(stall(1.5))

    result = client_of(gateway, timeout=0.5).conversion(*CONVERSION)

    assert result.attempts == 2
    assert len({r.json["event_id"] for r in gateway.requests()}) == 1


def test_no_answer_at_all_ends_in_a_transport_error(gateway):
    gateway.script(*[close()] * 10)

    with pytest.raises(TransportError) as raised:
        client_of(gateway, retry=RetryPolicy(max_attempts=2, base_s=0.01)).identify("demo", "v-1")

    assert (raised.value.status, raised.value.attempts, raised.value.retryable) == (None, 2, True)


# -- answers, bodies and signing ------------------------------------------------------------------------------


def test_every_status_is_typed_and_the_request_id_kept(gateway):
    gateway.script(
        answer(200, {"status": "duplicate"}, apigw_requestid="req-1"),
        answer(200, {"status": "skipped", "reason": "not_connected"}),
        answer(202, {"status": "queued"}),
    )
    client = client_of(gateway)

    duplicate = client.identify("demo", "v-1")
    skipped = client.identify("demo", "v-1")
    queued = client.identify("demo", "v-1")

    assert (duplicate.status, duplicate.request_id) == (Status.DUPLICATE, "req-1")
    assert (skipped.status, skipped.reason) == (Status.SKIPPED, "not_connected")
    assert queued.status == Status.QUEUED == "queued"


def test_each_conversion_call_gets_its_own_event_id_unless_the_caller_gives_one(gateway):
    client = client_of(gateway)

    a = client.conversion(*CONVERSION)
    b = client.conversion(*CONVERSION)
    mine = client.conversion(*CONVERSION, event_id="order-77")
    once = client.conversion(*CONVERSION, one_per_visitor=True)

    sent = [r.json for r in gateway.requests()]
    assert a.event_id != b.event_id
    assert mine.event_id == "order-77"
    assert [s["event_id"] for s in sent] == [a.event_id, b.event_id, "order-77", once.event_id]
    assert sent[3]["one_per_visitor"] is True
    assert "one_per_visitor" not in sent[0]


def test_a_body_is_sent_as_compact_utf8_so_non_ascii_text_counts_as_its_bytes(gateway):
    title = "éèêëàâçôûîïù" * 512  # 12,288 bytes in UTF-8; 36,864 as \u escapes, over the API's 32 KB
    client = client_of(gateway)

    client.assignment("demo", "v-1", "t-1", "b", test_name="t", context={"page": {"title": title}})

    [sent] = gateway.requests()
    assert title.encode("utf-8") in sent.body and len(sent.body) < 32 * 1024
    assert sent.json["context"]["page"]["title"] == title  # the signature verified over these bytes too


def test_the_connection_routes(gateway):
    gateway.script(
        answer(200, {"connected": True, "region": "eu", "write_key_hint": "…a1b2"}),
        answer(200, {"connected": False}),
        answer(204),
        answer(200, {"message_id": "m-9", "endpoint": "https://events.eu1.segmentapis.com/v1/batch", "region": "eu"}),
    )
    client = client_of(gateway)

    connected = client.connect("acme", "wk-secret-value", region="eu")
    status = client.connection_status("acme")
    client.disconnect("acme")
    tested = client.test_connection("acme")

    assert (connected.connected, connected.region, connected.write_key_hint) == (True, "eu", "…a1b2")
    assert "wk-secret-value" not in repr(connected)
    assert status.connected is False
    assert (tested.message_id, tested.region) == ("m-9", "eu")
    assert [(r.method, r.path) for r in gateway.requests()] == [
        ("PUT", "/v1/workspaces/acme/segment"),
        ("GET", "/v1/workspaces/acme/segment"),
        ("DELETE", "/v1/workspaces/acme/segment"),
        ("POST", "/v1/workspaces/acme/segment/test"),
    ]
    assert gateway.requests()[0].json == {"write_key": "wk-secret-value", "region": "eu"}


def test_connect_sends_the_settings_and_the_answer_shows_them(gateway):
    effective = {"anonymous_id": "visitor_id", "ip": "truncate", "user_agent": "pass", "events": ["identify"]}
    gateway.script(answer(200, {"connected": True, "region": "us", "write_key_hint": "…a1b2", "settings": effective}))

    connected = client_of(gateway).connect("acme", "wk-secret-value", settings={"ip": "truncate"})

    assert connected.settings == effective
    assert gateway.requests()[0].json == {
        "write_key": "wk-secret-value",
        "region": "us",
        "settings": {"ip": "truncate"},
    }


def test_a_workspace_id_is_escaped_in_the_path_and_still_signed_right(gateway):
    gateway.script(answer(400, {"error": {"code": "invalid_value", "message": "bad id", "field": "workspace_id"}}))

    with pytest.raises(InvalidRequestError):
        client_of(gateway).connection_status("a b/c")

    assert gateway.requests()[0].path == "/v1/workspaces/a%20b%2Fc/segment"  # not a 403: the signature held


def test_a_refused_signature_is_an_auth_error_with_the_gateways_type(gateway):
    client = ForwarderClient(gateway.url, region="us-east-1", credentials=("testing", "wrong"), retry=FAST)

    with pytest.raises(AuthError) as raised:
        client.identify("demo", "v-1")

    assert (raised.value.status, raised.value.code) == (403, "InvalidSignatureException")
    assert raised.value.message.startswith("The request signature we calculated does not match")
    assert len(gateway.requests()) == 1


def test_credentials_and_region_come_from_the_default_chain(gateway, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    client = ForwarderClient(gateway.url, retry=FAST)

    assert client.region == "us-east-1"
    assert client.identify("demo", "v-1").status == Status.DELIVERED


def test_the_region_of_an_execute_api_url_is_used():
    client = ForwarderClient("https://abc123.execute-api.eu-west-1.amazonaws.com", credentials=("a", "b"))

    assert client.region == "eu-west-1"


def test_no_credentials_or_no_region_is_a_configuration_error(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)

    with pytest.raises(ConfigurationError, match="no AWS credentials"):
        ForwarderClient("https://abc123.execute-api.eu-west-1.amazonaws.com")
    with pytest.raises(ConfigurationError, match="no region"):
        ForwarderClient("http://127.0.0.1:3000", credentials=("testing", "testing"))


# -- errors carry the event_id, so that a retry is the same conversion --------------------------------------


def test_a_transport_error_carries_the_event_id_sent_and_the_retry_with_it_is_the_same_conversion(gateway):
    gateway.script(*[close()] * 2)  # no answer: the forwarder may or may not have delivered it
    client = client_of(gateway, retry=RetryPolicy(max_attempts=2, base_s=0.01))

    with pytest.raises(TransportError) as raised:
        client.conversion(*CONVERSION)
    retried = client.conversion(*CONVERSION, event_id=raised.value.event_id)

    sent = [r.json["event_id"] for r in gateway.requests()]
    assert raised.value.event_id is not None
    assert sent == [raised.value.event_id] * 3 == [retried.event_id] * 3


@pytest.mark.parametrize(
    ("script", "error"),
    [
        ([answer(503, UNAVAILABLE)] * 4, UnavailableError),
        ([answer(429, {"message": "Too Many Requests"})] * 4, ThrottledError),
        (
            [answer(400, {"error": {"code": "invalid_value", "message": "no", "field": "origin_url"}})],
            InvalidRequestError,
        ),
        ([answer(403, {"message": "Forbidden"})], AuthError),
        ([answer(200, {"nonsense": True})], ForwarderError),
    ],
)
def test_every_error_of_a_conversion_carries_its_event_id(gateway, script, error):
    gateway.script(*script)

    with pytest.raises(error) as raised:
        client_of(gateway).conversion(*CONVERSION)

    assert raised.value.event_id == gateway.requests()[0].json["event_id"]


def test_the_callers_own_event_id_is_the_one_the_error_carries_and_other_kinds_carry_none(gateway):
    gateway.script(answer(503, UNAVAILABLE), answer(503, UNAVAILABLE))
    client = client_of(gateway, retry=RetryPolicy(max_attempts=1))

    with pytest.raises(UnavailableError) as conversion:
        client.conversion(*CONVERSION, event_id="outbox-row-42")
    with pytest.raises(UnavailableError) as identify:
        client.identify("demo", "v-1")

    assert (conversion.value.event_id, identify.value.event_id) == ("outbox-row-42", None)
