"""A visitor's facts through the connection function, for component tests on the ``stack`` fixture: a cold-started
connection function, the erase route called as API Gateway calls it, and the facts the table holds::

    connection = connection_handler(stack)
    status, body = erase(connection, "ws-us", "v-1")        # (200, {"complete": True, "retry_after_s": 0, ...})
    facts_of(stack, "ws-us", "v-1")                          # {"IDENTIFY": "SENT", "ASSIGN#t-1": "SENT"}
"""

from __future__ import annotations

import json
import sys
from typing import Any

from local_stack.invoke import LambdaContext
from tests.support.functions import load_app

ERASE_ROUTE = "/v1/workspaces/{workspace_id}/visitors/{visitor_id}"


def connection_handler(stack: Any) -> Any:
    """A cold-started connection function with its template environment."""
    environment = stack.template.function_environment("ConnectionFunction", stack.resources)
    environment.update(SEGMENT_US_ENDPOINT=stack.sink.region_url("us"), SEGMENT_EU_ENDPOINT=stack.sink.region_url("eu"))
    for name, value in environment.items():
        stack.monkeypatch.setenv(name, value)
    sys.modules.pop("segment_forwarder.connection_api", None)  # its runtime (clients) lives in the module
    return load_app("connection").handler


def erase(handler: Any, workspace_id: str, visitor_id: str, context: Any = None) -> tuple[int, dict[str, Any]]:
    """``DELETE /v1/workspaces/<workspace_id>/visitors/<visitor_id>``: the status and the JSON body answered."""
    path = f"/v1/workspaces/{workspace_id}/visitors/{visitor_id}"
    event = {
        "version": "2.0",
        "routeKey": f"DELETE {ERASE_ROUTE}",
        "rawPath": path,
        "pathParameters": {"workspace_id": workspace_id, "visitor_id": visitor_id},
        "requestContext": {"http": {"method": "DELETE", "path": path}, "requestId": "r-1", "stage": "$default"},
    }
    answer = handler(event, context or LambdaContext())
    return answer["statusCode"], json.loads(answer["body"]) if answer["body"] else {}


def facts_of(stack: Any, workspace_id: str, visitor_id: str) -> dict[str, str]:
    """The visitor's facts in the table: sort key -> status (an erasure's tombstone is no fact)."""
    client = stack.session.client("dynamodb")
    items = client.query(
        TableName=stack.resources["DedupTable"].ref,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"WS#{workspace_id}#V#{visitor_id}"}},
        ConsistentRead=True,
    )["Items"]
    return {item["sk"]["S"]: item["status"]["S"] for item in items if "status" in item}
