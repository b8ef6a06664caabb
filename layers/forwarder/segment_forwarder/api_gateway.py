"""API Gateway HTTP API (payload format 2.0) plumbing shared by the functions: the raw body in, JSON out.

::

    raw = request_body(event)                       # bytes; RequestError 400 for bad base64
    return json_response(200, {"status": "delivered", ...})
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from .errors import RequestError


def request_body(event: dict[str, Any]) -> bytes:
    """The request body as bytes (API Gateway base64-encodes bodies that are not text)."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, "invalid_body", "the body is not valid base64", "body") from None
    return str(body).encode("utf-8", "surrogatepass")


def json_response(status: int, body: dict[str, Any] | None) -> dict[str, Any]:
    """An HTTP API answer with a JSON body, or an empty body (204) without a content type."""
    if body is None:
        return {"statusCode": status, "headers": {}, "body": ""}
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}
