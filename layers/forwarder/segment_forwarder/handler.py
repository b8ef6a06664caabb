"""Lambda entry points of the ingest functions: one handler serves the HTTP route and the SQS queue.

::

    handler = make_handler("assignment")   # in functions/assignment/app.py

The HTTP route takes one body, or a batch of up to 100 (``{"batch": [...]}``), answered with one result per body in
order (``_handle_batch``): a body refused alone is answered by its own error, and never fails the others.

The first invocation builds the execution environment's runtime (settings, boto3 clients, the Segment
connection pool, the connection cache); later invocations reuse it. The handler only parses, calls the
forwarder and shapes the answer; one record's failure never touches another record of the batch.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from .api_gateway import json_response, request_body
from .claims import Claim, DedupStore
from .config import AWS_CLIENT_CONFIG, INGEST_VARIABLES, Settings
from .connections import Connections
from .errors import RequestError
from .events import SCHEMAS, Event, Kind, new_nonce, record_delivery_id
from .facts import REFUSED_ALL, Outcome, largest_message
from .forwarding import Forwarder
from .health import HealthRecorder, hour_of
from .health_ledger import HealthLedger
from .messages import MAX_MESSAGE_BYTES
from .queues import (
    DELIVERY_ID_ATTRIBUTE,
    DELIVERY_NONCE_ATTRIBUTE,
    SOURCE_MESSAGE_ID_ATTRIBUTE,
    Parked,
    Queued,
    Queues,
    QueueUnavailableError,
    carried_attributes,
)
from .retries import FIRST_RECEIVED_AT, RetryPolicy, attribute_ms, horizon_start
from .segment import SegmentClient
from .table import DedupUnavailableError
from .validation import MAX_BODY_BYTES, Batch, parse_body, parse_request, validate_item

logger = Logger()
metrics = Metrics()

SQS_SAFETY_S = 3.0  # time kept for marking sent, the DLQ and answering Lambda
HTTP_SAFETY_S = 1.5

Record = Mapping[str, Any]


@dataclass(slots=True)
class Runtime:
    """Everything an execution environment keeps warm between invocations."""

    settings: Settings
    forwarder: Forwarder[Claim]
    queues: Queues
    health: HealthRecorder
    ledger: HealthLedger

    @classmethod
    def from_env(cls) -> Runtime:
        """Build clients once; boto3 reads the region and (locally) AWS_ENDPOINT_URL from the environment."""
        settings = Settings.from_env(required=INGEST_VARIABLES)
        session = boto3.session.Session()
        dynamodb = session.client("dynamodb", config=AWS_CLIENT_CONFIG)
        store = DedupStore(
            dynamodb,
            settings.table_name,
            lease_seconds=settings.lease_seconds,
            visitor_ttl_seconds=settings.dedup_ttl_seconds,
            event_ttl_seconds=settings.event_id_ttl_seconds,
        )
        connections = Connections(
            session.client("secretsmanager", config=AWS_CLIENT_CONFIG),
            settings.secret_prefix,
            settings.connection_cache_seconds,
            miss_max_age=settings.connection_miss_cache_seconds,
            max_entries=settings.connection_cache_entries,
        )
        segment = SegmentClient(settings.endpoints, breaker_threshold=settings.segment_breaker_threshold)
        forwarder = Forwarder(store, connections, segment, _segment_latency)
        queues = Queues(session.client("sqs", config=AWS_CLIENT_CONFIG), settings.queue_url, settings.dlq_url)
        health = HealthRecorder(flush_after_ms=settings.health_flush_seconds * 1000)
        return cls(settings, forwarder, queues, health, HealthLedger(dynamodb, settings.table_name))


def make_handler(kind: Kind) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda handler of an ingest function (HTTP API v2 events and SQS batches)."""
    runtime: Runtime | None = None
    metrics.set_default_dimensions(kind=kind)

    @metrics.log_metrics
    @logger.inject_lambda_context(clear_state=True)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        nonlocal runtime
        if runtime is None:
            runtime = Runtime.from_env()
        logger.append_keys(kind=kind)
        remaining_s = context.get_remaining_time_in_millis() / 1000
        try:
            if "Records" in event:
                return _handle_sqs(runtime, kind, event["Records"], remaining_s)
            logger.set_correlation_id(event.get("requestContext", {}).get("requestId"))
            return _handle_http(runtime, kind, event, remaining_s)
        finally:
            _write_health(runtime)

    return handler


# -- HTTP path -----------------------------------------------------------------------------------------------


def _handle_http(runtime: Runtime, kind: Kind, request: dict[str, Any], remaining_s: float) -> dict[str, Any]:
    """Validate, forward within the budget, answer; queue what could not be delivered now. Every log line of the
    call carries the API request id as its ``correlation_id``."""
    received_at = datetime.now(UTC)
    try:
        parsed = parse_request(SCHEMAS[kind], request_body(request))
        if isinstance(parsed, Batch):
            return _handle_batch(runtime, kind, parsed.bodies, received_at, remaining_s)
        event = _accepted(kind, parsed, received_at)
    except RequestError as exc:
        _rejected(exc)
        return json_response(exc.status, exc.as_body())
    try:
        outcome = runtime.forwarder.forward([event], deadline=time.monotonic() + _http_budget(runtime, remaining_s))[0]
    except Exception:  # a bug must not lose an accepted event: log it and let the queue retry
        logger.exception("forwarding failed")
        outcome = Outcome("retry", reason="internal_error")
    received_ms = int(received_at.timestamp() * 1000)
    answer = _answer(runtime, event, outcome)
    if answer is not None:
        if not outcome.complete:  # the copy comes back until every fact is recorded
            _enqueue(runtime, event, received_ms, "incomplete")
        return json_response(200, answer)
    # Not delivered now: the queue takes over (a permanent Segment refusal ends in the DLQ with its reason).
    if not _enqueue(runtime, event, received_ms, outcome.reason):
        metrics.add_metric("Unavailable", MetricUnit.Count, 1)
        return json_response(503, _UNAVAILABLE.as_body())
    metrics.add_metric("Queued", MetricUnit.Count, 1)
    return json_response(202, {"status": "queued"})


_UNAVAILABLE = RequestError(503, "unavailable", "not delivered and not queued; retry the call", None)
_BATCH_UNAVAILABLE = RequestError(503, "unavailable", "not delivered and not queued; send this body again", None)


def _http_budget(runtime: Runtime, remaining_s: float) -> float:
    """Seconds the HTTP path may spend forwarding: the configured budget, within what Lambda leaves."""
    return min(runtime.settings.http_delivery_budget_seconds, max(remaining_s - HTTP_SAFETY_S, 0.5))


def _accepted(kind: Kind, body: dict[str, Any], received_at: datetime) -> Event:
    """The event of a valid body, bound to a fresh nonce; RequestError 413 when it cannot be queued or sent."""
    return _queueable(_checked(Event.from_body(kind, body, received_at).bound(new_nonce())))


def _rejected(exc: RequestError) -> None:
    metrics.add_metric("Rejected", MetricUnit.Count, 1)
    logger.info("rejected", extra={"code": exc.code, "field": exc.field, "status": exc.status})


def _answer(runtime: Runtime, event: Event, outcome: Outcome) -> dict[str, Any] | None:
    """Record the outcome (metric, log line, health); the answer of an event that needs no queueing now
    (delivered, duplicate, skipped), None for one the queue takes over."""
    _record(runtime, event, outcome, "http")
    _tally(runtime, event, outcome)
    if outcome.status == "delivered":
        return {"status": "delivered", "message_ids": list(outcome.message_ids)}
    if outcome.status == "duplicate":
        return {"status": "duplicate"}
    if outcome.status == "skipped":
        return {"status": "skipped", "reason": outcome.reason}
    return None


def _item_error(exc: RequestError) -> dict[str, Any]:
    """A batch result for a body that was not accepted: the error a single call would answer, with its status."""
    body = exc.as_body()
    body["error"]["status"] = exc.status
    return body


def _handle_batch(
    runtime: Runtime, kind: Kind, bodies: list[Any], received_at: datetime, remaining_s: float
) -> dict[str, Any]:
    """A batch over HTTP: each body checked alone (a refused one gets its error as its result); the accepted ones
    forwarded together as an SQS batch is (facts claimed concurrently, one Segment request per workspace as
    Segment's limits allow, one mark round), without the SQS path's read first, so the call keeps to the single
    call's round trips; what is not delivered within the budget is queued with SendMessageBatch. Always 200 with
    one result per body, in order: a body neither delivered nor queued has a 503 error (send it again)."""
    results: list[dict[str, Any] | None] = [None] * len(bodies)
    events: list[Event] = []
    positions: list[int] = []
    for position, item in enumerate(bodies):
        try:
            events.append(_accepted(kind, validate_item(SCHEMAS[kind], item), received_at))
            positions.append(position)
        except RequestError as exc:
            _rejected(exc)
            results[position] = _item_error(exc)
        except Exception as exc:  # a bug in reading one body answers that body alone
            logger.exception("could not read the body", extra={"position": position})
            results[position] = _item_error(RequestError(500, "internal_error", type(exc).__name__, None))
    deadline = time.monotonic() + _http_budget(runtime, remaining_s)
    received_ms = int(received_at.timestamp() * 1000)
    to_queue: list[tuple[int | None, Event]] = []  # (position to answer, or None for a copy of a delivered event)
    for position, event, result in zip(positions, events, _forward_isolated(runtime, events, deadline), strict=True):
        outcome = result if isinstance(result, Outcome) else Outcome("retry", reason="internal_error")
        try:
            answer = _answer(runtime, event, outcome)
        except Exception:  # a bug in one body's bookkeeping: the queue retries it
            logger.exception("could not settle the body", extra={"position": position})
            answer = None
        results[position] = answer
        if answer is None:
            to_queue.append((position, event))
        elif not outcome.complete:  # the copy comes back until every fact is recorded
            to_queue.append((None, event))
    failed = set(_enqueue_many(runtime, [event for _, event in to_queue], received_ms))
    queued = unavailable = 0
    for index, (answer_at, _) in enumerate(to_queue):
        if answer_at is None:  # a copy: its body is answered already
            continue
        if index in failed:
            results[answer_at] = _item_error(_BATCH_UNAVAILABLE)
            unavailable += 1
        else:
            results[answer_at] = {"status": "queued"}
            queued += 1
    if queued:
        metrics.add_metric("Queued", MetricUnit.Count, queued)
    if unavailable:
        metrics.add_metric("Unavailable", MetricUnit.Count, unavailable)
    return json_response(200, {"results": results})


def _enqueue_many(runtime: Runtime, events: Sequence[Event], received_ms: int) -> list[int]:
    """Queue the events with SendMessageBatch (as ``_enqueue`` queues one); the indexes of those not queued."""
    if not events:
        return []
    queued = [Queued(e.queue_text(), e.delivery_id, e.delivery_nonce, received_ms) for e in events]
    failed = runtime.queues.enqueue_many(queued)
    if failed:
        logger.error("could not queue events", extra={"events": len(failed), "of": len(events)})
    return failed


def _enqueue(runtime: Runtime, event: Event, received_ms: int, reason: str) -> bool:
    """Put the event on the function's queue with the delivery id this attempt used and its receipt time (its
    retry horizon starts there); False if that failed."""
    try:
        runtime.queues.enqueue(
            event.queue_text(), delivery_id=event.delivery_id, nonce=event.delivery_nonce, received_ms=received_ms
        )
    except QueueUnavailableError as exc:
        logger.error("could not queue the event", extra={"error": str(exc), "reason": reason})
        return False
    return True


# -- SQS path ------------------------------------------------------------------------------------------------


def _handle_sqs(runtime: Runtime, kind: Kind, records: Sequence[Record], remaining_s: float) -> dict[str, Any]:
    """Forward a batch; a record that can never succeed is parked with its reason, one that may succeed later
    comes back after a backoff (its visibility pushed back), until its retry horizon has passed. Every log line
    of a record carries its SQS message id as ``correlation_id``."""
    events: list[Event] = []
    accepted: list[Record] = []
    parked: list[Parked] = []
    for record in records:
        try:
            events.append(_event_of(kind, record))
            accepted.append(record)
        except RequestError as exc:
            parked.append(Parked(record, exc.code, exc.message, exc.field, kind=kind))
        except Exception as exc:  # a bug in reading one record parks that record alone
            logger.exception("could not read the record", extra={"correlation_id": record.get("messageId")})
            parked.append(Parked(record, "unexpected_error", type(exc).__name__, kind=kind))
    deadline = time.monotonic() + max(remaining_s - SQS_SAFETY_S, 1.0)
    policy = RetryPolicy(runtime.settings.retry_horizon_seconds, runtime.settings.retry_backoff_cap_seconds)
    now_ms = int(time.time() * 1000)
    retries: dict[str, int] = {}  # message id -> seconds until its next receive
    outcomes = _forward_isolated(runtime, events, deadline, precheck=True)
    for record, event, result in zip(accepted, events, outcomes, strict=True):
        try:
            delay = _settle(runtime, policy, record, event, result, parked, now_ms)
        except Exception:  # a bug in one record's bookkeeping never fails the batch: that record comes back
            logger.exception("could not settle the record", extra={"correlation_id": record.get("messageId")})
            delay = policy.delay_s(receives=1, retry_after_s=None, dice=0.5)
        if delay is not None:
            retries[str(record["messageId"])] = delay
    not_parked = _park(runtime, parked)
    handles = {str(r["messageId"]): str(r.get("receiptHandle", "")) for r in records}
    runtime.queues.delay([(handles[message_id], delay) for message_id, delay in retries.items()])
    failures = [*retries, *not_parked]
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failures]}


def _settle(
    runtime: Runtime,
    policy: RetryPolicy,
    record: Record,
    event: Event,
    result: Outcome | BaseException,
    parked: list[Parked],
    now_ms: int,
) -> int | None:
    """Record one forwarded record's outcome; park it (appended to ``parked``) or return the seconds until its
    next receive (None: done)."""
    if isinstance(result, BaseException):
        parked.append(Parked(record, "unexpected_error", type(result).__name__, None, event.delivery_id, event.kind))
        return None
    outcome = result if result.complete else Outcome("retry", result.message_ids, "incomplete")
    _record(runtime, event, outcome, "sqs", correlation_id=str(record["messageId"]))
    if outcome.status != "retry":
        _tally(runtime, event, outcome, parked=outcome.status == "rejected")
        if outcome.status == "rejected":
            parked.append(Parked(record, "rejected", outcome.reason, None, event.delivery_id, event.kind))
        return None
    system = record.get("attributes", {})
    receives = _sqs_int(system.get("ApproximateReceiveCount")) or 1
    first_receive = _sqs_int(system.get("ApproximateFirstReceiveTimestamp")) or now_ms
    since = horizon_start(carried_attributes(record), first_receive, now_ms=now_ms)
    give_up = policy.exhausted(now_ms=now_ms, since_ms=since) or receives >= runtime.settings.max_receive_count
    _tally(runtime, event, outcome, parked=give_up)
    if give_up:
        parked.append(Parked(record, "retries_exhausted", outcome.reason, None, event.delivery_id, event.kind))
        return None
    metrics.add_metric("RetryAge", MetricUnit.Seconds, max(now_ms - since, 0) // 1000)
    dice = random.random()  # noqa: S311 - jitter, not crypto
    return policy.delay_s(receives=receives, retry_after_s=outcome.retry_after, dice=dice)


def _sqs_int(value: object) -> int | None:
    """An integer attribute SQS set (receive count, timestamps), or None when absent or not one."""
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16 else None


def _event_of(kind: Kind, record: Record) -> Event:
    """The record's event. A body without a timestamp is dated by its first receipt: ``first_received_at`` when it
    is plausible (the HTTP path, or a redrive, kept it), else when SQS took the message (``SentTimestamp``). Its
    delivery id is the one the HTTP attempt used when provably bound to this body, else derived from the SQS
    message id it first had (``events.record_delivery_id``)."""
    text = str(record.get("body", ""))
    body = parse_body(SCHEMAS[kind], text.encode("utf-8", "surrogatepass"))
    carried = carried_attributes(record)
    now_ms = int(time.time() * 1000)
    first_ms = attribute_ms(carried.get(FIRST_RECEIVED_AT), now_ms=now_ms)
    if first_ms is None:
        first_ms = _sqs_int(record.get("attributes", {}).get("SentTimestamp")) or now_ms
    delivery_id = record_delivery_id(
        text,
        str(record["messageId"]),
        carried_id=carried.get(DELIVERY_ID_ATTRIBUTE),
        nonce=carried.get(DELIVERY_NONCE_ATTRIBUTE),
        source_message_id=carried.get(SOURCE_MESSAGE_ID_ATTRIBUTE),
    )
    received_at = datetime.fromtimestamp(first_ms / 1000, UTC)
    return _checked(Event.from_body(kind, body, received_at, delivery_id))


def _queueable(event: Event) -> Event:
    """The event, if its queued form is within the body limit the SQS path applies (what the HTTP path accepts,
    the SQS path accepts after it); else RequestError 413."""
    if len(event.queue_text().encode("utf-8")) > MAX_BODY_BYTES:
        message = f"the body with its timestamp made explicit is over {MAX_BODY_BYTES} bytes"
        raise RequestError(413, "payload_too_large", message, "body")
    return event


def _checked(event: Event) -> Event:
    """The event, if every message it could send is within Segment's limit; else RequestError 413."""
    if largest_message(event) > MAX_MESSAGE_BYTES:
        message = f"the Segment message built from the body is over {MAX_MESSAGE_BYTES} bytes"
        raise RequestError(413, "payload_too_large", message, "body")
    return event


def _forward_isolated(
    runtime: Runtime, events: list[Event], deadline: float, *, precheck: bool = False
) -> list[Outcome | BaseException]:
    """Forward the batch (``precheck``: read the facts first, the SQS path); should that raise (a bug), forward
    its halves alone until the event that raises is found, so one event's failure never fails its neighbours."""
    if not events:
        return []
    try:
        return list(runtime.forwarder.forward(events, deadline, precheck=precheck))
    except Exception as exc:
        if len(events) == 1:
            logger.exception("forwarding failed", extra={"visitor_id": events[0].visitor_id})
            return [exc]
    middle = len(events) // 2
    first = _forward_isolated(runtime, events[:middle], deadline, precheck=precheck)
    return first + _forward_isolated(runtime, events[middle:], deadline, precheck=precheck)


def _park(runtime: Runtime, parked: Sequence[Parked]) -> list[str]:
    """Park records in the DLQ; return the ids that could not be parked (they stay failures and come back)."""
    if not parked:
        return []
    for item in parked:
        logger.warning(
            "dead-lettered",
            extra={"code": item.code, "reason": item.message, "field": item.field, "correlation_id": item.message_id},
        )
    failed = runtime.queues.park(parked)
    if failed:
        logger.error("could not reach the dead-letter queue", extra={"records": len(failed)})
    if len(parked) > len(failed):
        metrics.add_metric("DeadLettered", MetricUnit.Count, len(parked) - len(failed))
    return failed


def _tally(runtime: Runtime, event: Event, outcome: Outcome, *, parked: bool = False) -> None:
    """Count the event in its workspace's delivery health (a fact in flight elsewhere, or a complete event waiting
    for another attempt's fact, is no failure)."""
    now_ms = int(time.time() * 1000)
    if outcome.message_ids and outcome.status in ("delivered", "retry"):
        runtime.health.delivered(event.workspace_id, messages=len(outcome.message_ids), now_ms=now_ms)
    if outcome.status == "rejected" or (outcome.status == "retry" and outcome.reason not in _NOT_FAILURES):
        runtime.health.failed(event.workspace_id, reason=outcome.reason, now_ms=now_ms, parked=parked)


_NOT_FAILURES = frozenset({"in_flight", "incomplete"})


def _write_health(runtime: Runtime | None) -> None:
    """Write the tallies that are due into their workspaces' hourly buckets (best effort: health is evidence,
    not state; a lost tally is logged)."""
    if runtime is None:
        return
    now_ms = int(time.time() * 1000)
    for workspace, tally in runtime.health.due(now_ms=now_ms).items():
        try:
            runtime.ledger.add(workspace, tally, hour=hour_of(now_ms), now_s=now_ms // 1000)
        except DedupUnavailableError as exc:
            logger.warning("could not write delivery health", extra={"workspace_id": workspace, "error": str(exc)})


def _segment_latency(milliseconds: int) -> None:
    metrics.add_metric("SegmentLatency", MetricUnit.Milliseconds, milliseconds)


def _record(runtime: Runtime, event: Event, outcome: Outcome, path: str, correlation_id: str | None = None) -> None:
    """One metric and one log line per forwarded event (never the write key). Lines of events that went well
    (delivered, duplicate) are INFO for a sample of them only (``DELIVERED_LOG_SAMPLE_RATE``, decided by the
    event's delivery id, so every line of one event agrees) and DEBUG otherwise; every other outcome is INFO."""
    metrics.add_metric(outcome.status.capitalize(), MetricUnit.Count, 1)
    if outcome.reason.startswith(REFUSED_ALL):  # the workspace's source refuses everything: its configuration
        metrics.add_metric("SourceRefused", MetricUnit.Count, 1)
    extra: dict[str, Any] = {
        "path": path,
        "workspace_id": event.workspace_id,
        "visitor_id": event.visitor_id,
        "message_ids": list(outcome.message_ids),
        "reason": outcome.reason or None,
    }
    if correlation_id is not None:
        extra["correlation_id"] = correlation_id
    routine = outcome.status in ("delivered", "duplicate") and outcome.complete
    if routine and not _sampled(event.delivery_id, runtime.settings.delivered_log_sample_rate):
        logger.debug(outcome.status, extra=extra)
    else:
        logger.info(outcome.status, extra=extra)


def _sampled(key: str, rate: float) -> bool:
    """Whether ``key`` falls in a ``rate`` share of all keys (the same answer every time)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) < rate * 0x1_0000_0000
