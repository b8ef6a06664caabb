"""The local stack on free ports, driven only as a user would: fixtures and helpers of the integration and
local-stack tests (their conftests import the fixtures from here).

HTTP goes to the API with urllib3, queues are used with boto3 on the stack's AWS endpoint, and what Segment
received is read from the sink. The demo write keys are registered with ``tests/support/leak_check.py`` and every answer
is scanned, so no test's output or answer may hold one. Each module gets its own stack (started once), configured
by an optional module-level ``STACK_OVERRIDES`` dict of ``LocalStack`` keyword arguments (which override the
template)::

    STACK_OVERRIDES = {"visibility_timeout_s": 3, "parameters": {"MaxReceiveCount": "3"}}

Every stack checks each function's AWS calls against its IAM policy in the template (``iam_check=True``: node and
``node_tools/node_modules`` are required, ``make iam-evaluator``). A denied call fails the test during which it was
recorded (or, when it lands after the module's last test, that test's teardown); a module that provokes denials on
purpose lists them as ``IAM_EXPECTED_DENIALS = {("IdentifyFunction", "sqs:SendMessage"): "why"}``.

    def test_something(stack, api):
        status, body = api.post("/v1/identify", {"workspace_id": "demo", "visitor_id": new_id("v")})
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from local_stack.stack import DUMMY_CREDENTIALS, REGION, LocalStack
from segment_forwarder_client import ForwarderClient, QueueProducer, RetryPolicy

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "integration-token"
LOCAL_CREDENTIALS = (DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"], DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
FAST_RETRY = RetryPolicy(max_attempts=6, base_s=0.05, cap_s=0.5, budget_s=20)
# The effective settings the connection routes show for a connection made without any (README "Settings"): the
# behaviour before settings existed. Written out here, not taken from the code, so a changed default fails tests.
DEFAULT_SETTINGS = {
    "anonymous_id": "visitor_id",
    "ip": "pass",
    "user_agent": "pass",
    "events": ["identify", "experiment_viewed", "conversion_triggered"],
    "spec_names": True,
}


def new_id(prefix: str) -> str:
    """A fresh id, so tests never see each other's dedup state."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def run_tool(stack: LocalStack, module: str, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m <module> args...`` (an operator tool, as ``make`` runs it) against the stack: its ports in
    ``LOCAL_AWS_PORT`` / ``LOCAL_API_PORT``, no ``AWS_*`` or other ``LOCAL_*`` variable of the test's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCAL_"))}
    env |= {
        "LOCAL_AWS_PORT": stack.aws_endpoint.rsplit(":", 1)[1],
        "LOCAL_API_PORT": stack.api_url.rsplit(":", 1)[1],
        "PYTHONPATH": str(ROOT / "layers" / "forwarder"),
    }
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def wait_for[T](probe: Callable[[], T], timeout_s: float = 10.0, interval_s: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail the test with the last value at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s}s (last value: {value!r})")
        time.sleep(interval_s)


class Api:
    """A small HTTP client of the stack's API (bearer token by default)."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token
        self.http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=40))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        token: str | None = None,
        authorization: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Send a request; returns (status, parsed JSON body or None when empty)."""
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if authorization is not None:
            all_headers["Authorization"] = authorization
        elif token != "":
            all_headers["Authorization"] = f"Bearer {token or self.token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        response = self.http.request(method, self.base_url + path, body=data, headers=all_headers)
        from tests.support.leak_check import scan  # imported by pytest_plugins first (assert rewrite)

        scan(response.data.decode("utf-8", "replace"), f"the answer to {method} {path}")
        return response.status, (json.loads(response.data) if response.data else None)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        """POST a JSON body."""
        return self.request("POST", path, body, **kwargs)


def signed_client(stack: LocalStack, **kwargs: Any) -> ForwarderClient:
    """The producer client on the stack's API, signing with the local dummy credentials (short backoffs)."""
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("credentials", LOCAL_CREDENTIALS)
    return ForwarderClient(stack.api_url, region=REGION, **kwargs)


def queue_producer(stack: LocalStack, **kwargs: Any) -> QueueProducer:
    """The queue producer on the stack's three queues and AWS endpoint (local dummy credentials)."""
    kwargs.setdefault("retry", FAST_RETRY)
    urls = {kind: stack.queue_url(f"{kind.title()}Queue") for kind in ("identify", "assignment", "conversion")}
    return QueueProducer(urls, region=REGION, credentials=LOCAL_CREDENTIALS, endpoint_url=stack.aws_endpoint, **kwargs)


def events_of(stack: LocalStack, visitor: str, region: str | None = None) -> list[dict[str, Any]]:
    """What the sink recorded for one visitor (anonymousId), oldest first."""
    return [e for e in stack.sink.events(region=region) if e["message"].get("anonymousId") == visitor]


def queue_depth(stack: LocalStack, queue_url: str) -> int:
    """Visible + in-flight + delayed messages of a queue."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = stack.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)


def drain(stack: LocalStack, queue_url: str) -> list[dict[str, Any]]:
    """Receive and delete everything visible in a queue (e.g. a DLQ), with message attributes."""
    sqs = stack.client("sqs")
    taken: list[dict[str, Any]] = []
    while True:
        answer = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"]
        )
        messages = answer.get("Messages", [])
        if not messages:
            return taken
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        taken.extend(messages)


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    """The local stack on free ports, once per test module (IAM check on, see the module docstring)."""
    overrides = {"iam_check": True, **getattr(request.module, "STACK_OVERRIDES", {})}
    with LocalStack(api_port=0, sink_port=0, aws_port=0, token=TOKEN, log=print, **overrides) as started:
        register_connected_keys(started)
        yield started
        _fail_on_new_denials(started, request, "after the module's last test")


_denials_reported: dict[int, int] = {}  # id(IamCheck) -> denials already failed a test


def _fail_on_new_denials(stack: LocalStack, request: pytest.FixtureRequest, when: str) -> None:
    """Fail with the function calls the IAM check denied since the last look (minus the module's expected ones)."""
    if stack.iam is None:
        return
    denials = stack.iam.denials()
    seen = _denials_reported.get(id(stack.iam), 0)
    _denials_reported[id(stack.iam)] = len(denials)
    expected = getattr(request.module, "IAM_EXPECTED_DENIALS", {})
    new = [d for d in denials[seen:] if (d.function, d.action) not in expected]
    if new:
        lines = "\n".join(dict.fromkeys(f"  {d.function} {d.action} on {d.resource} ({d.reason})" for d in new))
        pytest.fail(f"IAM denied {len(new)} AWS call(s) of the functions {when} (template.yaml's policies):\n{lines}")


@pytest.fixture(autouse=True)
def _no_iam_denials(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test using the stack fails when a function's AWS call was denied meanwhile (see the module docstring)."""
    if "stack" not in request.fixturenames:
        yield
        return
    running: LocalStack = request.getfixturevalue("stack")
    _fail_on_new_denials(running, request, "before this test")  # the previous test's late calls
    yield
    _fail_on_new_denials(running, request, "during this test")


def register_connected_keys(stack: LocalStack) -> None:
    """Have tests/support/leak_check.py fail any test whose output (the stack's log lines included) holds a write
    key."""
    from tests.support.leak_check import register_write_key  # imported by pytest_plugins first (assert rewrite)

    for workspace in stack.connected_workspaces():
        register_write_key(stack.write_key(workspace))


@pytest.fixture(scope="module")
def api(stack: LocalStack) -> Api:
    """HTTP client of the stack's API with the right bearer token."""
    return Api(stack.api_url, TOKEN)
