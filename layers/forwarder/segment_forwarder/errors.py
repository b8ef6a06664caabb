"""The forwarder's one error hierarchy. Errors say what went wrong in the domain, never how to answer it: the
HTTP status of each is chosen once, at the edge (``api_gateway.status_of`` for the ingest routes, the
connection function's exception handlers for its routes)::

    ForwarderError                      every error the forwarder raises on purpose
    ├── RequestError                    a request that can never succeed as sent (refused; on the SQS path parked)
    │   ├── PayloadTooLargeError        ... because it is too large
    │   └── SettingsError               ... because its workspace settings cannot be used (workspace_settings)
    ├── UnavailableError                a dependency failed; the same call may succeed later
    │   ├── ConnectionUnavailableError  Secrets Manager (connections)
    │   ├── DedupUnavailableError       the DynamoDB table (table)
    │   └── QueueUnavailableError       SQS (queues)
    ├── ConnectionConfigError           a stored workspace connection cannot be used
    └── ConfigurationError              the function's environment is incomplete (config)

Each error is defined where it is raised when one module raises it (its adapter), here when several do.

>>> error = RequestError("invalid_type", "visitor_id must be a string", "visitor_id")
>>> error.as_body()["error"]["field"]
'visitor_id'
"""

from __future__ import annotations

import re
from typing import Any

MAX_TEXT_CHARS = 300
_NOT_TEXT = re.compile("[\ud800-\udfff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def printable(value: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Text fit for an answer, a log line or a queue attribute, whatever a request held: unpaired surrogates and
    control characters become U+FFFD, and a value over ``limit`` characters is cut with an ellipsis."""
    text = _NOT_TEXT.sub("\ufffd", value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The JSON error answer of every route: ``{"error": {"code", "message", "field"}}``.

    >>> error_body("unavailable", "retry the call")
    {'error': {'code': 'unavailable', 'message': 'retry the call', 'field': None}}
    """
    return {"error": {"code": code, "message": message, "field": field}}


class ForwarderError(Exception):
    """Base of every error the forwarder raises on purpose (anything else is a bug)."""


class RequestError(ForwarderError):
    """A request that can never succeed as sent: refused over HTTP, parked in the DLQ on the SQS path.

    ``code`` is the machine-readable reason; the message and field may quote the request (a field's name), so both
    are made ``printable``.
    """

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        self.code = code
        self.message = printable(message)
        self.field = None if field is None else printable(field)
        super().__init__(self.message)

    def as_body(self) -> dict[str, Any]:
        """The error's answer body (``error_body``)."""
        return error_body(self.code, self.message, self.field)


class PayloadTooLargeError(RequestError):
    """A request (or what the forwarder would make of it) over a size limit; its code is ``payload_too_large``.

    >>> PayloadTooLargeError("the body is over 32768 bytes", "body").code
    'payload_too_large'
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__("payload_too_large", message, field)


class UnavailableError(ForwarderError):
    """A dependency (Secrets Manager, the table, SQS) failed or throttled; the message names its error code."""


class ConnectionConfigError(ForwarderError):
    """A workspace secret exists but cannot be used (malformed). Retried from the queue, then parked in the DLQ."""


def error_code(exc: BaseException) -> str:
    """The code an AWS service answered (botocore's ``ClientError`` carries it in ``response``), else the exception's
    type: ``ThrottlingException``, ``ConnectTimeoutError``. Every AWS adapter names its failures so (never with a
    message, which may quote a value)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__
