"""Typed results of the client and the queue producer.

::

    result = client.assignment("demo", "v-1", "t-checkout", "b")
    result.status                 # Status.DELIVERED (a StrEnum: == "delivered")
    result.message_ids            # ("…identify id…", "…track id…"): every Segment message sent
    result.attempts               # 1, or more when the call was retried
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Outcome of an ingest call (the ``status`` of a 200 or 202 answer)."""

    DELIVERED = "delivered"
    """Segment accepted it; ``message_ids`` holds every message sent (Identify included)."""
    DUPLICATE = "duplicate"
    """Already forwarded before; nothing sent."""
    SKIPPED = "skipped"
    """The workspace has no Segment connection (``reason`` = ``not_connected``); nothing sent."""
    QUEUED = "queued"
    """Accepted (202); delivery continues from the function's queue."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The answer to ``identify``, ``assignment`` or ``conversion``."""

    status: Status
    message_ids: tuple[str, ...] = ()
    reason: str | None = None
    event_id: str | None = None
    """The conversion's ``event_id`` as sent (given by the caller or generated once for the call)."""
    attempts: int = 1
    request_id: str | None = None
    """API Gateway's request id of the answer (``apigw-requestid``), for support and logs."""


@dataclass(frozen=True, slots=True)
class Connection:
    """A workspace's Segment connection as the API shows it (never the write key, only its last characters)."""

    connected: bool
    region: str | None = None
    write_key_hint: str | None = None
    settings: Mapping[str, Any] | None = None
    """The workspace's effective settings (every default filled in) when connected."""
    health: Mapping[str, Any] | None = None
    """What the forwarder sent and what Segment answered (``connection_status`` only): ``last_delivery``,
    ``last_failure`` and the ``last_24h`` counts (delivered, failed, parked)."""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """The whole answer (fields a newer API version adds are kept here)."""


@dataclass(frozen=True, slots=True)
class ConnectionTest:
    """The test Track sent to the workspace's source; confirm it in Segment's debugger."""

    message_id: str
    endpoint: str
    region: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class VisitorErasure:
    """One erase call's answer: the facts it deleted, and whether the erase is complete (else call again after
    ``retry_after_s``)."""

    erased: int
    complete: bool = True
    retry_after_s: int = 0


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A body the queue accepted."""

    body: Mapping[str, Any]
    message_id: str
    """SQS's MessageId."""
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class FailedMessage:
    """A body the queue did not accept, and why (SQS's error code and message)."""

    body: Mapping[str, Any]
    code: str
    message: str
    sender_fault: bool
    """True: SQS refused this message as sent (retrying cannot help); False: gave up after the retries."""
    event_id: str | None = None
    """The conversion's ``event_id`` in ``body`` (resending ``body`` keeps it)."""
