"""The *typical stack* of the benchmark: the SQS handler a team would write first with off-the-shelf parts.

It is written like a Lambda ``app.py`` (module-level setup, one ``handler``) and is never packaged or deployed.
Per SQS batch (Powertools ``BatchProcessor``, partial batch responses):

- each record is parsed and passed to a Powertools ``@idempotent_function`` keyed on the whole record body
  (``DynamoDBPersistenceLayer``, ``id`` hash key: a conditional PutItem to lock, an UpdateItem to complete);
- inside it, the visitor's first-seen Identify is another ``@idempotent_function`` keyed on
  (workspace, visitor, user id), with a ``key_prefix`` so the three functions share it; identify records call
  only that one;
- messages go through the official ``segment-analytics-python`` client, one ``Client`` per workspace (write key
  and region from Secrets Manager via ``parameters.get_secret``, cached), ``sync_mode=False``, and every client
  used is flushed at the end of the invocation.

Two pitfalls of the obvious version are avoided, so that it delivers exactly what the forwarder delivers: one
persistence layer shared by the nested idempotent functions completes the outer record under the inner key in
Powertools 3.37 (the outer stays INPROGRESS: repeats fail as "already in progress"), and without ``key_prefix``
the key includes the Lambda function's name, so each of the three functions would identify a visitor again.

Environment: ``EVENT_KIND`` (identify | assignment | conversion), ``IDEMPOTENCY_TABLE``, ``SECRET_PREFIX``,
``CONNECTION_CACHE_SECONDS``, ``SEGMENT_US_HOST`` / ``SEGMENT_EU_HOST`` (Segment base URLs; the client posts to
``host + "/v1/batch"``), optional ``SEGMENT_UPLOAD_INTERVAL`` (the client's ``upload_interval``; library default,
0.5 s, when unset).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from segment.analytics import Client

KIND = os.environ.get("EVENT_KIND", "assignment")
SECRET_PREFIX = os.environ.get("SECRET_PREFIX", "segment-forwarder")
CACHE_SECONDS = int(os.environ.get("CONNECTION_CACHE_SECONDS", "60"))
HOSTS = {
    "us": os.environ.get("SEGMENT_US_HOST", "https://api.segment.io"),
    "eu": os.environ.get("SEGMENT_EU_HOST", "https://events.eu1.segmentapis.com"),
}
_interval = os.environ.get("SEGMENT_UPLOAD_INTERVAL")
CLIENT_OPTIONS: dict[str, Any] = {"upload_interval": float(_interval)} if _interval else {}

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)
# One persistence layer per idempotent function, sharing one client (see the module docstring).
_table = os.environ.get("IDEMPOTENCY_TABLE", "idempotency")
_dynamodb = boto3.client("dynamodb")
forward_store = DynamoDBPersistenceLayer(table_name=_table, boto3_client=_dynamodb)
identify_store = DynamoDBPersistenceLayer(table_name=_table, boto3_client=_dynamodb)
config = IdempotencyConfig(expires_after_seconds=400 * 86_400)  # "first seen" must outlive a test
clients: dict[str, Client] = {}


def segment_client(workspace_id: str) -> Client:
    """The workspace's Segment client, created on first use (one consumer thread each)."""
    connection = parameters.get_secret(f"{SECRET_PREFIX}/{workspace_id}", transform="json", max_age=CACHE_SECONDS)
    write_key = connection["write_key"]
    if write_key not in clients:
        host = HOSTS[connection.get("region", "us")]
        clients[write_key] = Client(write_key, host=host, sync_mode=False, **CLIENT_OPTIONS)
    return clients[write_key]


def idempotent[F: Callable[..., Any]](
    data_keyword_argument: str, persistence_store: BasePersistenceLayer, key_prefix: str | None = None
) -> Callable[[F], F]:
    """Powertools' ``@idempotent_function(...)`` under ``config``, with the decorated function's type kept (Powertools
    types the decorator's result as Any)."""
    decorator: Callable[[F], F] = idempotent_function(
        data_keyword_argument=data_keyword_argument,
        config=config,
        persistence_store=persistence_store,
        key_prefix=key_prefix,
    )
    return decorator


def _common(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "anonymous_id": body["visitor_id"],
        "user_id": body.get("user_id"),
        "timestamp": datetime.fromisoformat(body["timestamp"]) if "timestamp" in body else None,
        "context": dict(body.get("context", {})),
    }


@idempotent(data_keyword_argument="visitor", persistence_store=identify_store, key_prefix="first-identify")
def identify_once(visitor: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The visitor's first Identify (and again for a new user id)."""
    segment_client(visitor["workspace_id"]).identify(**_common(body))
    return {"identified": True}


@idempotent(data_keyword_argument="event", persistence_store=forward_store)
def forward(event: dict[str, Any]) -> dict[str, Any]:
    """Identify the visitor if new, then send the event's Track."""
    visitor = {k: event.get(k) for k in ("workspace_id", "visitor_id", "user_id")}
    identify_once(visitor=visitor, body=event)
    client = segment_client(event["workspace_id"])
    if KIND == "assignment":
        properties = {
            "test_id": event["test_id"],
            "variant_id": event["variant_id"],
            "experiment_id": event["test_id"],
            "variation_id": event["variant_id"],
        }
        client.track(event="Experiment Viewed", properties=properties, **_common(event))
    else:
        properties = {k: event[k] for k in ("conversion_id", "conversion_type", "origin_url")}
        client.track(event="Conversion Triggered", properties=properties, **_common(event))
    return {"forwarded": True}


def record_handler(record: SQSRecord) -> dict[str, Any]:
    """One SQS record (the parameter must be named ``record`` for the BatchProcessor)."""
    body = json.loads(record.body)
    if KIND == "identify":
        visitor = {k: body.get(k) for k in ("workspace_id", "visitor_id", "user_id")}
        return identify_once(visitor=visitor, body=body)
    return forward(event=body)


def shutdown() -> None:
    """Flush and stop every Segment client's consumer thread (the benchmark ends an environment with it)."""
    for client in clients.values():
        client.shutdown()
    clients.clear()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    """Lambda entry point of the SQS event source (ReportBatchItemFailures)."""
    config.register_lambda_context(context)
    try:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:
        for client in clients.values():
            client.flush()
