"""Errors of the client: one hierarchy, each carrying what the API said (status, ``code``, ``message``, ``field``).

::

    try:
        client.conversion(...)
    except InvalidRequestError as exc:     # 4xx: fix the call, retrying cannot help
        print(exc.status, exc.code, exc.field, exc.message)    # 400 invalid_value origin_url ...
    except ForwarderError as exc:          # anything else: unavailable after the retries, no answer, refused auth
        print(exc.retryable, exc.attempts, exc.event_id)

Every error of a conversion call carries the ``event_id`` the call sent (the caller's, or the one generated once
for the call): a conversion retried later with ``event_id=exc.event_id`` is forwarded once, whatever became of the
first call (a ``TransportError`` may hide a call the forwarder received and delivered). ``QueueSendError`` carries
each failed body (with its ``event_id``) in ``failed``.

``ForwarderError``
    ├── ``ApiError``: the API answered with an error status (``status`` is set)
    │     ├── ``InvalidRequestError``: 400, 404, 405, 409, 422, ... (``PayloadTooLargeError``: 413)
    │     ├── ``NotConnectedError``: 404 ``not_connected`` (the connection test of a workspace without connection)
    │     ├── ``AuthError``: 401/403 from the gateway (unsigned, bad signature, no ``execute-api:Invoke``)
    │     ├── ``ThrottledError``: 429 after the last attempt
    │     └── ``UnavailableError``: 5xx after the last attempt (``unavailable``: neither delivered nor queued)
    ├── ``TransportError``: no answer after the last attempt (connection refused or reset, timeout)
    ├── ``QueueSendError``: ``QueueProducer.send`` could not enqueue some messages (``sent`` and ``failed``)
    └── ``ConfigurationError``: no credentials or no region (raised when the client is built)

The API's own errors carry ``code`` (``invalid_json``, ``invalid_body``, ``missing_field``, ``unknown_field``,
``invalid_type``, ``invalid_value``, ``payload_too_large``, ``unavailable``, ``not_connected``, ...) and ``field``;
the gateway's answers (``{"message": ...}``) carry ``code`` = the ``x-amzn-ErrorType`` header when there is one
(``InvalidSignatureException``, ...) and ``field`` = None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .results import FailedMessage, SentMessage


class ForwarderError(Exception):
    """Base of every error raised by this package."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
        request_id: str | None = None,
        retryable: bool = False,
        attempts: int = 1,
        event_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field
        self.request_id = request_id
        self.retryable = retryable
        self.attempts = attempts
        self.event_id = event_id
        """The conversion's ``event_id`` as sent (None for other calls): give it to the retry."""

    def __str__(self) -> str:
        head = " ".join(str(part) for part in (self.status, self.code) if part is not None)
        where = f" (field {self.field})" if self.field else ""
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        return f"{head + ': ' if head else ''}{self.message}{where}{tries}"


class ApiError(ForwarderError):
    """The API (or its gateway) answered with an error status."""


class InvalidRequestError(ApiError):
    """A 4xx other than 401/403/429: the call can never succeed as sent."""


class PayloadTooLargeError(InvalidRequestError):
    """413: the body, or the Segment message built from it, is over 32 KB."""


class NotConnectedError(ApiError):
    """404 ``not_connected``: the workspace has no Segment connection (connection test)."""


class AuthError(ApiError):
    """401/403: refused before the route ran (no or bad signature, no permission, wrong local token)."""


class ThrottledError(ApiError):
    """429 on the last attempt."""


class UnavailableError(ApiError):
    """5xx on the last attempt: for an ingest call, neither delivered nor queued."""


class TransportError(ForwarderError):
    """No HTTP answer on the last attempt: connection refused or reset, or a timeout."""


class ConfigurationError(ForwarderError):
    """The client cannot be built: no AWS credentials, or no region to sign for."""


class QueueSendError(ForwarderError):
    """Some messages could not be put on the queue; ``sent`` were, ``failed`` were not (with the reason).

    Each ``FailedMessage`` holds its body as prepared, with its ``event_id`` (also ``event_ids``, in order; and
    ``event_id`` when a single conversion failed): resend ``[f.body for f in exc.failed]`` to keep them."""

    def __init__(
        self, message: str, sent: Sequence[SentMessage], failed: Sequence[FailedMessage], **kwargs: Any
    ) -> None:
        self.sent = list(sent)
        self.failed = list(failed)
        self.event_ids = tuple(f.event_id for f in self.failed if f.event_id is not None)
        if len(self.failed) == 1 and "event_id" not in kwargs:
            kwargs["event_id"] = self.failed[0].event_id
        super().__init__(message, **kwargs)


def error_from_answer(status: int, body: Any, headers: Any, attempts: int) -> ApiError:
    """The error for an error answer: the API's ``{"error": {...}}`` or the gateway's ``{"message": ...}``."""
    request_id = headers.get("apigw-requestid") if headers is not None else None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = _text(error.get("code"))
        message = _text(error.get("message")) or f"HTTP {status}"
        field = _text(error.get("field"))
    else:
        code = headers.get("x-amzn-ErrorType") if headers is not None else None
        gateway_message = _text(body.get("message")) if isinstance(body, dict) else None
        message = gateway_message or f"HTTP {status}"
        field = None
    kind: type[ApiError]
    if status in (401, 403):
        kind = AuthError
    elif status == 429:
        kind = ThrottledError
    elif status == 413:
        kind = PayloadTooLargeError
    elif status == 404 and code == "not_connected":
        kind = NotConnectedError
    elif status >= 500:
        kind = UnavailableError
    else:
        kind = InvalidRequestError
    return kind(
        message,
        status=status,
        code=code,
        field=field,
        request_id=request_id,
        retryable=is_retryable_status(status),
        attempts=attempts,
    )


def is_retryable_status(status: int) -> bool:
    """429 and 5xx (but 501 Not Implemented and 505 HTTP Version Not Supported) are worth another attempt."""
    return status == 429 or (status >= 500 and status not in (501, 505))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
