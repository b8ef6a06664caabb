"""The ports of the forwarding core: what ``forwarding.Forwarder`` needs from the world, as typed protocols, and the
values that cross them. The core imports these, never an adapter (boto3, urllib3)::

    forwarder = Forwarder(store, connections, segment)   # any FactStore, ConnectionSource, SegmentSender

=====================  ==========================================  ===========================================
port                   adapter in Lambda                           in the domain tests
=====================  ==========================================  ===========================================
``FactStore``          ``claims.DedupStore`` (DynamoDB)            ``tests/support/fakes.py``
``ConnectionSource``   ``connections.Connections`` (Secrets Mgr)   a dict of ``Connection``
``SegmentSender``      ``segment.SegmentClient`` (urllib3)         the fakes' Segment
=====================  ==========================================  ===========================================

A port reports a failed dependency with an ``errors.UnavailableError`` (a stored connection that cannot be used:
``errors.ConnectionConfigError``), never with its client library's exceptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .facts import ClaimAnswer, ClaimRequest, Slot
from .messages import Message
from .workspace_settings import DEFAULT_SETTINGS, WorkspaceSettings

MIN_HINT_KEY_CHARS = 8  # a shorter key would be (nearly) shown whole by its last 4 characters


@dataclass(frozen=True, slots=True)
class Connection:
    """A workspace's Segment source and settings. The write key is kept out of ``repr`` so it cannot reach a log
    line."""

    write_key: str = field(repr=False)
    region: str
    settings: WorkspaceSettings = DEFAULT_SETTINGS

    @property
    def hint(self) -> str:
        """What may be shown of the key: an ellipsis and its last 4 characters (nothing of a key under 8)."""
        return "…" + self.write_key[-4:] if len(self.write_key) >= MIN_HINT_KEY_CHARS else "…"


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What became of one batch: ``ok``; else ``retryable`` tells a later attempt may succeed, ``retry_after``
    (seconds) when Segment, or the circuit breaker, said how long to wait."""

    ok: bool
    retryable: bool
    status: int | None
    reason: str
    requests: int
    retry_after: float | None = None


class ClaimHandle(Protocol):
    """A store's claim: its answer, plus whatever the store needs to mark or release it later."""

    @property
    def answer(self) -> ClaimAnswer:
        """What the store answered."""
        ...


class FactStore[C: ClaimHandle](Protocol):
    """Where facts are claimed, marked SENT and released (``claims.DedupStore``)."""

    def claim_all(self, requests: Sequence[ClaimRequest], *, precheck: bool = False) -> Mapping[Slot, C]:
        """A claim handle per requested slot; failures are UNAVAILABLE / INVALID answers, never exceptions.
        ``precheck``: first read which are SENT already (cheaper than a conditional write that loses)."""
        ...

    def confirm(self, requests: Sequence[ClaimRequest]) -> Mapping[Slot, C]:
        """Read the requested IDENTIFY items again (consistently), after the claims; failures are UNAVAILABLE."""
        ...

    def mark_sent(self, marks: Iterable[tuple[C, str, int]]) -> None:
        """Record claims as SENT by the message with the given id in the given generation; UnavailableError if
        not all were."""
        ...

    def release(self, claims: Sequence[C]) -> None:
        """Give up claims' leases (best effort)."""
        ...

    def forget(self, claims: Sequence[C]) -> None:
        """Delete facts claimed only for an erased visitor's events (best effort)."""
        ...


class ConnectionSource(Protocol):
    """Workspace connections (``connections.Connections``)."""

    def get(self, workspace_id: str) -> Connection | None:
        """The connection, None when not connected; ConnectionConfigError / UnavailableError."""
        ...


class SegmentSender(Protocol):
    """Segment's batch API (``segment.SegmentClient``)."""

    def send(self, write_key: str, region: str, messages: list[Message], deadline: float) -> SendOutcome:
        """Send one batch within Segment's limits, retrying until ``deadline``."""
        ...
