"""Errors that become answers: each carries an HTTP status, a machine code, a message and the field at fault."""

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


class RequestError(Exception):
    """A request that can never succeed as sent (HTTP 4xx; on the SQS path: straight to the DLQ).

    Its message and field may quote the request (a field's name): both are made ``printable``.

    >>> RequestError(400, "invalid_type", "visitor_id must be a string", "visitor_id").as_body()["error"]["field"]
    'visitor_id'
    """

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        self.status = status
        self.code = code
        self.message = printable(message)
        self.field = None if field is None else printable(field)
        super().__init__(self.message)

    def as_body(self) -> dict[str, Any]:
        """The JSON error answer of every route: ``{"error": {"code", "message", "field"}}``."""
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class ConnectionConfigError(Exception):
    """A workspace secret exists but cannot be used (malformed). Retried from the queue, then parked in the DLQ."""
