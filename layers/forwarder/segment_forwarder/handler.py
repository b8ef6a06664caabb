"""Lambda entry points of the ingest functions: one handler serves the HTTP route and the SQS queue.

::

    handler = make_handler("assignment")   # in functions/assignment/app.py

The first invocation builds the execution environment's runtime (settings, boto3 clients, the Segment
connection pool, the connection cache); later invocations reuse it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from .api_gateway import json_response, request_body
from .config import AWS_CLIENT_CONFIG, Settings
from .connections import Connections
from .dedup import DedupStore
from .errors import RequestError
from .events import SCHEMAS, Event, Kind
from .forwarding import Forwarder, Outcome
from .segment import SegmentClient
from .validation import parse_body

logger = Logger()
metrics = Metrics()

SQS_SAFETY_S = 3.0  # time kept for marking sent, the DLQ and answering Lambda
HTTP_SAFETY_S = 1.5
_SQS_MESSAGE_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "segment-forwarder:sqs-message-id")
DELIVERY_ID_ATTRIBUTE = "delivery_id"


@dataclass(slots=True)
class Runtime:
    """Everything an execution environment keeps warm between invocations."""

    settings: Settings
    forwarder: Forwarder
    sqs: Any

    @classmethod
    def from_env(cls) -> Runtime:
        """Build clients once; boto3 reads the region and (locally) AWS_ENDPOINT_URL from the environment."""
        settings = Settings.from_env()
        session = boto3.session.Session()
        store = DedupStore(
            session.client("dynamodb", config=AWS_CLIENT_CONFIG), settings.table_name, settings.lease_seconds
        )
        connections = Connections(
            session.client("secretsmanager", config=AWS_CLIENT_CONFIG),
            settings.secret_prefix,
            settings.connection_cache_seconds,
        )
        forwarder = Forwarder(store, connections, SegmentClient(settings.endpoints), settings)
        return cls(settings, forwarder, session.client("sqs", config=AWS_CLIENT_CONFIG))


def make_handler(kind: Kind) -> Callable[[dict, Any], dict]:
    """The Lambda handler of an ingest function (HTTP API v2 events and SQS batches)."""
    schema = SCHEMAS[kind]
    runtime: Runtime | None = None
    metrics.set_default_dimensions(kind=kind)

    @metrics.log_metrics
    @logger.inject_lambda_context(clear_state=True)
    def handler(event: dict, context: Any) -> dict:
        nonlocal runtime
        if runtime is None:
            runtime = Runtime.from_env()
        logger.append_keys(kind=kind)
        remaining_s = context.get_remaining_time_in_millis() / 1000
        if "Records" in event:
            return _handle_sqs(runtime, kind, schema, event["Records"], remaining_s)
        return _handle_http(runtime, kind, schema, event, remaining_s)

    return handler


# -- HTTP path -----------------------------------------------------------------------------------------------


def _handle_http(runtime: Runtime, kind: Kind, schema: str, event: dict, remaining_s: float) -> dict:
    received_at = datetime.now(UTC)
    try:
        body = parse_body(schema, request_body(event))
    except RequestError as exc:
        metrics.add_metric("Rejected", MetricUnit.Count, 1)
        logger.info("rejected", extra={"code": exc.code, "field": exc.field, "status": exc.status})
        return json_response(exc.status, exc.as_body())
    delivery_id = str(uuid.uuid4())
    forward_event = Event.from_body(kind, body, received_at, delivery_id)
    budget = min(runtime.settings.http_delivery_budget_seconds, max(remaining_s - HTTP_SAFETY_S, 0.5))
    try:
        outcome = runtime.forwarder.forward([forward_event], deadline=time.monotonic() + budget)[0]
    except Exception:  # a bug must not lose an accepted event: log it and let the queue retry
        logger.exception("forwarding failed")
        outcome = Outcome("retry", reason="internal_error")
    _record(forward_event, outcome, "http")
    if outcome.status == "delivered":
        return json_response(200, {"status": "delivered", "message_ids": list(outcome.message_ids)})
    if outcome.status == "duplicate":
        return json_response(200, {"status": "duplicate"})
    if outcome.status == "skipped":
        return json_response(200, {"status": "skipped", "reason": outcome.reason})
    if outcome.status == "rejected" and outcome.http_status is not None:
        return json_response(
            outcome.http_status,
            RequestError(outcome.http_status, "payload_too_large", outcome.reason, "body").as_body(),
        )
    # Not delivered now: the queue takes over (a permanent Segment refusal ends in the DLQ with its reason).
    queued = {**body, "timestamp": forward_event.timestamp}
    try:
        runtime.sqs.send_message(
            QueueUrl=runtime.settings.queue_url,
            MessageBody=json.dumps(queued),
            MessageAttributes={DELIVERY_ID_ATTRIBUTE: {"DataType": "String", "StringValue": delivery_id}},
        )
    except Exception as exc:
        logger.error("could not queue the event", extra={"error": type(exc).__name__, "reason": outcome.reason})
        metrics.add_metric("Unavailable", MetricUnit.Count, 1)
        return json_response(
            503,
            RequestError(503, "unavailable", "not delivered and not queued; retry the call", None).as_body(),
        )
    metrics.add_metric("Queued", MetricUnit.Count, 1)
    return json_response(202, {"status": "queued"})


# -- SQS path ------------------------------------------------------------------------------------------------


def _handle_sqs(runtime: Runtime, kind: Kind, schema: str, records: list[dict], remaining_s: float) -> dict:
    events: list[Event] = []
    forwarded: list[dict] = []
    dead: list[tuple[dict, str, str, str | None]] = []  # record, code, message, field
    for record in records:
        try:
            body = parse_body(schema, record.get("body", "").encode("utf-8", "surrogatepass"))
        except RequestError as exc:
            dead.append((record, exc.code, exc.message, exc.field))
            continue
        attributes = record.get("attributes", {})
        sent_ms = attributes.get("SentTimestamp")
        received_at = datetime.fromtimestamp(int(sent_ms) / 1000, UTC) if sent_ms else datetime.now(UTC)
        delivery_attr = record.get("messageAttributes", {}).get(DELIVERY_ID_ATTRIBUTE, {})
        delivery_id = delivery_attr.get("stringValue") or str(
            uuid.uuid5(_SQS_MESSAGE_ID_NAMESPACE, record["messageId"])
        )
        events.append(Event.from_body(kind, body, received_at, delivery_id))
        forwarded.append(record)

    deadline = time.monotonic() + max(remaining_s - SQS_SAFETY_S, 1.0)
    outcomes = runtime.forwarder.forward(events, deadline) if events else []
    failures: list[str] = []
    for record, event, outcome in zip(forwarded, events, outcomes, strict=True):
        _record(event, outcome, "sqs")
        if outcome.status == "rejected":
            dead.append((record, "rejected", outcome.reason, None))
        elif outcome.status == "retry":
            receives = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
            if receives >= runtime.settings.max_receive_count:
                dead.append((record, "retries_exhausted", outcome.reason, None))
            else:
                failures.append(record["messageId"])
    failures.extend(_dead_letter(runtime, dead))
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failures]}


def _dead_letter(runtime: Runtime, dead: list[tuple[dict, str, str, str | None]]) -> list[str]:
    """Move records to the DLQ with their reason (10 a request); return the ids that could not be moved."""
    failed: list[str] = []
    for start in range(0, len(dead), 10):
        chunk = dead[start : start + 10]
        entries = []
        for index, (record, code, message, field) in enumerate(chunk):
            attributes = {
                "error_code": code,
                "error_message": message[:1000] or code,
                "source_message_id": record["messageId"],
                "receive_count": record.get("attributes", {}).get("ApproximateReceiveCount", "1"),
            }
            if field:
                attributes["error_field"] = field
            entries.append(
                {
                    "Id": str(index),
                    "MessageBody": record.get("body") or "(empty body)",
                    "MessageAttributes": {
                        name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
                    },
                }
            )
            logger.warning(
                "dead-lettered",
                extra={"code": code, "reason": message, "field": field, "message_id": record["messageId"]},
            )
        try:
            answer = runtime.sqs.send_message_batch(QueueUrl=runtime.settings.dlq_url, Entries=entries)
            failed.extend(chunk[int(entry["Id"])][0]["messageId"] for entry in answer.get("Failed", []))
        except Exception as exc:
            logger.error("could not reach the dead-letter queue", extra={"error": type(exc).__name__})
            failed.extend(record["messageId"] for record, *_ in chunk)
    if len(dead) > len(failed):
        metrics.add_metric("DeadLettered", MetricUnit.Count, len(dead) - len(failed))
    return failed


def _record(event: Event, outcome: Outcome, path: str) -> None:
    """One log line and one metric per forwarded event (never the write key)."""
    metrics.add_metric(outcome.status.capitalize(), MetricUnit.Count, 1)
    logger.info(
        outcome.status,
        extra={
            "path": path,
            "workspace_id": event.workspace_id,
            "visitor_id": event.visitor_id,
            "fact": event.fact_key,
            "message_ids": list(outcome.message_ids),
            "reason": outcome.reason or None,
        },
    )
