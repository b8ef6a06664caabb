"""What the local stack promises as Lambda, API Gateway and the SQS event source, seen from a function.

The stack runs a copy of template.yaml in which two functions point at small functions written here:
IdentifyFunction echoes what it receives (HTTP events as its answer, SQS batches into a file) and fails on
request; ConnectionFunction's ``app.py`` imports a module that only appears in the middle of the test, as when
someone is still writing it. Everything else (resources, routes, event sources) is the template's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from local_stack.http_api import HttpApi, Route
from local_stack.lambda_pool import FunctionPool, FunctionSpec
from local_stack.stack import LocalStack
from tests.support.stack_client import TOKEN, Api, drain, queue_depth, register_connected_keys, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 3
MAX_RECEIVES = 2

ECHO = """
import base64, json, os, time


def handler(event, context):
    if "Records" in event:
        with open(os.environ["ECHO_LOG"], "a") as log:
            log.write(json.dumps(event) + "\\n")
        failed = []
        for record in event["Records"]:
            order = json.loads(record["body"])
            if order.get("raise"):
                raise RuntimeError("told to fail the whole batch")
            if order.get("fail"):
                failed.append({"itemIdentifier": record["messageId"]})
            if order.get("bad_report"):
                failed.append({"itemIdentifier": "no-such-message"})
        # Every record is done; a "stall" order on its first receive then holds the answer past the timeout.
        if any(json.loads(r["body"]).get("stall") and r["attributes"]["ApproximateReceiveCount"] == "1"
               for r in event["Records"]):
            time.sleep(10)
        return {"batchItemFailures": failed}
    mode = (event.get("queryStringParameters") or {}).get("mode", "echo")
    if mode == "raise":
        raise RuntimeError("told to raise")
    if mode == "garbage":
        return {"statusCode": "teapot"}
    if mode == "plain":
        return {"hello": "world"}
    if mode == "exit":
        os._exit(3)
    if mode == "sleep":
        time.sleep(10)
    if mode == "binary":
        return {"statusCode": 201, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(b"\\x00\\xff").decode(), "isBase64Encoded": True}
    answer = {"event": event, "left_ms": context.get_remaining_time_in_millis(), "pid": os.getpid(),
              "function": context.function_name, "request_id": context.aws_request_id,
              "sys_path": __import__("sys").path[:2], "env": {k: os.environ.get(k) for k in
              ("AWS_ENDPOINT_URL", "QUEUE_URL", "DLQ_URL", "DEDUP_TABLE", "SEGMENT_US_ENDPOINT", "HOME",
               "AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL")}}
    return {"statusCode": 200, "headers": {"content-type": "application/json", "x-echo": "yes"},
            "cookies": ["session=abc; Path=/"], "body": json.dumps(answer)}
"""

STACK_OVERRIDES: dict[str, Any] = {
    "visibility_timeout_s": 1,
    "function_timeout_s": TIMEOUT_S,
    "parameters": {"MaxReceiveCount": str(MAX_RECEIVES), "BatchSize": "10", "BatchingWindowSeconds": "0"},
}


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    identify = tmp_path_factory.mktemp("identify")
    (identify / "app.py").write_text(ECHO, encoding="utf-8")
    connection = tmp_path_factory.mktemp("connection")
    (connection / "app.py").write_text("from work_in_progress import handler  # noqa\n", encoding="utf-8")
    return {"identify": identify, "connection": connection, "log": tmp_path_factory.mktemp("log") / "sqs.jsonl"}


@pytest.fixture(scope="module")
def stack(code: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    text = (ROOT / "template.yaml").read_text(encoding="utf-8")
    for name in ("identify", "connection"):
        text = text.replace(f"CodeUri: functions/{name}/", f"CodeUri: {code[name]}/")
    text = re.sub(r"CodeUri: functions/", f"CodeUri: {ROOT}/functions/", text)
    text = re.sub(r"ContentUri: layers/", f"ContentUri: {ROOT}/layers/", text)
    template = tmp_path_factory.mktemp("template") / "template.yaml"
    template.write_text(text, encoding="utf-8")
    with LocalStack(
        api_port=0,
        sink_port=0,
        aws_port=0,
        token=TOKEN,
        template_path=template,
        environment={"ECHO_LOG": str(code["log"])},
        log=print,
        **STACK_OVERRIDES,
    ) as started:
        register_connected_keys(started)
        yield started


def _batches(code: dict[str, Path]) -> list[dict]:
    if not code["log"].exists():
        return []
    return [json.loads(line) for line in code["log"].read_text(encoding="utf-8").splitlines()]


def _records_of(code: dict[str, Path], message_id: str) -> list[dict]:
    return [r for batch in _batches(code) for r in batch["Records"] if r["messageId"] == message_id]


# -- a function whose code does not import (yet) --------------------------------------------------------------


def test_a_function_whose_code_does_not_import_answers_503(stack, api: Api):
    assert "work_in_progress" in stack.unavailable_functions()["ConnectionFunction"]

    status, body = api.request("GET", "/v1/workspaces/demo/segment")

    assert status == 503
    assert body["error"]["code"] == "function_unavailable"
    assert "No module named 'work_in_progress'" in body["error"]["message"]

    # The others are not affected.
    assert api.post("/v1/identify", {})[0] == 200


# -- API Gateway: the payload 2.0 event and the answer ---------------------------------------------------------


def test_the_function_gets_an_api_gateway_v2_event(stack, api: Api):
    status, answer = api.post(
        "/v1/identify?b=2&a=1&a=3",
        {"hello": "wörld"},
        headers={"Cookie": "c1=v1; c2=v2", "X-Custom": "Yes", "User-Agent": "integration"},
    )

    assert status == 200
    event = answer["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /v1/identify"
    assert event["rawPath"] == "/v1/identify"
    assert event["rawQueryString"] == "b=2&a=1&a=3"
    assert event["queryStringParameters"] == {"a": "1,3", "b": "2"}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["headers"]["x-custom"] == "Yes"
    assert event["headers"]["content-type"] == "application/json"
    assert event["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert "cookie" not in event["headers"]
    assert all(name == name.lower() for name in event["headers"])
    assert json.loads(event["body"]) == {"hello": "wörld"}
    assert event["isBase64Encoded"] is False
    assert "pathParameters" not in event
    context = event["requestContext"]
    assert context["http"] == {
        "method": "POST",
        "path": "/v1/identify",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "integration",
    }
    assert context["routeKey"] == "POST /v1/identify"
    assert context["stage"] == "$default"
    assert context["accountId"] == "123456789012"
    assert {"apiId", "domainName", "requestId", "time", "timeEpoch"} <= set(context)


def test_a_sigv4_signed_request_carries_the_iam_caller_and_a_bearer_one_none(stack, api: Api):
    url = f"{stack.api_url}/v1/identify"
    signed = AWSRequest(method="POST", url=url, data=b"{}", headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials("testing", "testing"), "execute-api", "us-east-1").add_auth(signed)

    response = urllib3.request("POST", url, body=b"{}", headers=dict(signed.headers.items()), timeout=10)
    status, answer = api.post("/v1/identify", {})

    assert response.status == 200
    assert response.json()["event"]["requestContext"]["authorizer"] == {
        "iam": {
            "accessKey": "testing",
            "accountId": "123456789012",
            "callerId": "AIDALOCALSTACKCALLER",
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": "arn:aws:iam::123456789012:user/local",
            "userId": "AIDALOCALSTACKCALLER",
        }
    }
    assert status == 200
    assert "authorizer" not in answer["event"]["requestContext"]


def test_the_function_runs_in_its_own_lambda_like_environment(stack, api: Api, code):
    status, answer = api.post("/v1/identify", {})

    assert status == 200
    assert TIMEOUT_S * 1000 - 1000 < answer["left_ms"] <= TIMEOUT_S * 1000
    assert answer["function"] == "segment-forwarder-local-IdentifyFunction"
    assert answer["sys_path"] == [str(code["identify"].resolve()), str(ROOT / "layers/forwarder")]
    env = answer["env"]
    assert env["AWS_ENDPOINT_URL"] == stack.aws_endpoint
    assert env["QUEUE_URL"] == stack.queue_url("IdentifyQueue")
    assert env["DLQ_URL"] == stack.dlq_url("IdentifyQueue")
    assert env["DEDUP_TABLE"] == stack.table_name
    assert env["SEGMENT_US_ENDPOINT"] == stack.sink.region_url("us")
    assert env["HOME"] is None  # nothing of the developer's environment leaks in
    # what Lambda sets from the template's LoggingConfig (JSON, the application log level)
    logging = stack.template.logging_config("IdentifyFunction")
    assert (env["AWS_LAMBDA_LOG_FORMAT"], env["AWS_LAMBDA_LOG_LEVEL"]) == ("JSON", logging.application_level)
    assert answer["pid"] in stack.worker_pids("IdentifyFunction")


def test_the_function_is_picked_up_once_its_code_imports(stack, api: Api, code):
    # Path parameters, a binary body, the answer's headers and cookies: through the function that now imports.
    (code["connection"] / "work_in_progress.py").write_text(ECHO, encoding="utf-8")
    response = wait_for(
        lambda: (
            (
                r := api.http.request(
                    "PUT",
                    f"{stack.api_url}/v1/workspaces/ws%2D1/segment",
                    body=b"\xff\x00binary",
                    headers={"Authorization": f"Bearer {TOKEN}"},
                )
            ).status
            == 200
            and r
        )
    )

    event = json.loads(response.data)["event"]
    assert event["routeKey"] == "PUT /v1/workspaces/{workspace_id}/segment"
    # an HTTP API gives the path decoded, and each path parameter decoded once
    assert event["rawPath"] == event["requestContext"]["http"]["path"] == "/v1/workspaces/ws-1/segment"
    assert event["pathParameters"] == {"workspace_id": "ws-1"}
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\x00binary"
    assert response.headers["x-echo"] == "yes"
    assert response.headers["set-cookie"] == "session=abc; Path=/"
    assert response.headers["apigw-requestid"]


def test_answers_the_function_gives_in_other_shapes(stack, api: Api):
    binary = api.http.request(
        "POST", f"{stack.api_url}/v1/identify?mode=binary", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert (binary.status, binary.data, binary.headers["content-type"]) == (
        201,
        b"\x00\xff",
        "application/octet-stream",
    )
    assert api.post("/v1/identify?mode=plain", {}) == (200, {"hello": "world"})  # 2.0 infers a 200 JSON answer
    # An HTTP API answers 500 for any failed Lambda integration (a REST API would answer 502).
    assert api.post("/v1/identify?mode=garbage", {}) == (500, {"message": "Internal Server Error"})
    assert api.post("/v1/identify?mode=raise", {}) == (500, {"message": "Internal Server Error"})


@pytest.mark.concurrency
@pytest.mark.parametrize("mode", ["exit", "sleep"])
def test_a_crash_or_a_timeout_answers_500_and_the_next_call_gets_a_fresh_environment(stack, api: Api, mode):
    before = api.post("/v1/identify", {})[1]["pid"]

    started = time.monotonic()
    assert api.post(f"/v1/identify?mode={mode}", {}) == (500, {"message": "Internal Server Error"})
    assert time.monotonic() - started < TIMEOUT_S + 1.5  # a timeout is answered at the function's Timeout

    status, answer = api.post("/v1/identify", {})
    assert status == 200
    assert answer["pid"] != before  # calls are sequential, so the environment that failed is the one reused before
    assert before not in stack.worker_pids("IdentifyFunction")


# -- the SQS event source -------------------------------------------------------------------------------------


def _send(stack: LocalStack, body: dict, **attributes: Any) -> str:
    message_attributes = {}
    for name, value in attributes.items():
        if isinstance(value, bytes):
            message_attributes[name] = {"DataType": "Binary", "BinaryValue": value}
        elif isinstance(value, int):
            message_attributes[name] = {"DataType": "Number", "StringValue": str(value)}
        else:
            message_attributes[name] = {"DataType": "String", "StringValue": value}
    sent = stack.client("sqs").send_message(
        QueueUrl=stack.queue_url("IdentifyQueue"),
        MessageBody=json.dumps(body),
        MessageAttributes=message_attributes,
    )
    return sent["MessageId"]


def test_records_have_lambdas_shape(stack, code):
    body = {"ok": True}
    message_id = _send(stack, body, delivery_id="d-1", attempt=3, blob=b"\x01\x02")

    record = wait_for(lambda: _records_of(code, message_id))[0]

    assert record["body"] == json.dumps(body)
    assert record["md5OfBody"] == hashlib.md5(json.dumps(body).encode()).hexdigest()
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == "arn:aws:sqs:us-east-1:123456789012:segment-forwarder-local-IdentifyQueue"
    assert record["awsRegion"] == "us-east-1"
    assert record["receiptHandle"]
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "ApproximateFirstReceiveTimestamp", "SenderId"} <= set(record["attributes"])
    assert record["messageAttributes"] == {
        "delivery_id": {"stringValue": "d-1", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
        "attempt": {"stringValue": "3", "stringListValues": [], "binaryListValues": [], "dataType": "Number"},
        "blob": {"binaryValue": "AQI=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
    }
    wait_for(lambda: queue_depth(stack, stack.queue_url("IdentifyQueue")) == 0)


def test_only_the_reported_failures_come_back(stack, code):
    ok_id = _send(stack, {"ok": True, "n": 1})
    failing_id = _send(stack, {"fail": True})

    comebacks = wait_for(lambda: len(_records_of(code, failing_id)) >= 2 and _records_of(code, failing_id))

    assert [r["attributes"]["ApproximateReceiveCount"] for r in comebacks[:2]] == ["1", "2"]
    assert len(_records_of(code, ok_id)) == 1
    # After MaxReceiveCount receives the queue's own redrive policy parks it in the dead-letter queue.
    parked = wait_for(lambda: drain(stack, stack.dlq_url("IdentifyQueue")), timeout_s=10)
    assert [m["MessageId"] for m in parked] == [failing_id]
    assert len(_records_of(code, failing_id)) == MAX_RECEIVES


@pytest.mark.parametrize("order", [{"raise": True}, {"bad_report": True}], ids=["function-raises", "unknown-id"])
def test_a_function_error_or_an_invalid_report_fails_the_whole_batch(stack, code, order):
    with stack.pollers_paused():
        innocent_id = _send(stack, {"ok": True})
        culprit_id = _send(stack, order)

    wait_for(lambda: len(_records_of(code, innocent_id)) >= 2, timeout_s=10)  # it came back: nothing was deleted

    first = next(b for b in _batches(code) if innocent_id in {r["messageId"] for r in b["Records"]})
    assert {r["messageId"] for r in first["Records"]} == {innocent_id, culprit_id}
    wait_for(lambda: queue_depth(stack, stack.queue_url("IdentifyQueue")) == 0, timeout_s=15)
    assert culprit_id in {m["MessageId"] for m in drain(stack, stack.dlq_url("IdentifyQueue"))}


# -- the AWS endpoint refuses what SQS refuses (local_stack.strict_sqs; its rules: tests/local_stack/test_strict_sqs)


def test_the_endpoints_sqs_refuses_what_sqs_refuses(stack):
    sqs = stack.client("sqs")
    url = sqs.create_queue(QueueName="strict-check", Attributes={"MaximumMessageSize": "1024"})["QueueUrl"]
    eleven = {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)}

    with pytest.raises(ClientError) as too_many:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes=eleven)
    with pytest.raises(ClientError) as too_long:
        sqs.send_message(QueueUrl=url, MessageBody="é" * 513)  # 1,026 bytes in 513 characters
    with pytest.raises(ClientError) as too_late:
        sqs.send_message(QueueUrl=url, MessageBody="x", DelaySeconds=-1)

    assert too_many.value.response["Error"]["Message"] == (
        "Number of message attributes [11] exceeds the allowed maximum [10]."
    )
    assert too_long.value.response["Error"]["Message"] == (
        "One or more parameters are invalid. Reason: Message must be shorter than 1024 bytes."
    )
    assert too_late.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert queue_depth(stack, url) == 0


def test_a_batch_whose_invocation_times_out_comes_back_whole(stack, code):
    with stack.pollers_paused():
        finished_id = _send(stack, {"ok": True})  # the function is done with it when it runs out of time
        stalling_id = _send(stack, {"stall": True})

    wait_for(lambda: len(_records_of(code, finished_id)) >= 2, timeout_s=TIMEOUT_S + 10)

    first = next(b for b in _batches(code) if finished_id in {r["messageId"] for r in b["Records"]})
    assert {r["messageId"] for r in first["Records"]} == {finished_id, stalling_id}
    # Nothing was deleted: both came back after the visibility timeout, received a second time.
    for message_id in (finished_id, stalling_id):
        receives = wait_for(lambda m=message_id: len(_records_of(code, m)) >= 2 and _records_of(code, m))
        assert [r["attributes"]["ApproximateReceiveCount"] for r in receives] == ["1", "2"]
    wait_for(lambda: queue_depth(stack, stack.queue_url("IdentifyQueue")) == 0, timeout_s=15)
    assert not {finished_id, stalling_id} & {m["MessageId"] for m in drain(stack, stack.dlq_url("IdentifyQueue"))}


# -- the HTTP API's own integration timeout -------------------------------------------------------------------

SLOW = """
import time


def handler(event, context):
    time.sleep(float(event["queryStringParameters"]["s"]))
    return {"slept": event["queryStringParameters"]["s"]}
"""


@pytest.fixture
def slow_api(tmp_path: Path) -> Iterator[tuple[HttpApi, FunctionPool]]:
    """One function whose Timeout (5 s) is longer than the HTTP API's integration timeout (shortened to 1 s)."""
    (tmp_path / "app.py").write_text(SLOW, encoding="utf-8")
    spec = FunctionSpec(
        name="SlowFunction",
        code_dir=tmp_path,
        handler="app.handler",
        timeout_s=5,
        memory_mb=128,
        environment={"PATH": "/usr/bin:/bin"},
    )
    pool = FunctionPool(spec, max_workers=1, log=print)
    pool.start()
    assert pool.wait_ready() is None
    api = HttpApi(
        [Route.parse("GET", "/slow", "SlowFunction")],
        invoke=lambda _function, event: pool.invoke(event),
        token=TOKEN,
        credentials=("testing", "testing"),
        port=0,
        log=print,
        integration_timeout_s=1.0,
    ).start()
    try:
        yield api, pool
    finally:
        api.stop()
        pool.stop()


def test_the_integration_timeout_answers_503_while_the_function_runs_on(slow_api):
    api, pool = slow_api
    client = Api(api.url, TOKEN)
    worker = pool.pids()

    started = time.monotonic()
    assert client.request("GET", "/slow?s=2.5") == (503, {"message": "Service Unavailable"})
    assert time.monotonic() - started < 1.5  # the API's 1 s, not the function's 2.5 s

    # The function was not stopped: it ends within its own Timeout, and its environment (the only one) then
    # serves the next call.
    time.sleep(max(started + 2.7 - time.monotonic(), 0))
    assert client.request("GET", "/slow?s=0") == (200, {"slept": "0"})
    assert pool.pids() == worker


def test_an_http_apis_integration_timeout_is_at_most_30_s():
    with pytest.raises(ValueError, match="integration timeout"):
        HttpApi([], invoke=lambda _f, _e: None, token=TOKEN, credentials=("a", "b"), integration_timeout_s=31)


@pytest.fixture
def echo_api() -> Iterator[tuple[HttpApi, list[int]]]:
    """An HTTP API whose function (in-process) answers ``{"n": len(body), "pad": "x" * <pad query>}`` and records
    the body length of each invocation: whether the function ran at all."""
    calls: list[int] = []

    def invoke(_function: str, event: dict[str, Any]) -> Any:
        calls.append(len(event.get("body") or ""))
        pad = int((event.get("queryStringParameters") or {}).get("pad", "0"))
        return {"statusCode": 200, "body": json.dumps({"n": len(event.get("body") or ""), "pad": "x" * pad})}

    api = HttpApi(
        [Route.parse("POST", "/echo", "EchoFunction")],
        invoke=invoke,
        token=TOKEN,
        credentials=("testing", "testing"),
        port=0,
        log=print,
    ).start()
    try:
        yield api, calls
    finally:
        api.stop()


def test_an_event_over_lambdas_6_mb_request_payload_is_refused_before_the_function_runs(echo_api):
    api, calls = echo_api
    client = Api(api.url, TOKEN)
    under = b'"' + b"x" * (6 * 1024 * 1024 - 4096) + b'"'  # the event's other fields take under 4 KB
    assert client.request("POST", "/echo", raw=under) == (200, {"n": len(under), "pad": ""})

    over = b'"' + b"x" * (7 * 1024 * 1024) + b'"'  # within API Gateway's 10 MB, over Lambda's 6 MB
    assert client.request("POST", "/echo", raw=over) == (413, {"message": "Request Entity Too Large"})
    assert calls == [len(under)]


def test_a_response_over_lambdas_6_mb_payload_is_a_failed_integration(echo_api):
    api, _ = echo_api
    client = Api(api.url, TOKEN)
    status, body = client.request("POST", "/echo?pad=6000000", raw=b"{}")
    assert status == 200 and len(body["pad"]) == 6_000_000
    assert client.request("POST", "/echo?pad=6300000", raw=b"{}") == (500, {"message": "Internal Server Error"})
