"""Lambda entry point of the connection function: connect, show, disconnect and test a workspace's Segment source;
erase a visitor.

HTTP API (payload format 2.0) routes, served by Powertools' ``APIGatewayHttpResolver`` (``app``) and bound in
``functions/connection/app.py``::

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

import json
import re
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import quote, unquote

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.metrics import MetricUnit

from .api_gateway import request_body, status_of
from .config import AWS_CLIENT_CONFIG, FunctionConfig
from .connections import ConnectionStore, ConnectionUnavailableError
from .errors import ConnectionConfigError, RequestError, error_body, printable
from .health_ledger import HealthLedger
from .messages import connection_test_content, iso_ms, usable_id, with_delivery
from .ports import Connection
from .segment import SegmentClient
from .table import DedupUnavailableError
from .validation import is_valid, parse_body
from .visitor_facts import VisitorFacts
from .workspace_settings import WorkspaceSettings

logger = Logger()
metrics = Metrics()
app = APIGatewayHttpResolver()

CONNECTION_ROUTE = "/v1/workspaces/{workspace_id}/segment"
TEST_ROUTE = "/v1/workspaces/{workspace_id}/segment/test"
VISITOR_ROUTE = "/v1/workspaces/{workspace_id}/visitors/{visitor_id}"
# The resolver's rules for those routes, matched against the raw path. The workspace segment may be empty, so that
# an empty workspace_id is answered as a bad one (400), like any other, rather than as an unknown route.
_WORKSPACE = "/v1/workspaces/(?:<workspace_id>)?"
_PARAMETER = re.compile(r"\{(\w+)\}")  # a path parameter in a route template
TEST_NOTE = (
    "Segment accepted the request. That does not prove the write key or the region are right: Segment's tracking "
    "API answers 200 to any key and to the other region's data. Confirm the 'Segment Connection Test' event "
    "(this message_id) in the source's debugger in Segment."
)
TEST_SAFETY_S = 1.0  # time kept for answering after the test send's deadline
MIN_TEST_BUDGET_S = 0.5


@dataclass(frozen=True, slots=True)
class Dependencies:
    """What the routes use: the configuration, the connection store, the Segment client, and the table's health
    buckets and visitor facts."""

    config: FunctionConfig
    connections: ConnectionStore
    segment: SegmentClient
    ledger: HealthLedger
    facts: VisitorFacts

    @classmethod
    def from_env(cls) -> Dependencies:
        """Build the clients; boto3 reads the region and (locally) ``AWS_ENDPOINT_URL`` from the environment.

        Retries use botocore's standard mode (3 attempts unless ``AWS_MAX_ATTEMPTS`` says otherwise).
        """
        config = FunctionConfig.from_env(required=("DEDUP_TABLE",))
        session = boto3.session.Session()
        secrets = session.client("secretsmanager", config=AWS_CLIENT_CONFIG)
        dynamodb = session.client("dynamodb", config=AWS_CLIENT_CONFIG)
        return cls(
            config,
            ConnectionStore(secrets, config.secret_prefix),
            SegmentClient(config.endpoints),
            HealthLedger(dynamodb, config.table_name),
            VisitorFacts(dynamodb, config.table_name, tombstone_seconds=config.erasure_tombstone_seconds),
        )


@cache
def dependencies() -> Dependencies:
    """The execution environment's dependencies: built by its first call, reused by every later one."""
    return Dependencies.from_env()


@metrics.log_metrics
# log_event=False explicitly: the event carries the write key, even if POWERTOOLS_LOGGER_LOG_EVENT is set.
@logger.inject_lambda_context(clear_state=True, log_event=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Serve one connection route (API Gateway HTTP API v2 event) and log one structured line about it
    (``connection``: route, workspace_id, outcome, status; never the key) and count it by its outcome.

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

        event = {"rawPath": "/v1/workspaces/demo/segment", "requestContext": {"http": {"method": "GET"}}, ...}
        handler(event, context)["body"]   # '{"connected": false, "health": {...}}'
    """
    return app.resolve(routed(event), context)


def routed(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its path rebuilt from the route API Gateway matched and the path parameters it decoded.

    An HTTP API gives Lambda the path already decoded: a visitor id holding ``/``, ``?`` or ``%41`` cannot be told
    apart in ``rawPath`` (and would be decoded twice), while ``pathParameters`` holds each id decoded once. So the
    path the resolver matches is the route's template with each parameter percent-encoded, and the routes decode
    each segment once::

        routed({"routeKey": "DELETE /v1/workspaces/{workspace_id}/visitors/{visitor_id}",
                "pathParameters": {"workspace_id": "acme", "visitor_id": "a/b"}, "rawPath": "/v1/.../a/b", ...})
        # rawPath "/v1/workspaces/acme/visitors/a%2Fb"

    A ``$default`` route (no template, no parameters) is resolved on the path as given.
    """
    method, _, template = str(event.get("routeKey") or "").partition(" ")
    parameters = event.get("pathParameters") or {}
    if not method or not template.startswith("/"):
        return event
    path = _PARAMETER.sub(lambda match: quote(str(parameters.get(match.group(1), "")), safe=""), template)
    stage = (event.get("requestContext") or {}).get("stage")
    prefix = f"/{stage}" if stage and stage != "$default" else ""  # the resolver strips a named stage's prefix
    return {**event, "rawPath": prefix + path}


# -- routes --------------------------------------------------------------------------------------------------


@app.put(f"{_WORKSPACE}/segment")
def connect(workspace_id: str | None = None) -> Response[str]:
    """PUT: store the write key, region and settings, creating, replacing or restoring the secret as needed."""
    workspace = _begin("connect", f"PUT {CONNECTION_ROUTE}", workspace_id)
    body = parse_body("ConnectRequest", request_body(app.current_event.raw_event))
    settings = WorkspaceSettings.from_dict(body.get("settings", {}))  # SettingsError: what the schema cannot state
    connection = Connection(body["write_key"], str(body.get("region") or "us").lower(), settings)
    outcome = dependencies().connections.save(workspace, connection)
    return _answer(200, _connected(connection), outcome, region=connection.region)


@app.get(f"{_WORKSPACE}/segment")
def status(workspace_id: str | None = None) -> Response[str]:
    """GET: whether the workspace is connected (region, key hint, settings), and its delivery health: the last
    delivery, the last failure and the counts of the last 24 hours (``null`` when the table cannot be read)."""
    workspace = _begin("status", f"GET {CONNECTION_ROUTE}", workspace_id)
    connection = dependencies().connections.read(workspace)
    health = _health(dependencies().ledger, workspace)
    if connection is None:
        return _answer(200, {"connected": False, "health": health}, "not_connected")
    return _answer(200, {**_connected(connection), "health": health}, "connected", region=connection.region)


@app.delete(f"{_WORKSPACE}/segment")
def disconnect(workspace_id: str | None = None) -> Response[str]:
    """DELETE: schedule the secret for deletion (recoverable for a while by reconnecting); 204 even if absent."""
    workspace = _begin("disconnect", f"DELETE {CONNECTION_ROUTE}", workspace_id)
    removed = dependencies().connections.remove(workspace)
    return _answer(204, None, "disconnected" if removed else "not_connected")


@app.post(f"{_WORKSPACE}/segment/test")
def test(workspace_id: str | None = None) -> Response[str]:
    """POST .../test: send one "Segment Connection Test" Track to the workspace's source, in its region only.

    Segment answers 200 even to a wrong write key, so the user checks Segment's debugger for the event.
    """
    workspace = _begin("test", f"POST {TEST_ROUTE}", workspace_id)
    deps = dependencies()
    connection = deps.connections.read(workspace)
    if connection is None:
        return _refusal(404, "not_connected", f"workspace {workspace} has no Segment connection")
    message_id = str(uuid.uuid4())
    content = connection_test_content(workspace, timestamp=iso_ms(datetime.now(UTC)))
    message = with_delivery(content, message_id, {})
    remaining_s = app.lambda_context.get_remaining_time_in_millis() / 1000
    budget = max(min(deps.config.http_delivery_budget_seconds, remaining_s - TEST_SAFETY_S), MIN_TEST_BUDGET_S)
    result = deps.segment.send(connection.write_key, connection.region, [message], deadline=time.monotonic() + budget)
    if result.ok:
        endpoint = deps.segment.endpoint(connection.region)
        answer = {"message_id": message_id, "endpoint": endpoint, "region": connection.region, "note": TEST_NOTE}
        return _answer(200, answer, "sent", region=connection.region, message_id=message_id)
    if result.retryable:
        what = f"answered {result.status}" if result.status is not None else "could not be reached"
        return _refusal(502, "segment_unavailable", f"Segment {what} until the deadline; the test event was not sent")
    return _refusal(502, "segment_rejected", f"Segment refused the test event with status {result.status}")


@app.delete(f"{_WORKSPACE}/visitors/<visitor_id>")
def erase(visitor_id: str, workspace_id: str | None = None) -> Response[str]:
    """DELETE .../visitors/{visitor_id}: erase the visitor. It takes effect at once in every function (events
    received before it are dropped, the next one is a first sighting under new messageIds); its facts (its user
    ids are in keys too) are deleted page by page within the invocation's remaining time.

    200 ``{"erased": n, "complete": true, "retry_after_s": 0}`` (n facts removed by this call; 0 for a visitor
    never seen); ``"complete": false`` when time ran out before every fact was deleted: call again (at once);
    409 ``in_flight`` when a delivery of the visitor holds some facts right now (erase again after the seconds
    it names)."""
    workspace = _begin("erase", f"DELETE {VISITOR_ROUTE}", workspace_id)
    visitor = _check_visitor_id(unquote(visitor_id))
    context = app.lambda_context
    erasure = dependencies().facts.erase(
        workspace, visitor, time_left_s=lambda: context.get_remaining_time_in_millis() / 1000
    )
    if erasure.in_flight:
        return _refusal(
            409,
            "in_flight",
            f"{erasure.erased} fact(s) erased; {erasure.in_flight} held by a delivery in progress, which records "
            f"them again when it ends: erase again in {erasure.retry_after_s} s",
        )
    body = {"erased": erasure.erased, "complete": erasure.complete, "retry_after_s": 0}
    return _answer(200, body, "erased" if erasure.complete else "erased_partly", erased=erasure.erased)


# -- errors: each class answered here, once --------------------------------------------------------------------


@app.exception_handler(RequestError)  # type: ignore[untyped-decorator]  # Powertools leaves it untyped
def _refused(error: RequestError) -> Response[str]:
    """A bad id or body (400; 413 over 32 KB), settings included (``SettingsError``)."""
    return _answer(status_of(error), error.as_body(), error.code, field=error.field, detail=error.message)


@app.exception_handler(ConnectionUnavailableError)  # type: ignore[untyped-decorator]  # Powertools leaves it untyped
def _secrets_unavailable(error: ConnectionUnavailableError) -> Response[str]:
    logger.error("Secrets Manager failed", extra={"error": str(error)})
    return _answer(
        503, error_body("unavailable", "Secrets Manager could not be reached; retry the call"), "unavailable"
    )


@app.exception_handler(DedupUnavailableError)  # type: ignore[untyped-decorator]  # Powertools leaves it untyped
def _table_unavailable(error: DedupUnavailableError) -> Response[str]:
    message = printable(f"the dedup table could not be reached ({error}); retry")
    return _answer(503, error_body("unavailable", message), "unavailable", detail=message)


@app.exception_handler(ConnectionConfigError)  # type: ignore[untyped-decorator]  # Powertools leaves it untyped
def _malformed(error: ConnectionConfigError) -> Response[str]:
    message = printable(f"{error}; connect again (PUT) to replace the stored connection")
    return _answer(500, error_body("connection_malformed", message), "connection_malformed")


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]  # Powertools leaves it untyped
def _unexpected(error: Exception) -> Response[str]:
    """A bug: its type and traceback are logged, never its message (which could quote a value)."""
    logger.error(
        "unexpected error",
        extra={"error": type(error).__name__, "trace": "".join(traceback.format_tb(error.__traceback__))},
    )
    return _answer(500, error_body("internal_error", "the connection could not be handled"), "internal_error")


@app.not_found
def _no_route(error: NotFoundError) -> Response[str]:
    metrics.add_dimension("route", "unknown")
    logger.append_keys(route="unknown", workspace_id=None)
    event = app.current_event
    _, _, template = str(event.get("routeKey") or "").partition(" ")  # never the path: it holds the ids
    return _refusal(404, "not_found", f"no route {event.http_method} {template or '(unknown path)'}")


# -- helpers -------------------------------------------------------------------------------------------------


def _begin(operation: str, route: str, workspace_id: str | None) -> str:
    """Name the call (its metrics' ``route`` dimension, its log lines' ``route`` and ``workspace_id``); the path's
    workspace_id, decoded and checked, or RequestError."""
    metrics.add_dimension("route", operation)
    logger.append_keys(route=route, workspace_id=None)
    workspace = _check_workspace_id(None if workspace_id is None else unquote(workspace_id))
    logger.append_keys(workspace_id=workspace)
    return workspace


def _answer(status: int, body: dict[str, Any] | None, outcome: str, **log: Any) -> Response[str]:
    """The call's answer (JSON, or an empty 204), its log line and its count (named by ``outcome``)."""
    metrics.add_metric(_metric_name(outcome), MetricUnit.Count, 1)
    logger.info("connection", extra={"outcome": outcome, "status": status, **log})
    if body is None:
        return Response(status, content_type=None, body="", headers={})
    return Response(status, content_type=None, body=json.dumps(body), headers={"content-type": "application/json"})


def _refusal(status: int, code: str, message: str) -> Response[str]:
    """An error answer a route gives itself (not connected, Segment failed, a delivery in flight)."""
    text = printable(message)
    return _answer(status, error_body(code, text), code, field=None, detail=text)


def _health(ledger: HealthLedger, workspace_id: str) -> dict[str, Any] | None:
    try:
        return ledger.health(workspace_id, now_ms=int(time.time() * 1000))
    except DedupUnavailableError as exc:
        logger.warning("could not read delivery health", extra={"error": str(exc)})
        return None


def _connected(connection: Connection) -> dict[str, Any]:
    return {
        "connected": True,
        "region": connection.region,
        "write_key_hint": connection.hint,
        "settings": connection.settings.as_dict(),
    }


def _check_workspace_id(workspace_id: str | None) -> str:
    """The path's workspace_id checked against the OpenAPI ``WorkspaceId`` schema, or RequestError."""
    if not is_valid("WorkspaceId", workspace_id):
        raise RequestError("invalid_value", "workspace_id must be 1-64 characters of A-Za-z0-9_-", "workspace_id")
    return str(workspace_id)


def _check_visitor_id(visitor_id: str) -> str:
    """The path's visitor_id checked as the ingest bodies' ``visitor_id`` is, or RequestError."""
    if not is_valid("VisitorId", visitor_id) or not usable_id(visitor_id):
        raise RequestError("invalid_value", "visitor_id must be 1-128 printable characters", "visitor_id")
    return visitor_id


def _metric_name(outcome: str) -> str:
    """``not_connected`` -> ``NotConnected``: one count per call, named by its outcome."""
    return "".join(part.capitalize() for part in outcome.split("_"))
