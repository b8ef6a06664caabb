"""Claim → send → mark sent, for one event (HTTP path) or a whole SQS batch (§2, §6).

::

    forwarder = Forwarder(store, connections, segment, settings)
    outcomes = forwarder.forward(events, deadline=time.monotonic() + 3)   # one Outcome per event, in order

Per event: resolve the workspace's connection; claim the event's own fact (a duplicate or an attempt in
flight elsewhere stops here), then the visitor's identity facts (the link to a user id first, then the
first-seen Identify); build the messages (Identify before Track). Events are grouped per workspace and sent
with as few ``/v1/batch`` requests as the limits allow; delivered facts are marked SENT in one batch write,
failed ones are released at once so the retry can claim them again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from aws_lambda_powertools import Logger

from .config import Settings
from .connections import Connection, ConnectionConfigError, Connections, ConnectionUnavailableError
from .dedup import Claim, ClaimState, DedupStore, DedupUnavailableError, Fact
from .events import IDENTIFY, Event, identify_message, link_key, track_message
from .segment import MAX_MESSAGE_BYTES, SegmentClient, message_size, split_batches

logger = Logger(child=True)

# Concurrency inside one invocation: DynamoDB and Segment latency, not CPU, is the cost of a batch.
CLAIM_THREADS = 8  # visitors claimed at once
SEND_THREADS = 4  # workspaces sent at once

Status = Literal["delivered", "duplicate", "skipped", "retry", "rejected"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one event.

    ``retry``: not delivered now, a later attempt may succeed (HTTP: queue it; SQS: report it failed).
    ``rejected``: can never succeed (HTTP: ``http_status``; SQS: dead-letter queue with ``reason``).
    """

    status: Status
    message_ids: tuple[str, ...] = ()
    reason: str = ""
    http_status: int | None = None


@dataclass(slots=True)
class _Work:
    event: Event
    connection: Connection | None = None
    claims: list[Claim] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    outcome: Outcome | None = None
    leader: _Work | None = None  # an earlier event of this call that holds this event's own fact


class Forwarder:
    """Forwards events to their workspaces' Segment sources, exactly once per dedup fact."""

    def __init__(self, store: DedupStore, connections: Connections, segment: SegmentClient, settings: Settings) -> None:
        self._store = store
        self._connections = connections
        self._segment = segment
        self._settings = settings

    def forward(self, events: Sequence[Event], deadline: float) -> list[Outcome]:
        """Forward ``events`` with delivery attempts bounded by ``deadline`` (``time.monotonic()`` based)."""
        works = [_Work(event) for event in events]
        connections: dict[str, Connection | Outcome | None] = {}
        for work in works:
            self._connect(work, connections)
        # Claims: one visitor's events in order (an earlier event leads a later one with the same fact),
        # different visitors concurrently — their facts live in different items.
        by_visitor: dict[str, list[_Work]] = {}
        for work in works:
            if work.outcome is None:
                by_visitor.setdefault(work.event.partition_key, []).append(work)
        if len(by_visitor) > 1:
            with ThreadPoolExecutor(max_workers=min(CLAIM_THREADS, len(by_visitor))) as pool:
                list(pool.map(self._claim_visitor, by_visitor.values()))
        else:
            for group in by_visitor.values():
                self._claim_visitor(group)
        delivered = self._send(works, deadline)
        self._mark_sent(delivered)
        for work in works:
            if work.leader is not None:
                leader_done = work.leader.outcome and work.leader.outcome.status == "delivered"
                work.outcome = Outcome("duplicate") if leader_done else Outcome("retry", reason="in_flight")
        return [work.outcome or Outcome("retry", reason="internal") for work in works]

    # -- steps -----------------------------------------------------------------------------------------

    def _connect(self, work: _Work, seen: dict[str, Connection | Outcome | None]) -> None:
        """Resolve the workspace's connection once per call (and per cache period across calls)."""
        workspace = work.event.workspace_id
        if workspace not in seen:
            try:
                seen[workspace] = self._connections.get(workspace)
            except ConnectionConfigError as exc:
                seen[workspace] = Outcome("retry", reason=f"connection_invalid: {exc}")
            except ConnectionUnavailableError:
                seen[workspace] = Outcome("retry", reason="connection_unavailable")
        found = seen[workspace]
        if isinstance(found, Outcome):
            work.outcome = found
        elif found is None:
            work.outcome = Outcome("skipped", reason="not_connected")
        else:
            work.connection = found

    def _claim_visitor(self, works: list[_Work]) -> None:
        """Claim the facts of one visitor's events, in order, and build their messages."""
        owners: dict[str, _Work] = {}
        for work in works:
            self._claim(work, owners)
            if work.outcome is None and work.leader is None:
                self._build_messages(work)

    def _fact(self, event: Event, key: str, *, user_id: str | None = None) -> Fact:
        ttl = self._settings.event_id_ttl_seconds if key.startswith("EVENT#") else self._settings.dedup_ttl_seconds
        variant = event.body.get("variant_id") if key.startswith("ASSIGN#") else None
        return Fact(event.partition_key, key, event.message_id(key), ttl, variant_id=variant, user_id=user_id)

    def _claim(self, work: _Work, owners: dict[str, _Work]) -> None:
        """Claim the event's own fact, then the visitor's identity facts.

        ``owners`` maps the facts claimed by earlier events of this visitor in this call to their event: an
        event whose own fact one of them holds follows it (a duplicate if it is delivered) instead of failing.
        """
        event = work.event
        own_key = event.fact_key
        duplicate = False
        try:
            if own_key is not None and own_key != IDENTIFY:
                claim = self._store.claim(self._fact(event, own_key))
                if claim.state is ClaimState.IN_FLIGHT:
                    self._follow_or_retry(work, owners.get(own_key))
                    return
                if claim.state is ClaimState.SENT:
                    duplicate = True
                else:
                    work.claims.append(claim)
            if not (duplicate and event.user_id is None):
                in_flight = self._claim_identity(work)
                if event.kind == "identify" and in_flight is not None and not work.claims:
                    self._follow_or_retry(work, owners.get(in_flight))
        except DedupUnavailableError as exc:
            self._store.release(work.claims)
            work.claims.clear()
            work.outcome = Outcome("retry", reason=f"dedup_unavailable: {exc}")
        for claim in work.claims:
            owners.setdefault(claim.fact.sk, work)

    @staticmethod
    def _follow_or_retry(work: _Work, leader: _Work | None) -> None:
        """The event's fact is in flight: behind an earlier event of this call, or elsewhere (retry later)."""
        if leader is not None:
            work.leader = leader
        else:
            work.outcome = Outcome("retry", reason="in_flight")

    def _claim_identity(self, work: _Work) -> str | None:
        """Claim the visitor's link to the user id (if any), then its first-seen Identify.

        A link already claimed or sent means the visitor is identified too. Returns the key of the identity
        fact that is in flight elsewhere (left to the attempt that claimed it), if any.
        """
        event = work.event
        if event.user_id is not None:
            key = link_key(event.user_id)
            link = self._store.claim(self._fact(event, key, user_id=event.user_id))
            if link.state is not ClaimState.CLAIMED:
                return key if link.state is ClaimState.IN_FLIGHT else None
            work.claims.append(link)
        first = self._store.claim(self._fact(event, IDENTIFY, user_id=event.user_id))
        if first.state is ClaimState.CLAIMED:
            work.claims.append(first)
        return IDENTIFY if first.state is ClaimState.IN_FLIGHT and event.user_id is None else None

    def _build_messages(self, work: _Work) -> None:
        event = work.event
        by_key = {claim.fact.sk: claim for claim in work.claims}
        identity = by_key.get(IDENTIFY) or (by_key.get(link_key(event.user_id)) if event.user_id else None)
        if identity is not None:
            identify_id = identity.fact.message_id
            work.messages.append(identify_message(event, identify_id, event.user_id))
            # One Identify that carries the user id is also the link: both facts record its message id.
            work.claims = [
                replace(c, fact=replace(c.fact, message_id=identify_id)) if c.fact.sk.startswith(IDENTIFY) else c
                for c in work.claims
            ]
        own_key = event.fact_key
        if event.kind != "identify" and (own_key is None or own_key in by_key):
            variant = by_key[own_key].fact.variant_id if own_key in by_key else None
            work.messages.append(track_message(event, event.track_message_id(), variant))
        if not work.messages:
            work.outcome = Outcome("duplicate")
            return
        if any(message_size(m) > MAX_MESSAGE_BYTES for m in work.messages):
            self._store.release(work.claims)
            work.messages.clear()
            work.outcome = Outcome(
                "rejected",
                reason=f"message_too_large: a Segment message is over {MAX_MESSAGE_BYTES} bytes",
                http_status=413,
            )

    def _send(self, works: list[_Work], deadline: float) -> list[_Work]:
        """Send every event that has messages, workspaces concurrently; return the delivered events."""
        groups: dict[str, list[_Work]] = {}
        for work in works:
            if work.outcome is None and work.messages:
                groups.setdefault(work.event.workspace_id, []).append(work)
        if len(groups) > 1:
            with ThreadPoolExecutor(max_workers=min(SEND_THREADS, len(groups))) as pool:
                sent = list(pool.map(lambda group: self._send_workspace(group, deadline), groups.values()))
        else:
            sent = [self._send_workspace(group, deadline) for group in groups.values()]
        return [work for delivered in sent for work in delivered]

    def _send_workspace(self, group: list[_Work], deadline: float) -> list[_Work]:
        """One workspace's events, in order, with its own key and region only, split by Segment's limits."""
        connection = group[0].connection
        assert connection is not None  # set by _connect for every event with messages
        delivered: list[_Work] = []
        for indexes in split_batches([w.messages for w in group]):
            batch = [group[i] for i in indexes]
            messages = [m for w in batch for m in w.messages]
            started = time.monotonic()
            result = self._segment.send(connection.write_key, connection.region, messages, deadline)
            logger.debug(
                "segment batch",
                extra={
                    "region": connection.region,
                    "messages": len(messages),
                    "status": result.status,
                    "requests": result.requests,
                    "ms": round((time.monotonic() - started) * 1000),
                },
            )
            if result.ok:
                for work in batch:
                    work.outcome = Outcome("delivered", message_ids=tuple(m["messageId"] for m in work.messages))
                delivered.extend(batch)
                continue
            for work in batch:
                self._store.release(work.claims)
                status: Status = "retry" if result.retryable else "rejected"
                work.outcome = Outcome(status, reason=result.reason)
        return delivered

    def _mark_sent(self, delivered: list[_Work]) -> None:
        claims = [claim for work in delivered for claim in work.claims]
        if not claims:
            return
        try:
            self._store.mark_sent(claims)
        except DedupUnavailableError as exc:
            # Delivered all the same. The leases expire; a resend would carry the same message ids.
            logger.warning("could not mark facts sent", extra={"facts": len(claims), "error": str(exc)})
