"""Lambda entry point of the connection function: connect, show, disconnect and test a workspace's Segment source.

HTTP API (payload format 2.0) routes, bound in ``functions/connection/app.py``::

    PUT    /v1/workspaces/{workspace_id}/segment        {"write_key": "...", "region": "us"|"eu", "settings": {...}}
                                                        -> 200
    GET    /v1/workspaces/{workspace_id}/segment        -> 200 {"connected": true|false, ...}
    DELETE /v1/workspaces/{workspace_id}/segment        -> 204
    POST   /v1/workspaces/{workspace_id}/segment/test   -> 200 {"message_id", "endpoint", "region", "note"}
    DELETE /v1/workspaces/{workspace_id}/visitors/{visitor_id}  -> 200 {"erased": n, "complete": true|false,
                                                                          "retry_after_s": 0}

    from segment_forwarder.connection_api import handler
    answer = handler(api_gateway_v2_event, lambda_context)   # {"statusCode", "headers", "body"}

The connection is the secret ``<SECRET_PREFIX>/<workspace_id>`` with SecretString ``{"write_key", "region"}``
and the workspace's ``settings`` when they are not the defaults (stored and read by
``connections.ConnectionStore``); this function is its only writer. A ``PUT`` replaces the whole connection:
a setting it leaves out takes its default (``workspace_settings``). A disconnect schedules
the secret for deletion with a recovery window, so reconnecting soon after restores it and stores the new key.
The ingest functions cache connections for ``CONNECTION_CACHE_SECONDS``, so a change reaches them within that
time.

The write key is never answered (only ``write_key_hint``, an ellipsis and its last 4 characters), never
logged, never put in a metric or an exception message.
"""

from __future__ import annotations

import re
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from .api_gateway import json_response, request_body
from .config import AWS_CLIENT_CONFIG, Settings
from .connections import Connection, ConnectionStore, ConnectionUnavailableError
from .errors import ConnectionConfigError, RequestError
from .health import WINDOW_MS, hour_of, summary
from .health_ledger import HealthLedger
from .messages import connection_test_content, iso_ms, usable_id, with_delivery
from .segment import SegmentClient
from .table import DedupUnavailableError
from .validation import is_valid, parse_body
from .visitor_facts import VisitorFacts
from .workspace_settings import SettingsError, WorkspaceSettings

logger = Logger()
metrics = Metrics()

CONNECTION_ROUTE = "/v1/workspaces/{workspace_id}/segment"
TEST_ROUTE = "/v1/workspaces/{workspace_id}/segment/test"
VISITOR_ROUTE = "/v1/workspaces/{workspace_id}/visitors/{visitor_id}"
TEST_NOTE = (
    "Segment accepted the request. That does not prove the write key or the region are right: Segment's tracking "
    "API answers 200 to any key and to the other region's data. Confirm the 'Segment Connection Test' event "
    "(this message_id) in the source's debugger in Segment."
)
TEST_SAFETY_S = 1.0  # time kept for answering after the test send's deadline
MIN_TEST_BUDGET_S = 0.5
_RAW_PATH = re.compile(
    r"^/v1/workspaces/(?P<workspace_id>[^/]*)/(?:segment(?P<test>/test)?|visitors/(?P<visitor_id>[^/]*))/?$"
)


@dataclass(slots=True)
class Runtime:
    """What an execution environment keeps warm: settings, the connection store, the Segment client, and the
    table's health buckets and visitor facts."""

    settings: Settings
    connections: ConnectionStore
    segment: SegmentClient
    ledger: HealthLedger
    facts: VisitorFacts

    @classmethod
    def from_env(cls) -> Runtime:
        """Build the clients once; boto3 reads the region and (locally) ``AWS_ENDPOINT_URL`` from the environment.

        Retries use botocore's standard mode (3 attempts unless ``AWS_MAX_ATTEMPTS`` says otherwise).
        """
        settings = Settings.from_env(required=("DEDUP_TABLE",))
        session = boto3.session.Session()
        secrets = session.client("secretsmanager", config=AWS_CLIENT_CONFIG)
        dynamodb = session.client("dynamodb", config=AWS_CLIENT_CONFIG)
        return cls(
            settings,
            ConnectionStore(secrets, settings.secret_prefix),
            SegmentClient(settings.endpoints),
            HealthLedger(dynamodb, settings.table_name),
            VisitorFacts(dynamodb, settings.table_name, tombstone_seconds=settings.erasure_tombstone_seconds),
        )


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer, the outcome word logged (and counted) for it, and more to log (never the key)."""

    status: int
    body: dict[str, Any] | None
    outcome: str
    log: dict[str, Any] = field(default_factory=dict)


_runtime: Runtime | None = None


def _get_runtime() -> Runtime:
    global _runtime  # one runtime per execution environment, built on first use
    if _runtime is None:
        _runtime = Runtime.from_env()
    return _runtime


@metrics.log_metrics
# log_event=False explicitly: the event carries the write key, even if POWERTOOLS_LOGGER_LOG_EVENT is set.
@logger.inject_lambda_context(clear_state=True, log_event=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Serve one connection route (API Gateway HTTP API v2 event) and log one structured line about it.

    Answers: PUT 200 ``{"connected": true, "region", "write_key_hint", "settings"}`` (the effective settings,
    defaults filled in); GET 200 ``{"connected": false, "health"}`` or the same as PUT with ``health``; DELETE
    204 (also when not connected); POST .../test 200 ``{"message_id", "endpoint", "region", "note"}``, 404
    ``not_connected``, 502 ``segment_unavailable`` / ``segment_rejected``; DELETE .../visitors/{visitor_id} 200
    ``{"erased": n, "complete": bool, "retry_after_s": 0}`` (not complete: call again), 409 ``in_flight`` (a
    delivery holds some facts: erase again after the seconds it names). Every route: 400 for a bad
    ``workspace_id`` (or ``visitor_id``) or body (413 over 32 KB), 503 ``unavailable`` when Secrets Manager or
    the table fails, 500 ``connection_malformed`` for a stored secret that cannot be read; an unknown route or
    method is 404.

    The test route proves only that Segment accepted the request: Segment answers 200 even to a wrong write key,
    so the user confirms the "Segment Connection Test" event in the Segment source's debugger.

    Usage (what API Gateway does)::

        event = {"routeKey": "GET /v1/workspaces/{workspace_id}/segment", "pathParameters": {"workspace_id": "demo"}}
        handler(event, context)["body"]   # '{"connected": false}'
    """
    method, route, workspace_id = _route_of(event)
    op = _OPERATIONS.get((method, route))
    valid_workspace: str | None = None
    try:
        if op is None:
            raise RequestError(404, "not_found", f"no route {method} {route or '(unknown path)'}", None)
        valid_workspace = _check_workspace_id(workspace_id)
        answer = op(_get_runtime(), valid_workspace, event, context)
    except RequestError as exc:
        answer = Answer(exc.status, exc.as_body(), exc.code, {"field": exc.field, "detail": exc.message})
    except ConnectionUnavailableError as exc:
        logger.error("Secrets Manager failed", extra={"error": str(exc)})
        failure = RequestError(503, "unavailable", "Secrets Manager could not be reached; retry the call", None)
        answer = Answer(503, failure.as_body(), "unavailable")
    except ConnectionConfigError as exc:
        failure = RequestError(
            500, "connection_malformed", f"{exc}; connect again (PUT) to replace the stored connection", None
        )
        answer = Answer(500, failure.as_body(), "connection_malformed")
    except Exception as exc:  # never let a message (which could quote a value) reach the runtime's log
        logger.error(
            "unexpected error",
            extra={"error": type(exc).__name__, "trace": "".join(traceback.format_tb(exc.__traceback__))},
        )
        failure = RequestError(500, "internal_error", "the connection could not be handled", None)
        answer = Answer(500, failure.as_body(), "internal_error")
    operation = op.__name__.lstrip("_") if op is not None else "unknown"
    metrics.add_dimension("route", operation)
    metrics.add_metric(_metric_name(answer.outcome), MetricUnit.Count, 1)
    logger.info(
        "connection",
        extra={
            "route": f"{method} {route}" if op is not None else "unknown",
            "workspace_id": valid_workspace,
            "outcome": answer.outcome,
            "status": answer.status,
            **answer.log,
        },
    )
    return json_response(answer.status, answer.body)


# -- operations ----------------------------------------------------------------------------------------------


def _connect(runtime: Runtime, workspace_id: str, event: dict[str, Any], context: Any) -> Answer:
    """PUT: store the write key, region and settings, creating, replacing or restoring the secret as needed."""
    body = parse_body("ConnectRequest", request_body(event))
    try:
        settings = WorkspaceSettings.from_dict(body.get("settings", {}))
    except SettingsError as exc:  # what the schema cannot state (a blank consent category)
        raise RequestError(400, "invalid_value", str(exc), exc.field) from None
    connection = Connection(body["write_key"], str(body.get("region") or "us").lower(), settings)
    outcome = runtime.connections.save(workspace_id, connection)
    return Answer(200, _connected(connection), outcome, {"region": connection.region})


def _status(runtime: Runtime, workspace_id: str, event: dict[str, Any], context: Any) -> Answer:
    """GET: whether the workspace is connected (region, key hint, settings), and its delivery health: the last
    delivery, the last failure and the counts of the last 24 hours (``null`` when the table cannot be read)."""
    connection = runtime.connections.read(workspace_id)
    health = _health(runtime, workspace_id)
    if connection is None:
        return Answer(200, {"connected": False, "health": health}, "not_connected")
    return Answer(200, {**_connected(connection), "health": health}, "connected", {"region": connection.region})


def _health(runtime: Runtime, workspace_id: str) -> dict[str, Any] | None:
    now_ms = int(time.time() * 1000)
    try:
        buckets = runtime.ledger.buckets(workspace_id, since_hour=hour_of(now_ms - WINDOW_MS))
    except DedupUnavailableError as exc:
        logger.warning("could not read delivery health", extra={"error": str(exc)})
        return None
    return summary(buckets, now_ms=now_ms)


def _erase(runtime: Runtime, workspace_id: str, event: dict[str, Any], context: Any) -> Answer:
    """DELETE .../visitors/{visitor_id}: erase the visitor. It takes effect at once in every function (events
    received before it are dropped, the next one is a first sighting under new messageIds); its facts (its user
    ids are in keys too) are deleted page by page within the invocation's remaining time.

    200 ``{"erased": n, "complete": true, "retry_after_s": 0}`` (n facts removed by this call; 0 for a visitor
    never seen); ``"complete": false`` when time ran out before every fact was deleted: call again (at once);
    409 ``in_flight`` when a delivery of the visitor holds some facts right now (erase again after the seconds
    it names)."""
    visitor_id = _check_visitor_id((event.get("pathParameters") or {}).get("visitor_id"))
    try:
        erasure = runtime.facts.erase(
            workspace_id, visitor_id, time_left_s=lambda: context.get_remaining_time_in_millis() / 1000
        )
    except DedupUnavailableError as exc:
        raise RequestError(503, "unavailable", f"the dedup table could not be reached ({exc}); retry", None) from None
    if erasure.in_flight:
        raise RequestError(
            409,
            "in_flight",
            f"{erasure.erased} fact(s) erased; {erasure.in_flight} held by a delivery in progress, which records "
            f"them again when it ends: erase again in {erasure.retry_after_s} s",
            None,
        )
    body = {"erased": erasure.erased, "complete": erasure.complete, "retry_after_s": 0}
    return Answer(200, body, "erased" if erasure.complete else "erased_partly", {"erased": erasure.erased})


def _disconnect(runtime: Runtime, workspace_id: str, event: dict[str, Any], context: Any) -> Answer:
    """DELETE: schedule the secret for deletion (recoverable for a while by reconnecting); 204 even if absent."""
    removed = runtime.connections.remove(workspace_id)
    return Answer(204, None, "disconnected" if removed else "not_connected")


def _test(runtime: Runtime, workspace_id: str, event: dict[str, Any], context: Any) -> Answer:
    """POST .../test: send one "Segment Connection Test" Track to the workspace's source, in its region only.

    Segment answers 200 even to a wrong write key, so the user checks Segment's debugger for the event.
    """
    connection = runtime.connections.read(workspace_id)
    if connection is None:
        raise RequestError(404, "not_connected", f"workspace {workspace_id} has no Segment connection", None)
    message_id = str(uuid.uuid4())
    content = connection_test_content(workspace_id, timestamp=iso_ms(datetime.now(UTC)))
    message = with_delivery(content, message_id, {})
    remaining_s = context.get_remaining_time_in_millis() / 1000
    budget = max(min(runtime.settings.http_delivery_budget_seconds, remaining_s - TEST_SAFETY_S), MIN_TEST_BUDGET_S)
    result = runtime.segment.send(
        connection.write_key, connection.region, [message], deadline=time.monotonic() + budget
    )
    if result.ok:
        endpoint = runtime.segment.endpoint(connection.region)
        answer = {"message_id": message_id, "endpoint": endpoint, "region": connection.region, "note": TEST_NOTE}
        return Answer(200, answer, "sent", {"region": connection.region, "message_id": message_id})
    if result.retryable:
        what = f"answered {result.status}" if result.status is not None else "could not be reached"
        raise RequestError(
            502, "segment_unavailable", f"Segment {what} until the deadline; the test event was not sent", None
        )
    raise RequestError(502, "segment_rejected", f"Segment refused the test event with status {result.status}", None)


_OPERATIONS: dict[tuple[str, str], Callable[[Runtime, str, dict[str, Any], Any], Answer]] = {
    ("PUT", CONNECTION_ROUTE): _connect,
    ("GET", CONNECTION_ROUTE): _status,
    ("DELETE", CONNECTION_ROUTE): _disconnect,
    ("POST", TEST_ROUTE): _test,
    ("DELETE", VISITOR_ROUTE): _erase,
}


# -- helpers -------------------------------------------------------------------------------------------------


def _connected(connection: Connection) -> dict[str, Any]:
    return {
        "connected": True,
        "region": connection.region,
        "write_key_hint": connection.hint,
        "settings": connection.settings.as_dict(),
    }


def _route_of(event: dict[str, Any]) -> tuple[str, str, str | None]:
    """(method, route template, workspace_id) of an HTTP API v2 event; the template is "" for an unknown path.

    The route comes from ``routeKey``; with a ``$default`` route the raw path is matched instead.
    """
    http = event.get("requestContext", {}).get("http", {})
    route_key = event.get("routeKey") or ""
    method, _, route = route_key.partition(" ")
    method = str(http.get("method") or method).upper()
    workspace_id = (event.get("pathParameters") or {}).get("workspace_id")
    if route not in (CONNECTION_ROUTE, TEST_ROUTE, VISITOR_ROUTE):
        match = _RAW_PATH.match(event.get("rawPath") or http.get("path") or "")
        if match is None:
            return method, "", None
        route = TEST_ROUTE if match["test"] else VISITOR_ROUTE if match["visitor_id"] is not None else CONNECTION_ROUTE
        workspace_id = workspace_id if workspace_id is not None else match["workspace_id"]
        if match["visitor_id"] is not None:
            event.setdefault("pathParameters", {}).setdefault("visitor_id", unquote(match["visitor_id"]))
    return method, route, workspace_id


def _check_workspace_id(workspace_id: str | None) -> str:
    """The path's workspace_id checked against the OpenAPI ``WorkspaceId`` schema, or RequestError 400."""
    if not is_valid("WorkspaceId", workspace_id):
        raise RequestError(
            400, "invalid_value", "workspace_id must be 1-64 characters of A-Za-z0-9_-", "workspace_id"
        ) from None
    return str(workspace_id)


def _check_visitor_id(visitor_id: str | None) -> str:
    """The path's visitor_id checked as the ingest bodies' ``visitor_id`` is, or RequestError 400."""
    if not isinstance(visitor_id, str) or not is_valid("VisitorId", visitor_id) or not usable_id(visitor_id):
        raise RequestError(400, "invalid_value", "visitor_id must be 1-128 printable characters", "visitor_id")
    return visitor_id


def _metric_name(outcome: str) -> str:
    """``not_connected`` -> ``NotConnected``: one count per call, named by its outcome."""
    return "".join(part.capitalize() for part in outcome.split("_"))
