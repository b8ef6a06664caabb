"""Running workloads through the stacks: SQS batches (both stacks) and HTTP requests (the forwarder's path).

::

    env = StackEnvironment.start()                    # moto child process (with its DynamoDB ledger), Segment sink
    ours = env.ours()                                 # a new execution environment per function
    run = env.run(ours, generate(tag="x"))            # Run: invocations (timed, AWS calls, output), units, Segment
    run = env.run_http(ours, generate(tag="y"))       # one API Gateway (payload 2.0) event per record
    env.set_latency(aws_s=0.005, segment_s=0.05)      # added per AWS HTTP attempt and per Segment request

Both stacks are invoked in this process with Lambda-like events and contexts, one invocation after another,
against the same moto endpoint and the same sink. What each run cost is measured at the boundaries only
(``bench.metering``: botocore calls, the process's output; the endpoint's DynamoDB ledger; the sink's requests).

Each ``ours()`` / ``typical()`` is a new execution environment per function: its module is imported anew (for the
forwarder, with its own copy of ``segment_forwarder``, so no state of another environment or function is shared,
as on Lambda). A typical stack's module is named per function like Lambda names ``app``: the Powertools
idempotency keys contain it, so another environment of the same function finds the same records.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from bench.aws_endpoint import AwsEndpoint
from bench.costs import LAMBDA_DEFAULTS
from bench.metering import AwsRecorder, Invocation, Meter
from bench.workload import KINDS, WORKSPACES, Workload
from local_stack.invoke import sqs_record
from local_stack.lambda_logging import LambdaLogging
from local_stack.segment_sink import SegmentSink
from local_stack.template import Resource, Template

ROOT = Path(__file__).resolve().parent.parent
TYPICAL_APP = Path(__file__).resolve().parent / "typical_app.py"
FUNCTIONS = {"identify": "IdentifyFunction", "assignment": "AssignmentFunction", "conversion": "ConversionFunction"}
IDEMPOTENCY_TABLE = "bench-typical-idempotency"
# As deployed: the template's LoggingConfig (JSON; the application log level, which the logger follows and Lambda
# filters by; the system log level, which decides Lambda's own lines) and metrics (EMF lines on stdout) for the
# forwarder; the typical stack runs with Powertools' and Lambda's defaults (text format, every line kept). Their
# output is captured per invocation, never printed.
BASE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "segment-forwarder",
    "AWS_LAMBDA_FUNCTION_NAME": "bench-function",
}
REDELIVERY_ROUNDS = 3
PACKAGE = "segment_forwarder"

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class FlushClock:
    """Wall time spent in ``segment.analytics`` ``Client.flush`` (the typical stack's end-of-invocation wait)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds = 0.0
        self._installed = False

    def install(self) -> None:
        """Wrap ``Client.flush`` (once)."""
        if self._installed:
            return
        from segment.analytics.client import Client

        original = Client.flush
        clock = self

        def timed_flush(client: Any) -> None:
            started = time.perf_counter()
            try:
                original(client)
            finally:
                with clock._lock:
                    clock.seconds += time.perf_counter() - started

        Client.flush = timed_flush
        self._installed = True

    def take(self) -> float:
        """Seconds since the last ``take``, and reset."""
        with self._lock:
            seconds, self.seconds = self.seconds, 0.0
            return seconds


# -- events -------------------------------------------------------------------------------------------------------


def sqs_event(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """An SQS event as Lambda's event source mapping delivers it."""
    return {"Records": [sqs_record(body) for body in bodies]}


def http_event(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event of an IAM-signed ``POST path`` with a JSON body."""
    text = json.dumps(body, separators=(",", ":"))
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": f"POST {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "content-length": str(len(text.encode())),
            "content-type": "application/json",
            "host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
            "user-agent": "segment-forwarder-client/1.0",
            "x-amz-date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "authorizer": {"iam": {"accountId": "123456789012", "userId": "AROAEXAMPLE:platform"}},
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "198.51.100.10"},
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": f"POST {path}",
            "stage": "$default",
            "timeEpoch": int(now * 1000),
        },
        "body": text,
        "isBase64Encoded": False,
    }


# -- stacks and runs ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stack:
    """A named set of handlers, one per ingest function (one execution environment each)."""

    key: str
    label: str
    handlers: dict[str, Handler]
    http: bool = False  # whether it has the HTTP path
    closers: tuple[Callable[[], None], ...] = ()
    logging: dict[str, LambdaLogging] = field(default_factory=dict)  # per kind; Lambda's defaults when absent

    def logging_of(self, kind: str) -> LambdaLogging:
        """The LoggingConfig a kind's function runs under."""
        return self.logging.get(kind, LAMBDA_DEFAULTS)

    def close(self) -> None:
        """End the environment's background threads (the typical stack's Segment consumers poll every
        ``upload_interval``: left running they would take the GIL from the runs measured after them)."""
        for closer in self.closers:
            closer()


@dataclass(slots=True)
class Run:
    """One pass of a workload through a stack, and everything measured on the way."""

    stack: str
    path: str  # "sqs" or "http"
    workload: Workload
    seconds: float
    invocations: list[Invocation]
    ledger: dict[str, dict[str, float]]  # DynamoDB units per operation (the endpoint's ledger)
    segment_requests: list[dict[str, Any]]
    segment_messages: int
    first_failures: int = 0  # records reported failed on their first delivery
    redelivered: int = 0  # deliveries of those records again (SQS redelivery, simulated)
    unfinished: int = 0  # records still failed after the last redelivery round
    flush_seconds: float = 0.0  # time spent in the Segment client's flush() (typical stack)
    answers: Counter[str] = field(default_factory=Counter)  # HTTP: status of each answer
    logging: dict[str, LambdaLogging] = field(default_factory=dict)  # the stack's, per kind

    def logging_of(self, kind: str) -> LambdaLogging:
        """The LoggingConfig a kind's function ran under (Lambda's own lines depend on it)."""
        return self.logging.get(kind, LAMBDA_DEFAULTS)

    @property
    def events(self) -> int:
        """Events of the workload."""
        return self.workload.events

    @property
    def batches(self) -> int:
        """SQS batches of the workload."""
        return len(self.workload.batches)

    @property
    def events_per_s(self) -> float:
        """Throughput of the run (one invocation at a time)."""
        return self.events / self.seconds

    @property
    def aws_calls(self) -> Counter[str]:
        """AWS requests by ``service:operation``."""
        return Counter(call.name for invocation in self.invocations for call in invocation.calls)

    def units(self, kind: str) -> float:
        """DynamoDB ``wru`` or ``rru`` of the run."""
        return sum(entry[kind] for entry in self.ledger.values())

    @property
    def segment_failed_requests(self) -> int:
        """Segment requests answered with anything but 200."""
        return sum(1 for r in self.segment_requests if r["status"] != 200)


class StackEnvironment:
    """The shared moto endpoint (template resources, connections) and Segment sink, plus the meters."""

    def __init__(self, endpoint: AwsEndpoint, sink: SegmentSink, template: Template) -> None:
        self.endpoint = endpoint
        self.sink = sink
        self.template = template
        self.session = boto3.session.Session()
        self.resources: dict[str, Resource] = template.create_resources(self.session)
        self.recorder = AwsRecorder()
        self.meter = Meter(self.recorder)
        self.flushes = FlushClock()
        self.flushes.install()
        self._create_idempotency_table()
        self._connect_workspaces()
        self.recorder.install()
        self.routes = {function: path for _, path, function in template.http_routes()}
        self.memory_mb = int(template.function_property(FUNCTIONS["assignment"], "MemorySize"))

    @classmethod
    def start(cls) -> StackEnvironment:
        """Start the moto child and the sink; point boto3 at the endpoint; create resources."""
        endpoint = AwsEndpoint().start()
        sink = SegmentSink().start()
        os.environ.update(BASE_ENV)
        os.environ["AWS_ENDPOINT_URL"] = endpoint.url
        warnings.filterwarnings("ignore", message="Dimension .kind. has already been added")
        return cls(endpoint, sink, Template.load())

    def stop(self) -> None:
        """Stop the sink and the moto child."""
        self.sink.stop()
        self.endpoint.stop()

    def set_latency(self, aws_s: float, segment_s: float) -> None:
        """Added latency: per AWS HTTP attempt (slept by the caller) and per Segment request (by the sink)."""
        self.recorder.latency_s = aws_s
        self.sink.set_latency(segment_s)

    @property
    def secret_prefix(self) -> str:
        """The template's effective secret prefix."""
        return self.template.secret_prefix

    def _create_idempotency_table(self) -> None:
        client = self.session.client("dynamodb")
        client.create_table(
            TableName=IDEMPOTENCY_TABLE,
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.update_time_to_live(
            TableName=IDEMPOTENCY_TABLE, TimeToLiveSpecification={"AttributeName": "expiration", "Enabled": True}
        )

    def _connect_workspaces(self) -> None:
        client = self.session.client("secretsmanager")
        for workspace, region in WORKSPACES.items():
            value = json.dumps({"write_key": f"wk-{workspace}-0001", "region": region})
            client.create_secret(Name=f"{self.secret_prefix}/{workspace}", SecretString=value)

    # -- the stacks ---------------------------------------------------------------------------------------------

    def ours(self, key: str = "ours", label: str = "segment-forwarder") -> Stack:
        """The forwarder's functions, each loaded from ``functions/<kind>/app.py`` with its template environment,
        each with its own copy of the ``segment_forwarder`` package (a new execution environment)."""
        handlers: dict[str, Handler] = {}
        logging: dict[str, LambdaLogging] = {}
        for kind in KINDS:
            logging[kind] = self.template.logging_config(FUNCTIONS[kind])
            env = self.template.function_environment(FUNCTIONS[kind], self.resources)
            env.update(SEGMENT_US_ENDPOINT=self.sink.region_url("us"), SEGMENT_EU_ENDPOINT=self.sink.region_url("eu"))
            env.update(logging[kind].environment())  # what Lambda sets from the LoggingConfig
            os.environ.update(env)
            for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
                del sys.modules[name]
            handler = _import(ROOT / "functions" / kind / "app.py", "app").handler
            self.meter.invoke(kind, handler, {"Records": []})  # builds the runtime from this environment; no AWS call
            handlers[kind] = handler
        return Stack(key, label, handlers, http=True, logging=logging)

    def typical(self, key: str, label: str, upload_interval_s: float | None = None) -> Stack:
        """The typical stack (``bench/typical_app.py``), one fresh module per kind."""
        handlers: dict[str, Handler] = {}
        closers = []
        for kind in KINDS:
            for name in LambdaLogging("JSON").environment():  # a first version keeps Lambda's defaults: text format
                os.environ.pop(name, None)
            os.environ.update(
                EVENT_KIND=kind,
                IDEMPOTENCY_TABLE=IDEMPOTENCY_TABLE,
                SECRET_PREFIX=self.secret_prefix,
                CONNECTION_CACHE_SECONDS=self.template.parameters["ConnectionCacheSeconds"],
                SEGMENT_US_HOST=self.sink.region_url("us"),
                SEGMENT_EU_HOST=self.sink.region_url("eu"),
            )
            if upload_interval_s is None:
                os.environ.pop("SEGMENT_UPLOAD_INTERVAL", None)
            else:
                os.environ["SEGMENT_UPLOAD_INTERVAL"] = str(upload_interval_s)
            module = _import(TYPICAL_APP, f"typical_{kind}")
            handlers[kind] = module.handler
            closers.append(module.shutdown)
        return Stack(key, label, handlers, closers=tuple(closers))

    # -- running ------------------------------------------------------------------------------------------------

    def _begin(self) -> None:
        self.sink.clear()
        self.endpoint.ledger()
        self.flushes.take()

    def run(self, stack: Stack, workload: Workload) -> Run:
        """Invoke the stack's handlers with every SQS batch of the workload, in order; measure what it cost.

        Records a handler reports failed come back like SQS redelivers them (without the visibility timeout's
        wait), up to ``REDELIVERY_ROUNDS`` times, after the stream: their cost is part of the run.
        """
        events = [(batch.kind, sqs_event(batch.bodies)) for batch in workload.batches]
        batch_size = max(len(batch.bodies) for batch in workload.batches)
        self._begin()
        invocations: list[Invocation] = []
        started = time.perf_counter()
        failed = self._invoke_all(stack, events, invocations)
        first_failures, redelivered = sum(len(records) for records in failed.values()), 0
        for _ in range(REDELIVERY_ROUNDS):
            if not failed:
                break
            again: list[tuple[str, dict[str, Any]]] = []
            for kind, records in failed.items():
                for record in records:
                    attributes = record["attributes"]
                    attributes["ApproximateReceiveCount"] = str(int(attributes["ApproximateReceiveCount"]) + 1)
                redelivered += len(records)
                again.extend(
                    (kind, {"Records": records[i : i + batch_size]}) for i in range(0, len(records), batch_size)
                )
            failed = self._invoke_all(stack, again, invocations)
        seconds = time.perf_counter() - started
        return self._finish(
            stack, "sqs", workload, seconds, invocations,
            first_failures=first_failures, redelivered=redelivered,
            unfinished=sum(len(records) for records in failed.values()),
        )  # fmt: skip

    def run_http(self, stack: Stack, workload: Workload) -> Run:
        """Send every record of the workload as one HTTP API request to its function, in order."""
        if not stack.http:
            raise ValueError(f"{stack.label} has no HTTP path")
        self._begin()
        invocations: list[Invocation] = []
        answers: Counter[str] = Counter()
        started = time.perf_counter()
        for batch in workload.batches:
            path = self.routes[FUNCTIONS[batch.kind]]
            for body in batch.bodies:
                invocation = self.meter.invoke(
                    batch.kind, stack.handlers[batch.kind], http_event(path, body), logging=stack.logging_of(batch.kind)
                )
                invocations.append(invocation)
                answer = invocation.answer
                status = json.loads(answer.get("body") or "{}").get("status") or str(answer.get("statusCode"))
                answers[status] += 1
        seconds = time.perf_counter() - started
        return self._finish(stack, "http", workload, seconds, invocations, answers=answers)

    def _finish(
        self, stack: Stack, path: str, workload: Workload, seconds: float, invocations: list[Invocation], **more: Any
    ) -> Run:
        return Run(
            stack=stack.key,
            path=path,
            workload=workload,
            seconds=seconds,
            invocations=invocations,
            ledger=self.endpoint.ledger(),
            segment_requests=self.sink.requests(),
            segment_messages=len(self.sink.events()),
            flush_seconds=self.flushes.take(),
            logging=stack.logging,
            **more,
        )

    def _invoke_all(
        self, stack: Stack, events: list[tuple[str, dict[str, Any]]], invocations: list[Invocation]
    ) -> dict[str, list[dict[str, Any]]]:
        """Invoke each (kind, SQS event) in order; return the records reported failed, by kind."""
        failed: dict[str, list[dict[str, Any]]] = {}
        for kind, event in events:
            invocation = self.meter.invoke(kind, stack.handlers[kind], event, logging=stack.logging_of(kind))
            invocations.append(invocation)
            ids = {item["itemIdentifier"] for item in invocation.answer.get("batchItemFailures", [])}
            if ids:
                failed.setdefault(kind, []).extend(r for r in event["Records"] if r["messageId"] in ids)
        return failed


def _import(path: Path, name: str) -> Any:
    """Import a file as a new module called ``name`` (not registered in ``sys.modules``), as Lambda's runtime
    imports a function's ``app.py`` in a new execution environment."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
