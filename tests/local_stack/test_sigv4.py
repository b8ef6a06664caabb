"""The local HTTP API verifies SigV4 as API Gateway's IAM authorization does (and still takes its bearer token).

Requests are signed here with botocore's own signer (not the project's client), sent over real HTTP with urllib3,
and the function behind the route is the real one: a refused request must not reach it (nothing at the sink).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from local_stack.stack import LocalStack
from tests.support.stack_client import TOKEN, events_of, new_id

pytestmark = pytest.mark.integration

HTTP = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=30))
MISMATCH = "The request signature we calculated does not match the signature you provided."


def sign(
    method: str,
    url: str,
    body: bytes = b"",
    *,
    access_key: str = "testing",
    secret_key: str = "testing",
    region: str = "us-east-1",
    service: str = "execute-api",
    when: datetime | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """Headers of a request signed by botocore (at ``when``, default now)."""
    request = AWSRequest(
        method=method, url=url, data=body, headers={"Content-Type": "application/json", **(headers or {})}
    )
    signer = SigV4Auth(Credentials(access_key, secret_key), service, region)
    if when is None:
        signer.add_auth(request)
    else:
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            signer.add_auth(request)
    return dict(request.headers.items())


def send(method: str, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any, urllib3.HTTPHeaderDict]:
    response = HTTP.request(method, url, body=body or None, headers=headers)
    return response.status, json.loads(response.data) if response.data else None, response.headers


def identify(stack: LocalStack) -> tuple[str, str, bytes]:
    visitor = new_id("v")
    return visitor, f"{stack.api_url}/v1/identify", json.dumps({"workspace_id": "demo", "visitor_id": visitor}).encode()


def test_a_request_signed_with_the_local_credentials_reaches_the_function(stack):
    visitor, url, body = identify(stack)

    status, answer, _ = send("POST", url, body, sign("POST", url, body))

    assert status == 200
    assert answer["status"] == "delivered"
    assert [e["message"]["type"] for e in events_of(stack, visitor)] == ["identify"]


def test_signed_connection_routes_work_too_including_an_encoded_path(stack):
    url = f"{stack.api_url}/v1/workspaces/demo/segment"
    status, answer, _ = send("GET", url, b"", sign("GET", url))
    assert (status, answer["connected"]) == (200, True)

    # A path with an escaped character is signed over its double-encoded form (the rule of every service but S3).
    url = f"{stack.api_url}/v1/workspaces/not%20valid/segment"
    status, answer, _ = send("GET", url, b"", sign("GET", url))
    assert status == 400  # accepted by the gateway; the function refuses the workspace id
    assert answer["error"]["field"] == "workspace_id"


def test_a_signed_query_string_is_part_of_the_signature(stack):
    _, url, body = identify(stack)
    headers = sign("POST", url + "?b=2&a=1", body)

    assert send("POST", url + "?b=2&a=1", body, headers)[0] == 200
    status, answer, _ = send("POST", url + "?b=3&a=1", body, headers)  # the query changed after signing
    assert status == 403
    assert answer["message"].startswith(MISMATCH)


def test_a_wrong_secret_key_is_refused_with_api_gateways_message(stack):
    visitor, url, body = identify(stack)
    before = len(stack.sink.requests())

    status, answer, headers = send("POST", url, body, sign("POST", url, body, secret_key="not-the-secret"))

    assert status == 403
    assert headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    assert answer["message"].startswith(MISMATCH + " Check your AWS Secret Access Key and signing method.")
    assert "The Canonical String for this request should have been\n'POST\n/v1/identify\n" in answer["message"]
    assert len(stack.sink.requests()) == before
    assert events_of(stack, visitor) == []


def test_a_body_changed_after_signing_is_refused(stack):
    visitor, url, body = identify(stack)
    headers = sign("POST", url, body)
    tampered = json.dumps({"workspace_id": "demo", "visitor_id": visitor + "-x"}).encode()

    status, answer, _ = send("POST", url, tampered, headers)

    assert status == 403
    assert answer["message"].startswith(MISMATCH)
    assert events_of(stack, visitor + "-x") == []


def test_a_false_content_hash_header_is_refused(stack):
    _, url, body = identify(stack)
    headers = sign("POST", url, body, headers={"X-Amz-Content-SHA256": "0" * 64})

    status, answer, _ = send("POST", url, body, headers)

    assert status == 403
    assert answer["message"].startswith(MISMATCH)


@pytest.mark.parametrize(
    ("shift", "expected"),
    [(timedelta(minutes=-6), "Signature expired: "), (timedelta(minutes=6), "Signature not yet current: ")],
    ids=["stale", "future"],
)
def test_a_request_signed_more_than_5_minutes_away_is_refused(stack, shift, expected):
    visitor, url, body = identify(stack)
    when = datetime.now(UTC) + shift

    status, answer, headers = send("POST", url, body, sign("POST", url, body, when=when))

    assert status == 403
    assert headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    assert answer["message"].startswith(expected + when.strftime("%Y%m%dT%H%M%SZ"))
    assert events_of(stack, visitor) == []


def test_a_request_signed_4_minutes_ago_is_still_accepted(stack):
    _, url, body = identify(stack)

    status, _, _ = send("POST", url, body, sign("POST", url, body, when=datetime.now(UTC) - timedelta(minutes=4)))

    assert status == 200


@pytest.mark.parametrize(
    ("signing", "error_type", "message"),
    [
        (
            {"access_key": "AKIAOTHER"},
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        (
            {"region": "eu-west-1"},
            "InvalidSignatureException",
            "Credential should be scoped to a valid region, not 'eu-west-1'. ",
        ),
        (
            {"service": "lambda"},
            "InvalidSignatureException",
            "Credential should be scoped to correct service: 'execute-api'. ",
        ),
    ],
    ids=["unknown-access-key", "other-region", "other-service"],
)
def test_other_credentials_regions_and_services_are_refused(stack, signing, error_type, message):
    _, url, body = identify(stack)

    status, answer, headers = send("POST", url, body, sign("POST", url, body, **signing))

    assert (status, answer, headers["x-amzn-ErrorType"]) == (403, {"message": message}, error_type)


def test_an_incomplete_authorization_header_is_refused(stack):
    _, url, body = identify(stack)
    headers = sign("POST", url, body)
    headers["Authorization"] = headers["Authorization"].split(", Signature=")[0]

    status, answer, response_headers = send("POST", url, body, headers)

    assert status == 403
    assert response_headers["x-amzn-ErrorType"] == "IncompleteSignatureException"
    assert answer["message"].startswith("Authorization header requires 'Signature' parameter.")


def test_an_unsigned_request_is_refused_as_api_gateway_does_and_the_function_does_not_run(stack):
    visitor, url, body = identify(stack)

    status, answer, _ = send("POST", url, body, {"Content-Type": "application/json"})

    assert (status, answer) == (403, {"message": "Forbidden"})
    assert events_of(stack, visitor) == []


def test_the_bearer_token_keeps_working_beside_sigv4(stack):
    visitor, url, body = identify(stack)

    assert send("POST", url, body, {"Authorization": f"Bearer {TOKEN}"})[:2] == (
        200,
        {"status": "delivered", "message_ids": mock.ANY},
    )
    assert send("POST", url, body, {"Authorization": "Bearer wrong"})[:2] == (401, {"message": "Unauthorized"})
    assert len(events_of(stack, visitor)) == 1
