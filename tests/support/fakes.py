"""In-memory fakes of the forwarder's three ports, for fast domain tests of the real ``Forwarder``.

``MemoryStore`` keeps DynamoDB's claim rules (absent, or PENDING with an expired lease and not expired, is
claimable; the first claim's content and message id are kept; a failed claim answers with the item as it
stands), ``MemorySegment`` records what it accepted (Segment keeps every message, repeats included) and
``MemoryConnections`` answers from a dict. ``Faults`` decides, per call, what goes wrong::

    faults = Faults()
    faults.crash_at = "after_send"          # raise Crash (a process death) at that point of the next call
    store, segment = MemoryStore(clock, faults), MemorySegment(faults)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from segment_forwarder.connections import Connection
from segment_forwarder.facts import IDENTIFY, ClaimAnswer, ClaimRequest, ClaimState, Slot
from segment_forwarder.segment import SendOutcome
from segment_forwarder.table import DedupUnavailableError
from tests.support.model import Received


class Crash(BaseException):
    """The execution environment dies here: nothing after this point of the call happens."""


class Clock:
    """A wall clock the test moves (seconds)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Faults:
    """What goes wrong, consumed as the call meets each point.

    ``crash_at``: "after_claim" | "after_send" | "after_mark" | None; ``unavailable``: slots whose next claim
    answers UNAVAILABLE; ``segment``: answers for the next sends ("ok", "fail", "accept_then_fail",
    "reject"); ``mark``: "fail" (nothing written), "partial" (half written, then fail) or "ok";
    ``pause``: when set, the next send waits for ``resume`` after setting ``paused``.
    """

    crash_at: str | None = None
    unavailable: set[Slot] = field(default_factory=set)
    segment: list[str] = field(default_factory=list)
    mark: str = "ok"
    pause: bool = False
    paused: threading.Event = field(default_factory=threading.Event)
    resume: threading.Event = field(default_factory=threading.Event)

    def crash(self, point: str) -> None:
        if self.crash_at == point:
            self.crash_at = None
            raise Crash(point)


@dataclass
class Item:
    """A fact as the table holds it (``status`` "" is an erasure's tombstone, on IDENTIFY only)."""

    status: str
    content: dict[str, Any]
    message_id: str
    lease_until: float
    token: str
    expires_at: float
    attempts: int = 1
    generation: int = 0
    erased_at_ms: int = 0


@dataclass(frozen=True)
class MemoryClaim:
    slot: Slot
    answer: ClaimAnswer
    token: str = ""


class MemoryStore:
    """The dedup table's rules, in memory."""

    def __init__(self, clock: Clock, faults: Faults, lease_s: float = 90, ttl_s: float = 400 * 86_400) -> None:
        self.items: dict[Slot, Item] = {}
        self._clock = clock
        self._faults = faults
        self._lease = lease_s
        self._ttl = ttl_s
        self._tokens = 0
        self._lock = threading.Lock()

    def claim_all(self, requests: Sequence[ClaimRequest], *, precheck: bool = False) -> dict[Slot, MemoryClaim]:
        claims: dict[Slot, MemoryClaim] = {}
        for request in requests:
            read = self._read(request)
            if request.probe or (precheck and read.answer.state in (ClaimState.SENT, ClaimState.ERASED)):
                claims[request.slot] = read
            else:
                claims[request.slot] = self._claim(request)
        self._faults.crash("after_claim")
        return claims

    def confirm(self, requests: Sequence[ClaimRequest]) -> dict[Slot, MemoryClaim]:
        return {request.slot: self._read(request) for request in requests}

    def _answer(self, state: ClaimState, item: Item) -> ClaimAnswer:
        return ClaimAnswer(state, item.content or None, generation=item.generation, erased_at_ms=item.erased_at_ms)

    def _read(self, request: ClaimRequest) -> MemoryClaim:
        """What a consistent read of the item answers (the precheck, a probe, a confirmation)."""
        item = self.items.get(request.slot)
        if item is None or item.expires_at <= self._clock():
            return MemoryClaim(request.slot, ClaimAnswer(ClaimState.ABSENT))
        if item.status == "":
            state = ClaimState.ERASED if item.erased_at_ms > request.received_ms else ClaimState.ABSENT
        else:
            state = ClaimState.SENT if item.status == "SENT" else ClaimState.IN_FLIGHT
        return MemoryClaim(request.slot, self._answer(state, item))

    def erase(self, workspace_id: str, visitor_id: str, now_ms: int) -> None:
        """The erase: a tombstone of the next generation on IDENTIFY, every other fact not held deleted."""
        with self._lock:
            slots = [s for s in self.items if (s.workspace_id, s.visitor_id) == (workspace_id, visitor_id)]
            identity = Slot(workspace_id, visitor_id, IDENTIFY)
            old = self.items.get(identity)
            if old is not None and old.status == "PENDING" and old.lease_until >= self._clock():
                raise DedupUnavailableError("in_flight")
            generation = (old.generation if old else 0) + 1
            self.items[identity] = Item("", {}, "", 0, "", self._clock() + 21 * 86_400, 0, generation, now_ms)
            for slot in slots:
                item = self.items[slot]
                if slot == identity or (item.status == "PENDING" and item.lease_until >= self._clock()):
                    continue
                if item.generation < generation:
                    del self.items[slot]

    def _claim(self, request: ClaimRequest) -> MemoryClaim:
        slot, now = request.slot, self._clock()
        if slot in self._faults.unavailable:
            self._faults.unavailable.discard(slot)
            return MemoryClaim(slot, ClaimAnswer(ClaimState.UNAVAILABLE, reason="ThrottlingException"))
        with self._lock:
            item = self.items.get(slot)
            self._tokens += 1
            token = f"t{self._tokens}"
            if item is None or item.expires_at <= now:
                self.items[slot] = Item("PENDING", request.content, "", now + self._lease, token, now + self._ttl)
                return MemoryClaim(slot, ClaimAnswer(ClaimState.CLAIMED, request.content), token)
            if item.status == "" and item.erased_at_ms <= request.received_ms:  # a tombstone, erased before
                item.status, item.content, item.expires_at = "PENDING", request.content, now + self._ttl
                item.lease_until, item.token, item.attempts = now + self._lease, token, 1
                return MemoryClaim(slot, self._answer(ClaimState.CLAIMED, item), token)
            if item.status == "PENDING" and item.lease_until < now:
                item.lease_until, item.token, item.attempts = now + self._lease, token, item.attempts + 1
                return MemoryClaim(slot, self._answer(ClaimState.CLAIMED, item), token)
        return self._read(request)

    def mark_sent(self, marks: Iterable[tuple[MemoryClaim, str, int]]) -> None:
        marks = list(marks)
        slots = [claim.slot for claim, _, _ in marks]
        if len(set(slots)) != len(slots):  # BatchWriteItem refuses a request that names an item twice
            raise DedupUnavailableError("ValidationException")
        mode, self._faults.mark = self._faults.mark, "ok"
        if mode == "fail":
            raise DedupUnavailableError("ProvisionedThroughputExceededException")
        written = marks[: len(marks) // 2] if mode == "partial" else marks
        with self._lock:
            for claim, message_id, generation in written:
                item = self.items.get(claim.slot)
                if item is None:  # deleted meanwhile: the unconditional put writes it again
                    item = self.items[claim.slot] = Item("", claim.answer.content or {}, "", 0, "", 1e12)
                item.status, item.message_id, item.token, item.generation = "SENT", message_id, "", generation
        if mode == "partial":
            raise DedupUnavailableError("1 items unprocessed")
        self._faults.crash("after_mark")

    def forget(self, claims: Sequence[MemoryClaim]) -> None:
        with self._lock:
            for claim in claims:
                item = self.items.get(claim.slot)
                if not claim.token or item is None or item.token != claim.token:
                    continue
                if claim.slot.fact != IDENTIFY:
                    del self.items[claim.slot]
                elif item.erased_at_ms:  # back to the tombstone it was
                    item.status, item.content, item.token, item.lease_until = "", {}, "", 0

    def release(self, claims: Sequence[MemoryClaim]) -> None:
        with self._lock:
            for claim in claims:
                item = self.items.get(claim.slot)
                if item is not None and item.status == "PENDING" and item.token == claim.token and claim.token:
                    item.lease_until = 0


class MemorySegment:
    """Segment's batch API: accepts or fails as ``faults.segment`` says (``ok`` when it says nothing)."""

    def __init__(self, faults: Faults) -> None:
        self.received: list[Received] = []
        self.requests = 0
        self._faults = faults
        self._lock = threading.Lock()

    def send(self, write_key: str, region: str, messages: list[dict[str, Any]], deadline: float) -> SendOutcome:
        if self._faults.pause:
            self._faults.pause = False
            self._faults.paused.set()
            self._faults.resume.wait(timeout=10)
        with self._lock:
            self.requests += 1
            mode = self._faults.segment.pop(0) if self._faults.segment else "ok"
            if mode in ("ok", "accept_then_fail"):
                # what reaches Segment is the JSON on the wire: a copy, never the caller's objects
                self.received.extend(Received(write_key, region, json.loads(json.dumps(m))) for m in messages)
        self._faults.crash("after_send")
        if mode == "ok":
            return SendOutcome(True, False, 200, "delivered", 1)
        if mode == "reject":
            return SendOutcome(False, False, 400, "segment answered 400", 1)
        return SendOutcome(False, True, None, "segment unreachable: ReadTimeoutError", 1)


class MemoryConnections:
    """Workspace connections from a dict (a missing workspace is not connected)."""

    def __init__(self, connections: Mapping[str, Connection]) -> None:
        self._connections = dict(connections)

    def get(self, workspace_id: str) -> Connection | None:
        return self._connections.get(workspace_id)

    def connect(self, workspace_id: str, connection: Connection) -> None:
        """Connect (or reconnect, with other settings) a workspace."""
        self._connections[workspace_id] = connection
