"""Lambda entry points of the ingest functions: one handler serves the HTTP route and the SQS queue.

::

    handler = make_handler("assignment")   # in functions/assignment/app.py

The HTTP route takes one body, or a batch of up to 100 (``{"batch": [...]}``), answered with one result per body in
order (``_handle_batch``): a body refused alone is answered by its own error, and never fails the others.

The first invocation builds the execution environment's runtime (configuration, boto3 clients, the Segment
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

from .answers import Answered, Handoff, http_answer
from .api_gateway import json_response, request_body, status_of
from .claims import Claim, DedupStore
from .config import AWS_CLIENT_CONFIG, INGEST_VARIABLES, FunctionConfig
from .connections import Connections
from .errors import PayloadTooLargeError, RequestError, error_body
from .events import SCHEMAS, Event, Kind, new_nonce
from .facts import REFUSED_ALL, Outcome, largest_message
from .forwarding import Forwarder
from .health import HealthRecorder, evidence
from .health_ledger import HealthLedger
from .messages import MAX_MESSAGE_BYTES
from .queues import Parked, Queued, Queues, QueueUnavailableError
from .records import SqsRecord, read_record
from .retries import Decision, Park, Retry, RetryPolicy, as_queued, decide_record, retry_soon
from .segment import SegmentClient
from .validation import MAX_BODY_BYTES, Batch, parse_body, parse_request, validate_item

logger = Logger()
metrics = Metrics()

SQS_SAFETY_S = 3.0  # time kept for marking sent, the DLQ and answering Lambda
HTTP_SAFETY_S = 1.5


@dataclass(slots=True)
class Runtime:
    """Everything an execution environment keeps warm between invocations."""

    config: FunctionConfig
    forwarder: Forwarder[Claim]
    queues: Queues
    health: HealthRecorder
    ledger: HealthLedger

    @classmethod
    def from_env(cls) -> Runtime:
        """Build clients once; boto3 reads the region and (locally) AWS_ENDPOINT_URL from the environment."""
        config = FunctionConfig.from_env(required=INGEST_VARIABLES)
        session = boto3.session.Session()
        dynamodb = session.client("dynamodb", config=AWS_CLIENT_CONFIG)
        store = DedupStore(
            dynamodb,
            config.table_name,
            lease_seconds=config.lease_seconds,
            visitor_ttl_seconds=config.dedup_ttl_seconds,
            event_ttl_seconds=config.event_id_ttl_seconds,
        )
        connections = Connections(
            session.client("secretsmanager", config=AWS_CLIENT_CONFIG),
            config.secret_prefix,
            config.connection_cache_seconds,
            miss_max_age=config.connection_miss_cache_seconds,
            max_entries=config.connection_cache_entries,
        )
        segment = SegmentClient(config.endpoints, breaker_threshold=config.segment_breaker_threshold)
        forwarder = Forwarder(store, connections, segment, _segment_latency)
        queues = Queues(session.client("sqs", config=AWS_CLIENT_CONFIG), config.queue_url, config.dlq_url)
        health = HealthRecorder(flush_after_ms=config.health_flush_seconds * 1000)
        return cls(config, forwarder, queues, health, HealthLedger(dynamodb, config.table_name))


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
        return json_response(status_of(exc), exc.as_body())
    try:
        outcome = runtime.forwarder.forward([event], deadline=time.monotonic() + _http_budget(runtime, remaining_s))[0]
    except Exception:  # a bug must not lose an accepted event: log it and let the queue retry
        logger.exception("forwarding failed")
        outcome = Outcome("retry", reason="internal_error")
    received_ms = int(received_at.timestamp() * 1000)
    answer = _answer(runtime, event, outcome)
    if isinstance(answer, Answered):
        if answer.copy:  # the copy comes back until every fact is recorded
            _enqueue(runtime, event, received_ms, "incomplete")
        return json_response(200, answer.body)
    # Not delivered now: the queue takes over (a permanent Segment refusal ends in the DLQ with its reason).
    if not _enqueue(runtime, event, received_ms, answer.reason):
        metrics.add_metric("Unavailable", MetricUnit.Count, 1)
        return json_response(503, _UNAVAILABLE)
    metrics.add_metric("Queued", MetricUnit.Count, 1)
    return json_response(202, {"status": "queued"})


_UNAVAILABLE = error_body("unavailable", "not delivered and not queued; retry the call")
_BATCH_UNAVAILABLE = error_body("unavailable", "not delivered and not queued; send this body again")


def _http_budget(runtime: Runtime, remaining_s: float) -> float:
    """Seconds the HTTP path may spend forwarding: the configured budget, within what Lambda leaves."""
    return min(runtime.config.http_delivery_budget_seconds, max(remaining_s - HTTP_SAFETY_S, 0.5))


def _accepted(kind: Kind, body: dict[str, Any], received_at: datetime) -> Event:
    """The event of a valid body, bound to a fresh nonce; PayloadTooLargeError when it cannot be queued or sent."""
    return _queueable(_checked(Event.from_body(kind, body, received_at).bound(new_nonce())))


def _rejected(exc: RequestError) -> None:
    metrics.add_metric("Rejected", MetricUnit.Count, 1)
    logger.info("rejected", extra={"code": exc.code, "field": exc.field, "status": status_of(exc)})


def _answer(runtime: Runtime, event: Event, outcome: Outcome) -> Answered | Handoff:
    """Record the outcome (metric, log line, health); its answer (``answers.http_answer``)."""
    _record(runtime, event, outcome, "http")
    _tally(runtime, event, outcome)
    return http_answer(outcome)


def _item_error(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """A batch result for a body that was not accepted: the error a single call would answer, with its status."""
    return {"error": {**body["error"], "status": status}}


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
            results[position] = _item_error(status_of(exc), exc.as_body())
        except Exception as exc:  # a bug in reading one body answers that body alone
            logger.exception("could not read the body", extra={"position": position})
            results[position] = _item_error(500, error_body("internal_error", type(exc).__name__))
    deadline = time.monotonic() + _http_budget(runtime, remaining_s)
    received_ms = int(received_at.timestamp() * 1000)
    to_queue: list[tuple[int | None, Event]] = []  # (position to answer, or None for a copy of a delivered event)
    for position, event, result in zip(positions, events, _forward_isolated(runtime, events, deadline), strict=True):
        outcome = result if isinstance(result, Outcome) else Outcome("retry", reason="internal_error")
        try:
            answer = _answer(runtime, event, outcome)
        except Exception:  # a bug in one body's bookkeeping: the queue retries it
            logger.exception("could not settle the body", extra={"position": position})
            answer = Handoff("internal_error")
        if isinstance(answer, Handoff):
            to_queue.append((position, event))
            continue
        results[position] = answer.body
        if answer.copy:  # the copy comes back until every fact is recorded
            to_queue.append((None, event))
    failed = set(_enqueue_many(runtime, [event for _, event in to_queue], received_ms))
    queued = unavailable = 0
    for index, (answer_at, _) in enumerate(to_queue):
        if answer_at is None:  # a copy: its body is answered already
            continue
        if index in failed:
            results[answer_at] = _item_error(503, _BATCH_UNAVAILABLE)
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


def _handle_sqs(
    runtime: Runtime, kind: Kind, raw_records: Sequence[Mapping[str, Any]], remaining_s: float
) -> dict[str, Any]:
    """Forward a batch; each record is read once (``records.read_record``), and what becomes of it is decided by
    ``retries.decide_record``: parked with its reason when it can never succeed, back after a backoff (its
    visibility pushed back) when it may succeed later, until its retry horizon has passed. Every log line of a
    record carries its SQS message id as ``correlation_id``."""
    now_ms = int(time.time() * 1000)
    records = [read_record(raw, now_ms=now_ms) for raw in raw_records]
    events: list[Event] = []
    accepted: list[SqsRecord] = []
    parked: list[Parked] = []
    for record in records:
        try:
            events.append(_event_of(kind, record, now_ms))
            accepted.append(record)
        except RequestError as exc:
            parked.append(Parked(record, exc.code, exc.message, exc.field, kind=kind))
        except Exception as exc:  # a bug in reading one record parks that record alone
            logger.exception("could not read the record", extra={"correlation_id": record.message_id})
            parked.append(Parked(record, "unexpected_error", type(exc).__name__, kind=kind))
    deadline = time.monotonic() + max(remaining_s - SQS_SAFETY_S, 1.0)
    config = runtime.config
    policy = RetryPolicy(
        config.retry_horizon_seconds, config.retry_backoff_cap_seconds, max_receives=config.max_receive_count
    )
    retries: dict[str, int] = {}  # message id -> seconds until its next receive
    outcomes = _forward_isolated(runtime, events, deadline, precheck=True)
    for record, event, result in zip(accepted, events, outcomes, strict=True):
        try:
            decision = _settle(runtime, policy, record, event, result, now_ms)
        except Exception:  # a bug in one record's bookkeeping never fails the batch: that record comes back
            logger.exception("could not settle the record", extra={"correlation_id": record.message_id})
            decision = retry_soon(policy)
        if isinstance(decision, Park):
            parked.append(Parked(record, decision.code, decision.reason, None, event.delivery_id, event.kind))
        elif isinstance(decision, Retry):
            retries[record.message_id] = decision.delay_s
    not_parked = _park(runtime, parked)
    handles = {record.message_id: record.receipt_handle for record in records}
    runtime.queues.delay([(handles[message_id], delay) for message_id, delay in retries.items()])
    failures = [*retries, *not_parked]
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failures]}


def _settle(
    runtime: Runtime, policy: RetryPolicy, record: SqsRecord, event: Event, result: Outcome | BaseException, now_ms: int
) -> Decision:
    """Record one forwarded record's outcome (metric, log line, health) and decide what becomes of it."""
    dice = random.random()  # noqa: S311 - jitter, not crypto
    decision = decide_record(result, record, now_ms=now_ms, policy=policy, dice=dice)
    if isinstance(result, BaseException):
        return decision
    outcome = as_queued(result)
    _record(runtime, event, outcome, "sqs", correlation_id=record.message_id)
    _tally(runtime, event, outcome, parked=isinstance(decision, Park))
    if isinstance(decision, Retry) and decision.age_s is not None:
        metrics.add_metric("RetryAge", MetricUnit.Seconds, decision.age_s)
    return decision


def _event_of(kind: Kind, record: SqsRecord, now_ms: int) -> Event:
    """The record's event. A body without a timestamp is dated by its first receipt (``SqsRecord.received_ms``);
    its delivery id is bound to its body (``SqsRecord.delivery_id``)."""
    body = parse_body(SCHEMAS[kind], record.body.encode("utf-8", "surrogatepass"))
    received_at = datetime.fromtimestamp(record.received_ms(now_ms=now_ms) / 1000, UTC)
    return _checked(Event.from_body(kind, body, received_at, record.delivery_id()))


def _queueable(event: Event) -> Event:
    """The event, if its queued form is within the body limit the SQS path applies (what the HTTP path accepts,
    the SQS path accepts after it); else PayloadTooLargeError."""
    if len(event.queue_text().encode("utf-8")) > MAX_BODY_BYTES:
        message = f"the body with its timestamp made explicit is over {MAX_BODY_BYTES} bytes"
        raise PayloadTooLargeError(message, "body")
    return event


def _checked(event: Event) -> Event:
    """The event, if every message it could send is within Segment's limit; else PayloadTooLargeError."""
    if largest_message(event) > MAX_MESSAGE_BYTES:
        message = f"the Segment message built from the body is over {MAX_MESSAGE_BYTES} bytes"
        raise PayloadTooLargeError(message, "body")
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
    """Count the event in its workspace's delivery health, as ``health.evidence`` classifies its outcome."""
    now_ms = int(time.time() * 1000)
    seen = evidence(outcome.status, messages=len(outcome.message_ids), reason=outcome.reason)
    if seen.messages:
        runtime.health.delivered(event.workspace_id, messages=seen.messages, now_ms=now_ms)
    if seen.failure is not None:
        runtime.health.failed(event.workspace_id, reason=seen.failure, now_ms=now_ms, parked=parked)


def _write_health(runtime: Runtime | None) -> None:
    """Write the tallies that are due into their workspaces' hourly buckets (best effort: health is evidence,
    not state; a lost tally is logged)."""
    if runtime is None:
        return
    for workspace, exc in runtime.ledger.write_due(runtime.health, now_ms=int(time.time() * 1000)).items():
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
    if routine and not _sampled(event.delivery_id, runtime.config.delivered_log_sample_rate):
        logger.debug(outcome.status, extra=extra)
    else:
        logger.info(outcome.status, extra=extra)


def _sampled(key: str, rate: float) -> bool:
    """Whether ``key`` falls in a ``rate`` share of all keys (the same answer every time)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) < rate * 0x1_0000_0000
