"""Claim → send → mark sent, for one event (HTTP path) or a whole SQS batch. Only I/O: every decision is made
by the pure core in ``facts``::

    forwarder = Forwarder(store, connections, segment)
    outcomes = forwarder.forward(events, deadline=time.monotonic() + 3)   # one Outcome per event, in order

The forwarder talks to its three dependencies through small protocols (``FactStore``, ``ConnectionSource``,
``SegmentSender``), implemented by ``claims.DedupStore``, ``connections.Connections`` and
``segment.SegmentClient`` in Lambda, and by in-memory fakes in the domain tests.

Steps: resolve each workspace's connection and settings (once per call); skip the events the settings screen
out (``not_forwarded``, ``no_consent``) before anything is claimed; claim every distinct fact of the call and
each visitor's IDENTIFY (which holds its erasure), concurrently; read again the IDENTIFY of a visitor whose
other facts were claimed while this call does not hold it (``to_confirm``: an erase may have come between);
``plan_call`` decides what each event sends; each workspace's deliveries go out in order with as
few ``/v1/batch`` requests as Segment's limits allow (workspaces concurrently; after a failed request the rest
of that workspace waits for the retry, so no Track overtakes its Identify); ``settle`` gives the outcomes and
the facts to mark SENT (one batch write) or to release.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from aws_lambda_powertools import Logger

from .errors import ConnectionConfigError, UnavailableError
from .events import Event
from .facts import (
    CallPlan,
    Delivery,
    EventPlan,
    Outcome,
    Refusal,
    SendResult,
    Settlement,
    Slot,
    bisect,
    claim_requests,
    needs_all,
    plan_call,
    refusal,
    refused_all,
    screen,
    settle,
    to_confirm,
)
from .ports import ClaimHandle, Connection, ConnectionSource, FactStore, SegmentSender, SendOutcome
from .segment_batches import MIN_ATTEMPT_S, split_batches

logger = Logger(child=True)

Units = Sequence[Sequence[Delivery]]  # a batch: the deliveries of each event, in order
SEND_THREADS = 4  # workspaces sent at once: Segment latency, not CPU, is the cost of a batch


class Forwarder[C: ClaimHandle]:
    """Forwards events to their workspaces' Segment sources, exactly once per fact."""

    def __init__(
        self,
        store: FactStore[C],
        connections: ConnectionSource,
        segment: SegmentSender,
        on_segment_request: Callable[[int], None] | None = None,
    ) -> None:
        """``on_segment_request`` is told the milliseconds of every Segment request (the handler makes a metric)."""
        self._store = store
        self._connections = connections
        self._segment = segment
        self._on_segment_request = on_segment_request
        self._pool = ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="send")

    def forward(self, events: Sequence[Event], deadline: float, *, precheck: bool = False) -> list[Outcome]:
        """Forward ``events``; Segment requests are bounded by ``deadline`` (``time.monotonic()`` based).

        ``precheck`` reads the facts before claiming them: one more round trip that makes repeats cost a read
        instead of a write (the SQS path; the HTTP path keeps to one claim round trip).

        When the marks cannot be written, every event that needed a fact delivered by this call is not
        ``complete``: it comes back, and its resend (same ids, same content) marks them. Should anything raise
        after the claims (a bug), their leases are released before the exception goes on.
        """
        results: list[Outcome | None] = [None] * len(events)
        connected: list[int] = []
        connections: dict[str, Connection] = {}
        for index, failure in enumerate(self._connect(events, connections)):
            if failure is None:
                connected.append(index)
            else:
                results[index] = failure
        live = [events[index] for index in connected]
        settings = {workspace: connection.settings for workspace, connection in connections.items()}
        needs = needs_all(live, settings)
        requests = claim_requests(live, settings, needs=needs)
        claims = self._store.claim_all(requests, precheck=precheck)
        try:
            answers = {slot: claim.answer for slot, claim in claims.items()}
            again = set(to_confirm(answers))
            confirmed = self._store.confirm([r for r in requests if r.slot in again]) if again else {}
            confirmed_answers = {slot: claim.answer for slot, claim in confirmed.items()}
            plan = plan_call(live, answers, settings, confirmed_answers, needs=needs)
            sent = self._send(live, plan, connections, deadline)
            settled = settle(plan, sent)
            recorded = self._settle(claims, settled)
        except Exception:  # a bug: give the leases back, so that a retry of these events can claim at once
            self._store.release(list(claims.values()))
            raise
        for index, outcome in zip(connected, settled.final(marked=recorded), strict=True):
            results[index] = outcome
        return [result or Outcome("retry", reason="internal") for result in results]

    def _connect(self, events: Sequence[Event], found: dict[str, Connection]) -> list[Outcome | None]:
        """Resolve each workspace's connection once; an outcome for each event that cannot go on: its workspace is
        not connected (or its connection cannot be read), or its settings skip it (``facts.screen``)."""
        failures: dict[str, Outcome | None] = {}
        for workspace in dict.fromkeys(event.workspace_id for event in events):
            try:
                connection = self._connections.get(workspace)
            except ConnectionConfigError as exc:
                failures[workspace] = Outcome("retry", reason=f"connection_invalid: {exc}")
                continue
            except UnavailableError:
                failures[workspace] = Outcome("retry", reason="connection_unavailable")
                continue
            if connection is None:
                failures[workspace] = Outcome("skipped", reason="not_connected")
            else:
                failures[workspace] = None
                found[workspace] = connection
        return [failures[event.workspace_id] or screen(event, found[event.workspace_id].settings) for event in events]

    def _send(
        self, events: Sequence[Event], plan: CallPlan, connections: dict[str, Connection], deadline: float
    ) -> dict[str, SendResult]:
        """Send every planned delivery, workspaces concurrently; Segment's answer per message id."""
        groups: dict[str, list[EventPlan]] = {}
        for event, event_plan in zip(events, plan.events, strict=True):
            if event_plan.deliveries:
                groups.setdefault(event.workspace_id, []).append(event_plan)
        work = [(connections[workspace], group) for workspace, group in groups.items()]
        if len(work) > 1:
            answers = list(self._pool.map(lambda item: self._send_workspace(item[0], item[1], deadline), work))
        else:
            answers = [self._send_workspace(connection, group, deadline) for connection, group in work]
        return {message_id: result for answer in answers for message_id, result in answer.items()}

    def _send_workspace(self, connection: Connection, group: list[EventPlan], deadline: float) -> dict[str, SendResult]:
        """One workspace's deliveries, in order, with its own key and region only, split by Segment's limits.

        After a request that failed for a reason a later attempt may not have (5xx, 429, a timeout, the source
        refusing everything) the rest of the workspace is not sent: it is retried, in order, later. No request
        after the first starts with less than ``MIN_ATTEMPT_S`` before ``deadline``.
        """
        results: dict[str, SendResult] = {}
        units = [list(event_plan.deliveries) for event_plan in group]
        for number, indexes in enumerate(split_batches([[d.message for d in unit] for unit in units])):
            if number and _out_of_time(deadline):
                break
            if not self._send_batch(connection, [units[index] for index in indexes], deadline, results):
                break
        return results

    def _send_batch(
        self, connection: Connection, batch: Units, deadline: float, results: dict[str, SendResult]
    ) -> bool:
        """Send ``batch`` (units: each event's deliveries), recording Segment's answer per delivery; False when the
        workspace must stop for now."""
        answer = self._post(connection, batch, deadline)
        return self._take(connection, batch, answer, deadline, results)

    def _take(
        self,
        connection: Connection,
        batch: Units,
        answer: SendOutcome,
        deadline: float,
        results: dict[str, SendResult],
    ) -> bool:
        """Record Segment's ``answer`` to ``batch`` (``facts.refusal`` says what it means); False to stop."""
        meaning = refusal(answer.status, ok=answer.ok, messages=_count(batch))
        if meaning is Refusal.SOURCE:
            _record(results, batch, refused_all(answer.status))
            return False
        if meaning is Refusal.SPLIT:
            return self._bisect(connection, batch, answer, deadline, results)
        _record(results, batch, SendResult(answer.ok, answer.retryable, answer.reason, answer.retry_after))
        return answer.ok or not answer.retryable

    def _bisect(
        self,
        connection: Connection,
        batch: Units,
        refused: SendOutcome,
        deadline: float,
        results: dict[str, SendResult],
    ) -> bool:
        """Segment refused ``batch`` whole for some message (400, 413, 422): send each half (``_halves``: whole
        events on each side), in order, within ``deadline``.

        When both halves are refused too and the source has accepted nothing of the call, it is the source refusing
        everything (``facts.bisect``), not one bad message: nothing more is split or sent for the workspace, and all
        of ``batch`` is retried later. Otherwise each refused half is split in turn, until a message refused alone
        while its neighbours are accepted is found: only that one is refused for good. A deadline reached leaves
        the rest unsent (retried). So a source that refuses everything costs 3 requests however large the batch
        (401/403: 1, never split), and one bad message among N about 1 + 2 log2(N). A half accepted is recorded
        before the other is split further; its messages reach Segment before the other half's accepted ones
        (moments apart, each with its own timestamp).
        """
        answered: list[tuple[Units, SendOutcome, Refusal]] = []
        for half in _halves(batch):
            if _out_of_time(deadline):
                _record_accepted(results, answered)
                return False
            answer = self._post(connection, half, deadline)
            meaning = refusal(answer.status, ok=answer.ok, messages=_count(half))
            if meaning is Refusal.SOURCE or (meaning is Refusal.NONE and not answer.ok and answer.retryable):
                _record_accepted(results, answered)  # what was accepted stays delivered; the rest comes back
                return self._take(connection, half, answer, deadline, results)
            answered.append((half, answer, meaning))
        (_, _, left), (_, _, right) = answered
        if bisect(left, right, accepted=any(result.ok for result in results.values())) is Refusal.SOURCE:
            _record(results, batch, refused_all(refused.status))
            return False
        for half, answer, meaning in answered:  # what was accepted first: it shows the source works
            if meaning is Refusal.NONE:
                self._take(connection, half, answer, deadline, results)
        for half, answer, meaning in answered:
            if meaning is not Refusal.NONE and not self._take(connection, half, answer, deadline, results):
                return False
        return True

    def _post(self, connection: Connection, batch: Units, deadline: float) -> SendOutcome:
        """One batch to Segment (with the client's retries), timed and logged (never the write key)."""
        started = time.monotonic()
        messages = [delivery.message for unit in batch for delivery in unit]
        answer = self._segment.send(connection.write_key, connection.region, messages, deadline)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        if answer.requests and self._on_segment_request is not None:
            self._on_segment_request(elapsed_ms)
        logger.debug(
            "segment batch",
            extra={
                "region": connection.region,
                "messages": len(messages),
                "status": answer.status,
                "requests": answer.requests,
                "ms": elapsed_ms,
            },
        )
        return answer

    def _settle(self, claims: Mapping[Slot, C], settled: Settlement) -> bool:
        """Mark delivered facts SENT, release the others, forget those of erased events; False when the marks
        could not be written."""
        self._store.release([claims[slot] for slot in settled.releases])
        if settled.forgets:
            self._store.forget([claims[slot] for slot in settled.forgets])
        marks = settled.marks
        if not marks:
            return True
        try:
            self._store.mark_sent([(claims[slot], mid, settled.generation(slot)) for slot, mid in marks])
        except UnavailableError as exc:
            logger.warning("could not mark facts sent", extra={"facts": len(marks), "error": str(exc)})
            return False
        return True


def _out_of_time(deadline: float) -> bool:
    """Whether too little time is left to start another Segment request."""
    return time.monotonic() + MIN_ATTEMPT_S > deadline


def _record(results: dict[str, SendResult], batch: Units, result: SendResult) -> None:
    for unit in batch:
        for delivery in unit:
            results[delivery.message_id] = result


def _count(batch: Units) -> int:
    return sum(len(unit) for unit in batch)


def _halves(batch: Units) -> tuple[Units, Units]:
    """A refused batch's two halves: whole events on each side (an event's messages stay together, so a bad
    event is in one half only); one event's messages split between them."""
    if len(batch) > 1:
        middle = len(batch) // 2
        return batch[:middle], batch[middle:]
    [unit] = batch
    middle = len(unit) // 2
    return [[delivery] for delivery in unit[:middle]], [[delivery] for delivery in unit[middle:]]


def _record_accepted(results: dict[str, SendResult], answered: Sequence[tuple[Units, SendOutcome, Refusal]]) -> None:
    for half, answer, _ in answered:
        if answer.ok:
            _record(results, half, SendResult(True, False, answer.reason))
