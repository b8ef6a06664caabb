"""API Gateway HTTP API (payload format 2.0) plumbing shared by the functions: the raw body in, JSON out, and the
HTTP status of each error (chosen here, once, for the ingest routes).

::

    raw = request_body(event)                       # bytes; RequestError for bad base64
    return json_response(200, {"status": "delivered", ...})
    return json_response(status_of(error), error.as_body())   # 400, 413 or 503
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from .errors import ForwarderError, PayloadTooLargeError, RequestError, UnavailableError

# The most specific class of an error's MRO found here gives its status; anything else is a 500.
STATUS_OF_ERROR: dict[type[ForwarderError], int] = {PayloadTooLargeError: 413, RequestError: 400, UnavailableError: 503}


def status_of(error: ForwarderError) -> int:
    """The HTTP status answering ``error``::

    status_of(PayloadTooLargeError("the body is over 32768 bytes"))   # 413
    status_of(RequestError("invalid_json", "..."))                    # 400
    """
    for kind in type(error).__mro__:
        if kind in STATUS_OF_ERROR:
            return STATUS_OF_ERROR[kind]
    return 500


def request_body(event: dict[str, Any]) -> bytes:
    """The request body as bytes (API Gateway base64-encodes bodies that are not text)."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError("invalid_body", "the body is not valid base64", "body") from None
    return str(body).encode("utf-8", "surrogatepass")


def json_response(status: int, body: dict[str, Any] | None) -> dict[str, Any]:
    """An HTTP API answer with a JSON body, or an empty body (204) without a content type."""
    if body is None:
        return {"statusCode": status, "headers": {}, "body": ""}
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}
