"""The connection function through its Lambda entry point (functions/connection/app.py).

Secrets Manager is moto's; Segment is the local sink over real HTTP. Nothing of the project is mocked.
"""

import base64
import functools
import io
import json
import logging
import socket
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from local_stack.invoke import LambdaContext, load_module
from local_stack.segment_sink import SegmentSink
from local_stack.template import Template
from tests.support.stack_client import DEFAULT_SETTINGS

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = Template.load()
NO_HEALTH = {"last_delivery": None, "last_failure": None, "last_24h": {"delivered": 0, "failed": 0, "parked": 0}}
APP = REPO_ROOT / "functions" / "connection" / "app.py"
PREFIX = "sf-test"
SERVICE = "segment-forwarder"
CONNECTION_ROUTE = "/v1/workspaces/{workspace_id}/segment"
TEST_ROUTE = "/v1/workspaces/{workspace_id}/segment/test"
KEY_US = "wk_us_TOPSECRET_7f3c9e1a1b2"
KEY_EU = "wk_eu_TOPSECRET_0d8e4b6c9d8"
KEY_NEW = "wk_us_REPLACED_55aa66bbz9y8"
KEYS = (KEY_US, KEY_EU, KEY_NEW)
ANSWERS: list[str] = []  # every answer of this module, checked for write keys at the end


def http_event(method, workspace_id, *, test=False, body=None, route_key=None, base64_body=False):
    # the path and pathParameters as an HTTP API gives them: both decoded
    raw_path = f"/v1/workspaces/{workspace_id}/segment" + ("/test" if test else "")
    if body is not None and not isinstance(body, str):
        body = json.dumps(body)
    if base64_body and body is not None:
        body = base64.b64encode(body.encode()).decode()
    route = TEST_ROUTE if test else CONNECTION_ROUTE
    return {
        "version": "2.0",
        "routeKey": route_key or f"{method} {route}",
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "requestId": str(uuid.uuid4()),
            "stage": "$default",
        },
        "pathParameters": {"workspace_id": workspace_id},
        "body": body,
        "isBase64Encoded": base64_body,
    }


class Api:
    """Calls the handler like API Gateway does and keeps every answer."""

    def __init__(self, handler):
        self.handler = handler

    def call(self, event, context=None):
        answer = self.handler(event, context or LambdaContext())
        ANSWERS.append(json.dumps(answer))
        body = json.loads(answer["body"]) if answer["body"] else None
        return answer["statusCode"], body

    def put(self, workspace_id, body, **kwargs):
        return self.call(http_event("PUT", workspace_id, body=body, **kwargs))

    def get(self, workspace_id):
        return self.call(http_event("GET", workspace_id))

    def delete(self, workspace_id):
        return self.call(http_event("DELETE", workspace_id))

    def test(self, workspace_id, context=None):
        return self.call(http_event("POST", workspace_id, test=True), context)


@pytest.fixture
def logs():
    """What the function logs (Powertools JSON lines): its handler writes here during the test.

    Powertools binds its handler to the sys.stdout of the moment the logger is first created, which under pytest
    is a capture buffer closed after that test; so the stream is set per test and left on the real stdout.
    """
    stream = io.StringIO()
    yield stream
    handler = getattr(logging.getLogger(SERVICE), "powertools_handler", None)
    if handler is not None:
        handler.setStream(sys.__stdout__)


def load_handler(logs):
    """A fresh connection function, as a new execution environment would import it (fresh runtime)."""
    sys.modules.pop("segment_forwarder.connection_api", None)
    module = load_module(APP, "connection_app")
    logging.getLogger(SERVICE).powertools_handler.setStream(logs)
    return module.handler


@pytest.fixture
def base_env(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_PROFILE", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("SECRET_PREFIX", PREFIX)
    monkeypatch.setenv("DEDUP_TABLE", TEMPLATE.physical_name("DedupTable"))  # health buckets, visitor facts
    # every variable template.yaml gives the function (Globals), the Segment budget kept short for the 502 test
    monkeypatch.setenv("HTTP_DELIVERY_BUDGET_SECONDS", "1")
    monkeypatch.setenv("CONNECTION_CACHE_SECONDS", "60")
    monkeypatch.setenv("DEDUP_TTL_DAYS", "400")
    monkeypatch.setenv("EVENT_ID_TTL_HOURS", "72")
    monkeypatch.setenv("LEASE_SECONDS", "90")
    monkeypatch.setenv("MAX_RECEIVE_COUNT", "5")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", SERVICE)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "SegmentForwarderTest")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
    return monkeypatch


@pytest.fixture(scope="module")
def running_sink():
    with SegmentSink() as running:
        yield running


@pytest.fixture
def sink(running_sink):
    running_sink.clear_faults()
    running_sink.clear()
    yield running_sink
    running_sink.clear_faults()


@pytest.fixture
def aws(base_env, sink):
    base_env.setenv("SEGMENT_US_ENDPOINT", sink.region_url("us"))
    base_env.setenv("SEGMENT_EU_ENDPOINT", sink.region_url("eu"))
    with mock_aws():
        TEMPLATE.create_resources(_session())  # the dedup table among them
        yield _session().client("secretsmanager", region_name="us-east-1")


@pytest.fixture
def api(aws, logs, capsys, caplog):
    caplog.set_level(logging.INFO)
    yield Api(load_handler(logs))
    captured = capsys.readouterr()
    for text in (logs.getvalue(), captured.out, captured.err, caplog.text):
        for key in KEYS:
            assert key not in text


@functools.cache
def _session():
    return boto3.session.Session()  # one session: its service models load once for the whole module


def stored(aws, workspace_id):
    return json.loads(aws.get_secret_value(SecretId=f"{PREFIX}/{workspace_id}")["SecretString"])


def log_lines(logs):
    return [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]


# -- connect / status / disconnect ---------------------------------------------------------------------------


def test_connect_us_stores_the_secret_and_answers_the_hint(api, aws, logs):
    status, body = api.put("acme", {"write_key": KEY_US, "region": "us"})
    assert status == 200
    assert body == {
        "connected": True,
        "region": "us",
        "write_key_hint": "…" + KEY_US[-4:],
        "settings": DEFAULT_SETTINGS,
    }
    assert stored(aws, "acme") == {"write_key": KEY_US, "region": "us"}
    line = [entry for entry in log_lines(logs) if entry.get("message") == "connection"][-1]
    assert line["route"] == f"PUT {CONNECTION_ROUTE}"
    assert line["workspace_id"] == "acme"
    assert line["outcome"] == "connected"


def test_region_defaults_to_us(api, aws):
    status, body = api.put("acme", {"write_key": KEY_US})
    assert (status, body["region"]) == (200, "us")
    assert stored(aws, "acme")["region"] == "us"


def test_connect_eu_upper_case_is_stored_lower_case(api, aws):
    status, body = api.put("acme-eu", {"write_key": KEY_EU, "region": "EU"})
    assert status == 200
    assert body["region"] == "eu"
    assert stored(aws, "acme-eu") == {"write_key": KEY_EU, "region": "eu"}


def test_get_connected_and_not_connected(api):
    assert api.get("nobody") == (200, {"connected": False, "health": NO_HEALTH})
    api.put("acme", {"write_key": KEY_EU, "region": "eu"})
    assert api.get("acme") == (
        200,
        {
            "connected": True,
            "region": "eu",
            "write_key_hint": "…" + KEY_EU[-4:],
            "settings": DEFAULT_SETTINGS,
            "health": NO_HEALTH,
        },
    )


def test_hint_shows_only_the_last_four_characters(api):
    _, body = api.put("acme", {"write_key": "abcdefghijklWXYZ"})
    assert body["write_key_hint"] == "…WXYZ"
    _, body = api.get("acme")
    assert body["write_key_hint"] == "…WXYZ"


def test_short_key_is_not_shown_at_all(api):
    _, body = api.put("acme", {"write_key": "abc1234"})
    assert body["write_key_hint"] == "…"


def test_reconnect_replaces_the_key(api, aws):
    api.put("acme", {"write_key": KEY_US})
    status, body = api.put("acme", {"write_key": KEY_NEW, "region": "eu"})
    assert status == 200
    assert body == {
        "connected": True,
        "region": "eu",
        "write_key_hint": "…" + KEY_NEW[-4:],
        "settings": DEFAULT_SETTINGS,
    }
    assert api.get("acme")[1]["write_key_hint"] == "…" + KEY_NEW[-4:]
    assert stored(aws, "acme") == {"write_key": KEY_NEW, "region": "eu"}


def test_disconnect_schedules_deletion_with_a_recovery_window(api, aws):
    api.put("acme", {"write_key": KEY_US})
    assert api.delete("acme") == (204, None)
    assert api.get("acme") == (200, {"connected": False, "health": NO_HEALTH})
    deleted = aws.describe_secret(SecretId=f"{PREFIX}/acme")["DeletedDate"]
    assert deleted - datetime.now(UTC) > timedelta(days=6)


def test_delete_answers_an_empty_204(api):
    api.put("acme", {"write_key": KEY_US})
    answer = api.handler(http_event("DELETE", "acme"), LambdaContext())
    assert answer["statusCode"] == 204
    assert answer["body"] == ""


def test_reconnect_right_after_disconnect_restores_and_replaces(api, aws):
    api.put("acme", {"write_key": KEY_US})
    api.delete("acme")
    status, body = api.put("acme", {"write_key": KEY_NEW, "region": "eu"})
    assert status == 200
    assert body["write_key_hint"] == "…" + KEY_NEW[-4:]
    assert api.get("acme") == (
        200,
        {
            "connected": True,
            "region": "eu",
            "write_key_hint": "…" + KEY_NEW[-4:],
            "settings": DEFAULT_SETTINGS,
            "health": NO_HEALTH,
        },
    )
    assert "DeletedDate" not in aws.describe_secret(SecretId=f"{PREFIX}/acme")
    assert stored(aws, "acme") == {"write_key": KEY_NEW, "region": "eu"}


def test_delete_when_not_connected_or_already_disconnected_is_204(api):
    assert api.delete("nobody") == (204, None)
    api.put("acme", {"write_key": KEY_US})
    assert api.delete("acme") == (204, None)
    assert api.delete("acme") == (204, None)


def test_base64_body_is_accepted(api):
    status, body = api.put("acme", {"write_key": KEY_US, "region": "eu"}, base64_body=True)
    assert (status, body["region"]) == (200, "eu")


def test_malformed_stored_secret_is_500_until_reconnected(api, aws):
    aws.create_secret(Name=f"{PREFIX}/acme", SecretString='{"region": "us"}')
    status, body = api.get("acme")
    assert status == 500
    assert body["error"]["code"] == "connection_malformed"
    assert api.put("acme", {"write_key": KEY_US})[0] == 200
    assert api.get("acme")[1]["connected"] is True


# -- settings ------------------------------------------------------------------------------------------------

SETTINGS = {
    "anonymous_id": "segment",
    "ip": "truncate",
    "user_agent": "drop",
    "consent_category": "Analytics",
    "events": ["identify", "experiment_viewed"],
    "spec_names": False,
}


def test_connect_with_settings_stores_them_and_answers_the_effective_settings(api, aws):
    status, body = api.put("acme", {"write_key": KEY_US, "settings": SETTINGS})

    assert (status, body["settings"]) == (200, SETTINGS)
    assert stored(aws, "acme") == {"write_key": KEY_US, "region": "us", "settings": SETTINGS}
    assert api.get("acme") == (
        200,
        {
            "connected": True,
            "region": "us",
            "write_key_hint": "…" + KEY_US[-4:],
            "settings": SETTINGS,
            "health": NO_HEALTH,
        },
    )


def test_settings_left_out_take_their_defaults(api, aws):
    status, body = api.put(
        "acme", {"write_key": KEY_US, "settings": {"ip": "drop", "events": ["conversion_triggered", "identify"]}}
    )

    expected = {**DEFAULT_SETTINGS, "ip": "drop", "events": ["identify", "conversion_triggered"]}
    assert (status, body["settings"]) == (200, expected)
    assert api.get("acme")[1]["settings"] == expected
    assert stored(aws, "acme")["settings"] == expected


def test_a_put_without_settings_replaces_them_with_the_defaults(api, aws):
    api.put("acme", {"write_key": KEY_US, "settings": SETTINGS})

    status, body = api.put("acme", {"write_key": KEY_US})

    assert (status, body["settings"]) == (200, DEFAULT_SETTINGS)
    assert stored(aws, "acme") == {"write_key": KEY_US, "region": "us"}  # as stored before settings existed
    assert api.get("acme")[1]["settings"] == DEFAULT_SETTINGS


def test_a_connection_stored_without_settings_shows_the_defaults(api, aws):
    aws.create_secret(Name=f"{PREFIX}/acme", SecretString=json.dumps({"write_key": KEY_EU, "region": "eu"}))
    assert api.get("acme")[1]["settings"] == DEFAULT_SETTINGS


def test_malformed_stored_settings_are_500_until_reconnected(api, aws):
    secret = {"write_key": KEY_US, "region": "us", "settings": {"ip": "mask"}}
    aws.create_secret(Name=f"{PREFIX}/acme", SecretString=json.dumps(secret))

    status, body = api.get("acme")

    assert (status, body["error"]["code"]) == (500, "connection_malformed")
    assert "settings.ip" in body["error"]["message"]
    assert api.put("acme", {"write_key": KEY_US, "settings": {"ip": "drop"}})[0] == 200
    assert api.get("acme")[1]["settings"]["ip"] == "drop"


# -- validation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"write_key": KEY_US, "region": "asia"}, "region", "invalid_value"),
        ({"region": "us"}, "write_key", "missing_field"),
        ({"write_key": KEY_US, "colour": "blue"}, "colour", "unknown_field"),
        ({"write_key": 12345}, "write_key", "invalid_type"),
        ({"write_key": ""}, "write_key", "invalid_value"),
        ({"write_key": "wk_us:TOPSECRET"}, "write_key", "invalid_value"),  # Basic auth ends the user name at ":"
        ({"write_key": "wk us TOPSECRET"}, "write_key", "invalid_value"),
        ("not json", "body", "invalid_json"),
        ("", "body", "invalid_body"),
        ([KEY_US], "body", "invalid_body"),
        ({"write_key": KEY_US, "settings": "strict"}, "settings", "invalid_type"),
        ({"write_key": KEY_US, "settings": {"anonymous_id": "cookie"}}, "settings.anonymous_id", "invalid_value"),
        ({"write_key": KEY_US, "settings": {"ip": "mask"}}, "settings.ip", "invalid_value"),
        ({"write_key": KEY_US, "settings": {"user_agent": "truncate"}}, "settings.user_agent", "invalid_value"),
        ({"write_key": KEY_US, "settings": {"consent_category": ""}}, "settings.consent_category", "invalid_value"),
        ({"write_key": KEY_US, "settings": {"consent_category": " "}}, "settings.consent_category", "invalid_value"),
        (
            {"write_key": KEY_US, "settings": {"consent_category": "x" * 101}},
            "settings.consent_category",
            "invalid_value",
        ),
        ({"write_key": KEY_US, "settings": {"consent_category": "a\tb"}}, "settings.consent_category", "invalid_value"),
        ({"write_key": KEY_US, "settings": {"events": []}}, "settings.events", "invalid_value"),
        ({"write_key": KEY_US, "settings": {"events": ["page"]}}, "settings.events.0", "invalid_value"),
        ({"write_key": KEY_US, "settings": {"events": ["identify", "identify"]}}, "settings.events", "invalid_value"),
        ({"write_key": KEY_US, "settings": {"spec_names": "no"}}, "settings.spec_names", "invalid_type"),
        ({"write_key": KEY_US, "settings": {"anonymise": True}}, "settings.anonymise", "unknown_field"),
    ],
)
def test_bad_body_is_400_naming_the_field(api, aws, body, field, code):
    status, answer = api.put("acme", body)
    assert status == 400
    assert answer["error"]["field"] == field
    assert answer["error"]["code"] == code
    assert set(answer["error"]) == {"code", "message", "field"}
    assert aws.list_secrets()["SecretList"] == []


def test_body_over_32_kb_is_413(api):
    status, answer = api.put("acme", {"write_key": KEY_US, "padding": "x" * 33_000})
    assert status == 413
    assert answer["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("method", ["PUT", "GET", "DELETE"])
def test_bad_workspace_id_is_400(api, aws, method):
    for workspace_id in ["a b", "w" * 65, "", "acme/../x", "café"]:
        status, answer = api.call(http_event(method, workspace_id, body={"write_key": KEY_US}))
        assert status == 400, workspace_id
        assert answer["error"]["field"] == "workspace_id"
    assert aws.list_secrets()["SecretList"] == []


def test_bad_workspace_id_on_the_test_route_is_400(api):
    status, answer = api.call(http_event("POST", "w" * 65, test=True))
    assert (status, answer["error"]["field"]) == (400, "workspace_id")


@pytest.mark.parametrize(
    ("method", "test", "route_key"),
    [
        ("PATCH", False, None),
        ("POST", False, None),
        ("GET", True, None),
        ("GET", False, "GET /v1/other"),
    ],
)
def test_unknown_route_or_method_is_404(api, method, test, route_key):
    event = http_event(method, "acme", test=test, route_key=route_key)
    if route_key:
        event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/other"
    status, answer = api.call(event)
    assert status == 404
    assert answer["error"]["code"] == "not_found"


def test_default_route_is_matched_by_path(api):
    api.put("acme", {"write_key": KEY_US})
    event = http_event("GET", "acme", route_key="$default")
    del event["pathParameters"]
    assert api.call(event) == (
        200,
        {
            "connected": True,
            "region": "us",
            "write_key_hint": "…" + KEY_US[-4:],
            "settings": DEFAULT_SETTINGS,
            "health": NO_HEALTH,
        },
    )


# -- the test route ------------------------------------------------------------------------------------------


def test_test_route_sends_one_track_to_the_workspace_region(api, sink):
    api.put("acme", {"write_key": KEY_US, "region": "us"})
    api.put("acme-eu", {"write_key": KEY_EU, "region": "EU"})
    status, body = api.test("acme-eu")
    assert status == 200
    assert body["region"] == "eu"
    assert body["endpoint"] == sink.region_url("eu") + "/v1/batch"
    events = sink.events()
    assert len(events) == 1
    event = events[0]
    assert (event["region"], event["write_key"]) == ("eu", KEY_EU)
    message = event["message"]
    assert message["type"] == "track"
    assert message["event"] == "Segment Connection Test"
    assert message["anonymousId"] == "segment-forwarder-connection-test"
    assert message["messageId"] == body["message_id"]
    assert str(uuid.UUID(body["message_id"])) == body["message_id"]
    assert message["properties"] == {"workspace_id": "acme-eu", "sent_by": "segment-forwarder"}
    assert message["context"]["library"]["name"] == "segment-forwarder"
    sent_at = datetime.fromisoformat(message["timestamp"])
    assert abs(sent_at - datetime.now(UTC)) < timedelta(seconds=30)
    requests = sink.requests()
    assert len(requests) == 1
    assert requests[0]["region"] == "eu"
    assert requests[0]["path"].endswith("/v1/batch")


def test_test_route_us_and_each_call_has_a_new_message_id(api, sink):
    api.put("acme", {"write_key": KEY_US})
    first = api.test("acme")
    second = api.test("acme")
    assert first[0] == second[0] == 200
    assert first[1]["message_id"] != second[1]["message_id"]
    assert first[1]["endpoint"] == sink.region_url("us") + "/v1/batch"
    assert [(e["region"], e["write_key"]) for e in sink.events()] == [("us", KEY_US), ("us", KEY_US)]


def test_test_route_when_not_connected_is_404(api, sink):
    status, body = api.test("nobody")
    assert status == 404
    assert body["error"]["code"] == "not_connected"
    api.put("acme", {"write_key": KEY_US})
    api.delete("acme")
    assert api.test("acme")[0] == 404
    assert sink.requests() == []


def test_test_route_when_segment_stays_unavailable_is_502(api, sink):
    api.put("acme", {"write_key": KEY_US})
    sink.set_fault(status=503, count=100)
    status, body = api.test("acme", LambdaContext(timeout_s=30))
    assert status == 502
    assert body["error"]["code"] == "segment_unavailable"
    assert "503" in body["error"]["message"]
    assert len(sink.requests()) >= 1
    assert sink.events() == []


def test_test_route_when_segment_refuses_is_502_rejected(api, sink):
    api.put("acme", {"write_key": KEY_US})
    sink.set_fault(status=401, count=1)
    status, body = api.test("acme")
    assert status == 502
    assert body["error"]["code"] == "segment_rejected"
    assert "401" in body["error"]["message"]
    assert len(sink.requests()) == 1  # not retried


# -- Secrets Manager failures --------------------------------------------------------------------------------


class _ThrottlingSecretsManager(BaseHTTPRequestHandler):
    """An endpoint that throttles every Secrets Manager call, as AWS does under load."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("x-amzn-ErrorType", "ThrottlingException")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def throttling_endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ThrottlingSecretsManager)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def closed_port_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def unavailable_api(base_env, logs, capsys, caplog):
    def make(endpoint):
        base_env.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint)
        base_env.setenv("AWS_MAX_ATTEMPTS", "1")  # no retry sleeps in the test
        return Api(load_handler(logs))

    caplog.set_level(logging.INFO)
    yield make
    captured = capsys.readouterr()
    for text in (logs.getvalue(), captured.out, captured.err, caplog.text):
        for key in KEYS:
            assert key not in text


@pytest.mark.parametrize("kind", ["throttled", "unreachable"])
def test_secrets_manager_failure_is_503(unavailable_api, throttling_endpoint, logs, kind):
    api = unavailable_api(throttling_endpoint if kind == "throttled" else closed_port_url())
    for status, body in (
        api.put("acme", {"write_key": KEY_US}),
        api.get("acme"),
        api.delete("acme"),
        api.test("acme"),
    ):
        assert status == 503
        assert body["error"]["code"] == "unavailable"
    errors = [entry for entry in log_lines(logs) if entry.get("message") == "Secrets Manager failed"]
    assert errors
    if kind == "throttled":
        assert errors[0]["error"] == "ThrottlingException"


# -- the write key never leaks -------------------------------------------------------------------------------


def test_no_answer_of_this_module_contains_a_write_key():
    assert ANSWERS, "run with the rest of the module"
    for answer in ANSWERS:
        for key in KEYS:
            assert key not in answer


@pytest.mark.parametrize("stage", ["$default", "prod"])
def test_the_ids_are_read_from_the_path_parameters_an_http_api_decoded_once(api, stage):
    api.put("acme", {"write_key": KEY_EU, "region": "eu"})
    prefix = "" if stage == "$default" else f"/{stage}"

    def get(workspace_id):
        event = http_event("GET", workspace_id)  # rawPath decoded, as an HTTP API gives it
        event["rawPath"] = event["requestContext"]["http"]["path"] = prefix + event["rawPath"]
        event["requestContext"]["stage"] = stage
        return api.call(event)

    assert get("acme")[1]["connected"] is True
    for workspace_id in ("a/b", "acme?x", ""):  # a bad id is a bad id (400 naming it), never an unknown route
        status, body = get(workspace_id)
        assert (status, body["error"]["field"]) == (400, "workspace_id"), (workspace_id, body)
