"""Errors that become answers: each carries an HTTP status, a machine code, a message and the field at fault."""

from __future__ import annotations

from typing import Any


class RequestError(Exception):
    """A request that can never succeed as sent (HTTP 4xx; on the SQS path: straight to the DLQ).

    >>> RequestError(400, "invalid_type", "visitor_id must be a string", "visitor_id").as_body()["error"]["field"]
    'visitor_id'
    """

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def as_body(self) -> dict[str, Any]:
        """The JSON error answer of every route: ``{"error": {"code", "message", "field"}}``."""
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class ConnectionConfigError(Exception):
    """A workspace secret exists but cannot be used (malformed). Retried from the queue, then parked in the DLQ."""
