"""Component tests: the functions' real entry points (``functions/<name>/app.py``) against moto (in-process) with
resources created from template.yaml, the Segment sink over real HTTP, and connected workspaces.

Every handler ``stack.handler`` gives is stopped at its context's deadline, as Lambda stops a function at its
Timeout (``local_stack.invoke.enforced``): ``handler(event, LambdaContext(timeout_s=2))`` raises
``FunctionTimedOut`` once 2 s have passed. ``stack.post`` and ``stack.invoke_sqs`` also apply what follows a
timeout on AWS: the HTTP API answers, the event source fails the whole batch::

    status, body = stack.post("assignment", body, timeout_s=1)       # (500, {"message": "Internal Server Error"})
    batch = stack.invoke_sqs("assignment", records, timeout_s=1)     # batch.retried: every record's messageId

The dedup table runs on moto unless a test asks for another engine: ``@on_both_engines`` runs it on moto and on
dynalite (``tests/support/dynalite.py``), the table created there from the template and the functions pointed at it with
``AWS_ENDPOINT_URL_DYNAMODB``; everything else stays on moto.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import botocore.exceptions
import pytest
from moto import mock_aws

from local_stack import moto_dynamodb, strict_sqs
from local_stack.http_api import (
    FUNCTION_FAILED,
    INTEGRATION_TIMED_OUT,
    INTEGRATION_TIMEOUT_S,
    MAX_INVOKE_REQUEST_BYTES,
    MAX_INVOKE_RESPONSE_BYTES,
    payload_bytes,
)
from local_stack.invoke import FunctionTimedOut, Invocation, LambdaContext, enforced, invoke, sqs_record
from local_stack.moto_dynamodb import stale_reads
from local_stack.segment_sink import SegmentSink
from local_stack.sqs_poller import failed_ids, lambda_record
from local_stack.template import Resource, Template
from tests.support.dynalite import DynaliteServer, wait_for_table
from tests.support.fakes import Crash
from tests.support.functions import load_app

ROOT = Path(__file__).resolve().parents[2]
moto_dynamodb.make_strict()  # conditional writes atomic and batch limits AWS's; stale reads and faults when asked
strict_sqs.make_strict()  # moto's SQS refuses what SQS refuses (sizes, attributes, batches, visibility)
STALE_LAG_MS = 1500  # how far back an eventually consistent read may look with ``stale_dynamodb``
FUNCTIONS = {"identify": "IdentifyFunction", "assignment": "AssignmentFunction", "conversion": "ConversionFunction"}
ROUTES = {"identify": "/v1/identify", "assignment": "/v1/assignments", "conversion": "/v1/conversions"}
QUEUES = {"identify": "Identify", "assignment": "Assignment", "conversion": "Conversion"}
ENGINES = ("moto", "dynalite")
__all__ = [
    "ENGINES",
    "FunctionTimedOut",
    "LambdaContext",
    "SqsBatch",
    "http_event",
    "load_app",
    "on_both_engines",
    "sqs_record",
]
on_both_engines = pytest.mark.parametrize("engine", ENGINES)
"""Run a test (or, as ``pytestmark``, a module) with the dedup table on each DynamoDB engine."""


def http_event(kind: str, body: Any, *, raw: bool = False, base64_body: bool = False) -> dict:
    """An API Gateway HTTP API (payload 2.0) event for an ingest route."""
    text = body if raw else json.dumps(body)
    if base64_body:
        text = base64.b64encode(text if isinstance(text, bytes) else text.encode()).decode()
    path = ROUTES[kind]
    return {
        "version": "2.0",
        "routeKey": f"POST {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.1"},
            "requestId": str(uuid.uuid4()),
            "routeKey": f"POST {path}",
            "stage": "$default",
        },
        "body": text,
        "isBase64Encoded": base64_body,
    }


def _check_batch_payload(records: list[dict]) -> None:
    """Lambda's event source never hands a function more than its 6 MB invocation payload: a test batch over it
    tests a world that does not exist."""
    size = payload_bytes({"Records": records})
    if size > MAX_INVOKE_REQUEST_BYTES:
        raise ValueError(
            f"an SQS batch of {size} bytes: Lambda's event source batches records up to its 6 MB invocation payload "
            f"({MAX_INVOKE_REQUEST_BYTES} bytes) and never invokes a function with more"
        )


@dataclass(frozen=True)
class BatchOutcome:
    """One SQS invocation as the event source mapping sees it: ``retried`` lists the messageIds that come back
    (every record of the batch when the function timed out or its answer is no valid report)."""

    retried: list[str]
    invocation: Invocation

    @property
    def timed_out(self) -> bool:
        """Whether Lambda stopped the function at its timeout."""
        return self.invocation.timed_out


@dataclass
class SqsBatch:
    """An SQS batch's outcome as Lambda reads it (``Stack.run_batch``)."""

    answer: Any
    failed: set[str] | None  # the records to come back; None: the whole batch failed
    ids: list[str]
    error: Exception | None = None

    @property
    def succeeded(self) -> list[str]:
        """The message ids Lambda counts as done (and deletes from the queue)."""
        return [] if self.failed is None else [i for i in self.ids if i not in self.failed]


@dataclass
class Stack:
    """moto resources from the template (the dedup table on ``engine``), the sink, and helpers to drive the
    functions."""

    resources: dict[str, Resource]
    sink: SegmentSink
    session: Any
    template: Template
    monkeypatch: pytest.MonkeyPatch
    engine: str = "moto"

    @property
    def prefix(self) -> str:
        """Where the functions look for workspace secrets: the template's effective prefix."""
        return self.template.secret_prefix

    def connect(self, workspace: str, write_key: str, region: str = "us", settings: Any = None) -> None:
        """Store the workspace's secret as the connection function does; ``settings`` (a JSON object) only when
        given, as for a connection made without any."""
        from tests.support.leak_check import register_write_key  # imported by pytest_plugins first (assert rewrite)

        register_write_key(write_key)
        value: dict[str, Any] = {"write_key": write_key, "region": region}
        if settings is not None:
            value["settings"] = settings
        self.put_secret(workspace, json.dumps(value))

    def put_secret(self, workspace: str, value: str) -> None:
        client = self.session.client("secretsmanager")
        name = f"{self.prefix}/{workspace}"
        try:
            client.create_secret(Name=name, SecretString=value)
        except client.exceptions.ResourceExistsException:
            client.put_secret_value(SecretId=name, SecretString=value)

    def timeout_s(self, kind: str) -> float:
        """The function's Timeout in the template."""
        return float(self.template.function_property(FUNCTIONS[kind], "Timeout"))

    def handler(self, kind: str, **env: str) -> Callable[[dict, Any], dict]:
        """A cold-started handler of an ingest function with its template environment and what Lambda sets from its
        LoggingConfig (plus ``env``), stopped at its context's deadline (``FunctionTimedOut``)."""
        environment = self.template.function_environment(FUNCTIONS[kind], self.resources)
        environment.update(self.template.logging_config(FUNCTIONS[kind]).environment())
        environment.update(
            SEGMENT_US_ENDPOINT=self.sink.region_url("us"), SEGMENT_EU_ENDPOINT=self.sink.region_url("eu")
        )
        environment.update(env)
        for name, value in environment.items():
            self.monkeypatch.setenv(name, value)
        return enforced(load_app(kind).handler)

    def post(
        self, kind: str, body: Any, handler: Callable | None = None, timeout_s: float | None = None, **event_kw: Any
    ) -> tuple[int, dict]:
        """Invoke the HTTP path with the function's Timeout (the template's, or ``timeout_s``); return (status,
        parsed JSON body). A function that timed out is answered as the HTTP API answers it: 500; and an
        invocation that outlasted the API's 30 s integration timeout gets 503, whatever the function did after.
        An exception the handler raised (a bug) is raised here. An event over Lambda's 6 MB request payload is
        refused before the function runs (413), and an answer over its 6 MB response payload is a failed
        integration (500), as on AWS."""
        event = http_event(kind, body, **event_kw)
        if payload_bytes(event) > MAX_INVOKE_REQUEST_BYTES:
            return 413, {"message": "Request Entity Too Large"}
        run = invoke(handler or self.handler(kind), event, timeout_s or self.timeout_s(kind))
        if run.duration_s > INTEGRATION_TIMEOUT_S:
            status, message = INTEGRATION_TIMED_OUT
            return status, {"message": message}
        if run.timed_out:
            status, message = FUNCTION_FAILED
            return status, {"message": message}
        if run.error is not None:
            raise run.error
        answer = run.result
        if payload_bytes(answer) > MAX_INVOKE_RESPONSE_BYTES:
            status, message = FUNCTION_FAILED
            return status, {"message": message}
        from tests.support.leak_check import scan  # here: imported by pytest_plugins first (assert rewrite)

        scan(answer["body"], where=f"the answer of POST {ROUTES[kind]}")
        return answer["statusCode"], json.loads(answer["body"]) if answer["body"] else {}

    def invoke_sqs(
        self, kind: str, records: list[dict], handler: Callable | None = None, timeout_s: float | None = None
    ) -> BatchOutcome:
        """Invoke the SQS path with one batch and the function's Timeout (the template's, or ``timeout_s``), and
        read its answer as the event source mapping does (ReportBatchItemFailures): a timeout or an invalid report
        fails the whole batch. An exception the handler raised (a bug) is raised here."""
        _check_batch_payload(records)
        run = invoke(handler or self.handler(kind), {"Records": records}, timeout_s or self.timeout_s(kind))
        if run.error is not None:
            raise run.error
        ids = [str(record["messageId"]) for record in records]
        failed = None if run.timed_out else failed_ids(run.result, set(ids))
        return BatchOutcome([i for i in ids if failed is None or i in failed], run)

    def queue_url(self, kind: str, dead: bool = False) -> str:
        return self.resources[f"{QUEUES[kind]}{'DeadLetter' if dead else ''}Queue"].ref

    def drain(self, kind: str, dead: bool = False) -> list[dict]:
        """Receive (and delete) every message of a queue, with attributes."""
        sqs = self.session.client("sqs")
        url = self.queue_url(kind, dead)
        messages: list[dict] = []
        while True:
            got = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], AttributeNames=["All"]
            ).get("Messages", [])
            if not got:
                return messages
            for message in got:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            messages.extend(got)

    def drain_keeping(self, kind: str) -> list[dict]:
        """Receive every visible message of a queue without deleting it (as the event source does: the records
        carry real receipt handles)."""
        sqs = self.session.client("sqs")
        got = sqs.receive_message(
            QueueUrl=self.queue_url(kind), MaxNumberOfMessages=10, MessageAttributeNames=["All"], AttributeNames=["All"]
        )
        return list(got.get("Messages", []))

    def queue_arn(self, kind: str, dead: bool = False) -> str:
        return self.resources[f"{QUEUES[kind]}{'DeadLetter' if dead else ''}Queue"].attributes["Arn"]

    def as_records(self, messages: list[dict], kind: str | None = None) -> list[dict]:
        """SQS messages (from receive_message) as the records Lambda's event source hands the function (the local
        stack's poller builds the same); from ``kind``'s queue when given (``run_batch`` then deletes the ones that
        succeed, as the event source does)."""
        arn = self.queue_arn(kind) if kind else sqs_record("")["eventSourceARN"]
        return [lambda_record(message, arn, "us-east-1") for message in messages]

    def received(self, kind: str) -> list[dict]:
        """The visible messages of ``kind``'s queue as an event source batch: received (in flight, as the event
        source leaves them while the function runs), in Lambda's record shape."""
        return self.as_records(self.drain_keeping(kind), kind)

    def run_batch(
        self,
        kind: str,
        records: list[dict],
        handler: Callable[[dict, Any], Any] | None = None,
        context: LambdaContext | None = None,
    ) -> SqsBatch:
        """Run an SQS batch through ``kind``'s handler (a fresh one unless given) and read the answer as Lambda
        does with ReportBatchItemFailures: a function error, or an answer that is not a valid report (not an
        object, an unknown, empty or malformed ``itemIdentifier``), fails the whole batch; otherwise the records
        not listed failed are done, and those that came from ``kind``'s queue are deleted from it::

            batch = stack.run_batch("assignment", stack.received("assignment"))
            assert batch.failed == set()          # None: the whole batch failed
        """
        _check_batch_payload(records)
        ids = [record["messageId"] for record in records]
        try:
            answer = (handler or self.handler(kind))({"Records": records}, context or LambdaContext())
        except Exception as exc:  # a function error: an answer to read as Lambda reads it
            return SqsBatch(answer=None, failed=None, ids=ids, error=exc)
        failed = failed_ids(answer, set(ids))
        done = [r for r in records if failed is not None and r["messageId"] not in failed]
        from_queue = [r for r in done if r.get("eventSourceARN") == self.queue_arn(kind)]
        sqs = self.session.client("sqs")
        for start in range(0, len(from_queue), 10):
            chunk = from_queue[start : start + 10]
            entries = [{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)]
            sqs.delete_message_batch(QueueUrl=self.queue_url(kind), Entries=entries)
        return SqsBatch(answer=answer, failed=failed, ids=ids)

    def item(self, pk: str, sk: str) -> dict | None:
        """The item as the table holds it now (a consistent read)."""
        client = self.session.client("dynamodb")
        table = self.resources["DedupTable"].ref
        key = {"pk": {"S": pk}, "sk": {"S": sk}}
        found = client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        return {k: next(iter(v.values())) for k, v in found.items()} if found else None

    def tracks(self, name: str | None = None) -> list[dict]:
        return [
            e["message"]
            for e in self.sink.events()
            if e["message"]["type"] == "track" and (name is None or e["message"]["event"] == name)
        ]

    def identifies(self) -> list[dict]:
        return [e["message"] for e in self.sink.events() if e["message"]["type"] == "identify"]


@pytest.fixture
def engine() -> str:
    """The DynamoDB engine of the dedup table: moto, unless the test is parametrized (``on_both_engines``)."""
    return "moto"


@pytest.fixture(scope="session")
def dynalite_server() -> Iterator[DynaliteServer]:
    """One dynalite process for the session, started when a test first needs it."""
    with DynaliteServer() as server:
        yield server


@pytest.fixture
def stack(
    sink: SegmentSink, monkeypatch: pytest.MonkeyPatch, engine: str, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    """A fresh AWS (moto; the dedup table on ``engine``) with the template's resources, a clean sink, and the
    workspaces ``ws-us``/``ws-eu``."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    sink.clear()
    sink.clear_faults()
    template = Template.load()
    with mock_aws():
        if engine == "dynalite":
            server: DynaliteServer = request.getfixturevalue("dynalite_server")
            monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", server.endpoint)
        session = boto3.session.Session()
        if engine == "dynalite":
            tables = create_tables(template, session.client("dynamodb"))
            resources = {**tables, **template.create_queues(session.client("sqs"), tables)}
        else:
            resources = template.create_resources(session)
        stack = Stack(resources, sink, session, template, monkeypatch, engine)
        stack.connect("ws-us", "key-us-0001")
        stack.connect("ws-eu", "key-eu-0002", region="eu")
        try:
            yield stack
        finally:
            if engine == "dynalite":
                delete_tables(session.client("dynamodb"), tables)
    sink.clear_faults()


@pytest.fixture
def stale_dynamodb() -> Iterator[None]:
    """Eventually consistent reads (the product's pre-read of the SQS path) answer, half of the time, an item as it
    was up to ``STALE_LAG_MS`` ago, absent if it did not exist then, as DynamoDB's may; consistent reads stay
    current. Off again after the test."""
    with stale_reads(lag_ms=STALE_LAG_MS, probability=0.5):
        yield


def create_tables(template: Template, client: Any) -> dict[str, Resource]:
    """The template's tables on dynalite (no UpdateTimeToLive there), once ACTIVE."""
    tables = template.create_tables(client, time_to_live=False)
    for table in tables.values():
        wait_for_table(client, table.ref, present=True)
    return tables


def delete_tables(client: Any, tables: dict[str, Resource]) -> None:
    """Drop the tables from the session's dynalite, so the next test creates them empty."""
    for table in tables.values():
        client.delete_table(TableName=table.ref)
        wait_for_table(client, table.ref, present=False)


CRASH_BEFORE, CRASH_AFTER = "crash before the call", "crash after the call"


@dataclass
class AwsFaults:
    """Faults at botocore's API-call boundary: the next calls of an operation fail as AWS would, or the process
    "dies" (``Crash``, a BaseException nothing handles) before or after AWS did the call.

    ``calls`` counts every call by ``service:Operation`` and ``params`` keeps their parameters. Nothing of the
    project is patched, only botocore.
    """

    failing: dict[str, list[str]]
    calls: Counter[str]
    params: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    raising: dict[str, tuple[Callable[[dict[str, Any]], bool], BaseException]] = field(default_factory=dict)

    def fail(self, operation: str, code: str = "ThrottlingException", count: int = 1) -> None:
        """Make the next ``count`` calls of ``operation`` (e.g. ``dynamodb:BatchWriteItem``) fail with ``code``."""
        self.failing.setdefault(operation, []).extend([code] * count)

    def crash(self, operation: str, *, after: bool = False) -> None:
        """Die at the next call of ``operation``: before it reaches AWS, or after AWS did it."""
        self.failing.setdefault(operation, []).append(CRASH_AFTER if after else CRASH_BEFORE)

    def raise_when(self, operation: str, when: Callable[[dict[str, Any]], bool], error: BaseException) -> None:
        """Raise ``error`` (any exception, as a broken library might) from every call of ``operation`` whose
        parameters satisfy ``when``."""
        self.raising[operation] = (when, error)

    def clear(self) -> None:
        """No more faults."""
        self.failing.clear()
        self.raising.clear()


@pytest.fixture
def aws_faults(monkeypatch: pytest.MonkeyPatch) -> AwsFaults:
    """Inject AWS errors (and count calls) at ``BaseClient._make_api_call``, below every boto3 client."""
    faults = AwsFaults({}, Counter())
    original = botocore.client.BaseClient._make_api_call

    def call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        name = f"{self.meta.service_model.service_name}:{operation_name}"
        faults.calls[name] += 1
        faults.params.setdefault(name, []).append(api_params)
        condition = faults.raising.get(name)
        if condition is not None and condition[0](api_params):
            raise condition[1]
        pending = faults.failing.get(name)
        code = pending.pop(0) if pending else None
        if code == CRASH_BEFORE:
            raise Crash(f"before {name}")
        if code is not None and code != CRASH_AFTER:
            raise botocore.exceptions.ClientError({"Error": {"Code": code, "Message": "injected"}}, operation_name)
        answer = original(self, operation_name, api_params)
        if code == CRASH_AFTER:
            raise Crash(f"after {name}")
        return answer

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", call)
    return faults


@pytest.fixture
def function_logs() -> Iterator[io.StringIO]:
    """The functions' Powertools log lines during the test (JSON, one per line), scanned for write keys after.

    Powertools binds its handler to the sys.stdout of the moment the logger was first created, so the stream is
    redirected here for the test and given back after.
    """
    from aws_lambda_powertools import Logger

    from tests.support.leak_check import scan  # here: imported by pytest_plugins first (assert rewrite)

    if not hasattr(logging.getLogger("segment-forwarder"), "powertools_handler"):
        Logger(service="segment-forwarder")  # no function imported yet: the logger their first import sets up
    handler = logging.getLogger("segment-forwarder").powertools_handler  # type: ignore[attr-defined]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(previous)
        scan(stream.getvalue(), where="the functions' log lines")


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    """Each test starts with no metrics buffered: Powertools keeps them per process, and with metrics disabled
    (the default here) an invocation does not flush them."""
    from aws_lambda_powertools import Metrics

    Metrics().clear_metrics()
    yield
