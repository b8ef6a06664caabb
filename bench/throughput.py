"""Sections 1 and 2 of the benchmark: SQS-batch throughput and requests per event, both stacks side by side.

::

    env = StackEnvironment.start()                  # moto child process, Segment sink, template resources
    stacks = [env.ours(), env.typical("typical")]  # handlers loaded like Lambda loads them
    result = env.run(stacks[0], generate(tag="x"))  # RunResult: seconds, AWS calls, Segment requests

Both stacks are invoked in this process with SQS events and a Lambda-like context, one batch after another,
against the same moto endpoint and the same sink. AWS requests are counted at botocore's
``BaseClient._make_api_call`` (by ``service:operation``), Segment requests by the sink.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.client

from bench.aws_endpoint import AwsEndpoint
from bench.workload import KINDS, WORKSPACES, Workload
from local_stack.invoke import LambdaContext, load_module, sqs_record
from local_stack.segment_sink import SegmentSink
from local_stack.template import Resource, Template

ROOT = Path(__file__).resolve().parent.parent
TYPICAL_APP = Path(__file__).resolve().parent / "typical_app.py"
FUNCTIONS = {"identify": "IdentifyFunction", "assignment": "AssignmentFunction", "conversion": "ConversionFunction"}
IDEMPOTENCY_TABLE = "bench-typical-idempotency"
BASE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_SERVICE_NAME": "segment-forwarder",
    "AWS_LAMBDA_FUNCTION_NAME": "bench-function",
}
REDELIVERY_ROUNDS = 3

Handler = Callable[[dict, Any], dict]


# -- counting AWS requests ---------------------------------------------------------------------------------------


class AwsCalls:
    """Counts every botocore API call of this process by ``service:operation``, and DynamoDB items written."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.item_writes = 0
        self.added_latency_s = 0.0  # slept in the calling thread before each call (simulated network latency)
        self._installed = False

    def install(self) -> None:
        """Wrap ``BaseClient._make_api_call`` (once)."""
        if self._installed:
            return
        original = botocore.client.BaseClient._make_api_call
        counter = self

        def counting(client: Any, operation_name: str, api_params: dict) -> Any:
            counter.record(client.meta.service_model.service_name, operation_name, api_params)
            if counter.added_latency_s:
                time.sleep(counter.added_latency_s)
            return original(client, operation_name, api_params)

        botocore.client.BaseClient._make_api_call = counting
        self._installed = True

    def record(self, service: str, operation: str, params: dict) -> None:
        """Count one call; DynamoDB writes also count the items they write (conditional failures included)."""
        writes = 0
        if service == "dynamodb":
            if operation in ("PutItem", "UpdateItem", "DeleteItem"):
                writes = 1
            elif operation == "BatchWriteItem":
                writes = sum(len(items) for items in params.get("RequestItems", {}).values())
            elif operation == "TransactWriteItems":
                writes = len(params.get("TransactItems", []))
        with self._lock:
            self.calls[f"{service}:{operation}"] += 1
            self.item_writes += writes

    def take(self) -> tuple[Counter[str], int]:
        """The counts since the last ``take``, and reset."""
        with self._lock:
            calls, writes = self.calls, self.item_writes
            self.calls, self.item_writes = Counter(), 0
            return calls, writes


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


# -- Lambda-like invocation ----------------------------------------------------------------------------------------


def sqs_event(bodies: list[dict[str, Any]]) -> dict:
    """An SQS event as Lambda's event source mapping delivers it."""
    return {"Records": [sqs_record(body) for body in bodies]}


@dataclass(frozen=True, slots=True)
class Stack:
    """A named set of handlers, one per ingest function."""

    key: str
    label: str
    handlers: dict[str, Handler]


@dataclass(frozen=True, slots=True)
class RunResult:
    """One pass of a workload through a stack."""

    seconds: float
    events: int
    batches: int
    aws_calls: Counter[str]
    item_writes: int
    segment_requests: int
    segment_failed_requests: int
    segment_messages: int
    batch_item_failures: int  # records reported failed on their first delivery
    redelivered: int  # deliveries of those records again (SQS redelivery, simulated)
    unfinished: int  # records still failed after the last redelivery round
    flush_seconds: float  # time spent in the Segment client's flush() (typical stack)

    @property
    def events_per_s(self) -> float:
        """Throughput of the run."""
        return self.events / self.seconds


# -- the environment ----------------------------------------------------------------------------------------------


class StackEnvironment:
    """The shared moto endpoint (template resources, connections) and Segment sink, plus the AWS call counter."""

    def __init__(self, endpoint: AwsEndpoint, sink: SegmentSink, template: Template) -> None:
        self.endpoint = endpoint
        self.sink = sink
        self.template = template
        self.session = boto3.session.Session()
        self.resources: dict[str, Resource] = template.create_resources(self.session)
        self.calls = AwsCalls()
        self.flushes = FlushClock()
        self.flushes.install()
        self._create_idempotency_table()
        self._connect_workspaces()
        self.calls.install()

    @classmethod
    def start(cls) -> StackEnvironment:
        """Start the moto child and the sink; point boto3 at the endpoint; create resources."""
        endpoint = AwsEndpoint().start()
        sink = SegmentSink().start()
        os.environ.update(BASE_ENV)
        os.environ["AWS_ENDPOINT_URL"] = endpoint.url
        warnings.filterwarnings("ignore", message="Dimension .kind. has already been added")
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        return cls(endpoint, sink, Template.load())

    def stop(self) -> None:
        """Stop the sink and the moto child."""
        self.sink.stop()
        self.endpoint.stop()

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

    def ours(self) -> Stack:
        """The forwarder's functions, each loaded from ``functions/<kind>/app.py`` with its template environment."""
        handlers: dict[str, Handler] = {}
        for kind in KINDS:
            env = self.template.function_environment(FUNCTIONS[kind], self.resources)
            env.update(
                SEGMENT_US_ENDPOINT=self.sink.region_url("us"),
                SEGMENT_EU_ENDPOINT=self.sink.region_url("eu"),
                POWERTOOLS_LOG_LEVEL=BASE_ENV["POWERTOOLS_LOG_LEVEL"],
            )
            os.environ.update(env)
            handler = load_module(ROOT / "functions" / kind / "app.py", f"app_{kind}").handler
            handler({"Records": []}, LambdaContext())  # builds the runtime from this environment; no AWS call
            handlers[kind] = handler
        return Stack("ours", "segment-forwarder", handlers)

    def typical(self, key: str, label: str, upload_interval_s: float | None = None) -> Stack:
        """The typical stack (``bench/typical_app.py``), one fresh module per kind."""
        handlers: dict[str, Handler] = {}
        for kind in KINDS:
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
            handlers[kind] = load_module(TYPICAL_APP, f"typical_{key}_{kind}").handler
        return Stack(key, label, handlers)

    # -- running ------------------------------------------------------------------------------------------------

    def run(self, stack: Stack, workload: Workload) -> RunResult:
        """Invoke the stack's handlers with every batch of the workload, in order; count what it cost.

        Records a handler reports failed come back like SQS redelivers them (without the visibility timeout's
        wait), up to ``REDELIVERY_ROUNDS`` times, after the stream: their cost is part of the run.
        """
        events = [(batch.kind, sqs_event(batch.bodies)) for batch in workload.batches]
        batch_size = max(len(batch.bodies) for batch in workload.batches)
        self.sink.clear()
        self.calls.take()
        self.flushes.take()
        first_failures = redelivered = 0
        # Powertools 3.37 still prints EMF lines with POWERTOOLS_METRICS_DISABLED once a metric holds 100 values.
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            started = time.perf_counter()
            failed = _invoke_all(stack, events)
            first_failures = sum(len(records) for records in failed.values())
            for _ in range(REDELIVERY_ROUNDS):
                if not failed:
                    break
                again = []
                for kind, records in failed.items():
                    for record in records:
                        attributes = record["attributes"]
                        attributes["ApproximateReceiveCount"] = str(int(attributes["ApproximateReceiveCount"]) + 1)
                    redelivered += len(records)
                    again.extend(
                        (kind, {"Records": records[i : i + batch_size]}) for i in range(0, len(records), batch_size)
                    )
                failed = _invoke_all(stack, again)
            seconds = time.perf_counter() - started
        calls, writes = self.calls.take()
        requests = self.sink.requests()
        return RunResult(
            seconds=seconds,
            events=workload.events,
            batches=len(workload.batches),
            aws_calls=calls,
            item_writes=writes,
            segment_requests=len(requests),
            segment_failed_requests=sum(1 for r in requests if r["status"] != 200),
            segment_messages=len(self.sink.events()),
            batch_item_failures=first_failures,
            redelivered=redelivered,
            flush_seconds=self.flushes.take(),
            unfinished=sum(len(records) for records in failed.values()),
        )


def _invoke_all(stack: Stack, events: list[tuple[str, dict]]) -> dict[str, list[dict]]:
    """Invoke each (kind, SQS event) in order; return the records reported failed, by kind."""
    failed: dict[str, list[dict]] = {}
    for kind, event in events:
        answer = stack.handlers[kind](event, LambdaContext())
        ids = {item["itemIdentifier"] for item in answer.get("batchItemFailures", [])}
        if ids:
            failed.setdefault(kind, []).extend(r for r in event["Records"] if r["messageId"] in ids)
    return failed
