"""The product's invariants (its flows, what goes to Segment, dedup and delivery), checked from the outside: what was
asked, what Segment received.

A pure module (no I/O, no clock, nothing of ``segment_forwarder``): the expected facts are derived from the
product contract alone, so the check holds whatever the implementation does. The soak (``python -m soak``) and
in-process tests feed it the same plain inputs::

    from soak.invariants import Connection, Parked, Request, evaluate

    result = evaluate(
        requests=[
            Request("assignment", {"workspace_id": "demo", "visitor_id": "v1", "test_id": "t1", "variant_id": "a"},
                    outcome="delivered", sent_at=1.0, answered_at=1.2, message_ids=("m-identify", "m-viewed")),
        ],
        sink_events=stack.sink.events(),           # [{"region", "write_key", "received_at", "message"}, ...]
        connections=[Connection("demo", "key-us", "us", at=float("-inf"))],
        parked=[Parked("assignment", body_text, {"error_code": "retries_exhausted"})],
        cache_s=2.0,                               # ConnectionCacheSeconds: how late a change may be seen
    )
    result.violations                              # [] when every invariant holds
    result.repeats                                 # records beyond the first of a messageId (Segment drops them)

**Facts**, once each per workspace and visitor ``v`` (``_Fact.kind``):

* ``identify``: the first-seen Identify, ``anonymousId`` = ``v``, ``userId`` when the first event carried one;
* ``link u``: one Identify with ``userId`` = ``u`` per user id the visitor's events carried, unless the first
  Identify already carried ``u`` (then it *is* the link: a second message for ``u`` is a violation);
* ``assign t``: one "Experiment Viewed" per test ``t``, with the first variant;
* ``conv c``: one "Conversion Triggered" per conversion ``c`` sent with ``one_per_visitor``;
* ``event e``: one "Conversion Triggered" per ``event_id`` ``e`` (conversions without ``one_per_visitor``);
* ``call``: one "Conversion Triggered" per accepted call of any other conversion (a call with ``n`` uncertain
  attempts before its answer may have been forwarded up to ``n + 1`` times: no dedup key protects it).

**Which requests require their facts**: those answered ``delivered`` or ``duplicate``, ``queued`` (HTTP 202) and
``consumed`` (put on a queue) ones, unless a record of theirs was parked in a dead-letter queue (accounted for,
not lost) or the workspace was disconnected at a moment a queue could still deliver them (within ``cache_s`` of a
change): then the queued and consumed ones may be skipped, and so may the identity facts of answered ones (the
core may finish those from a queued copy). Requests that ``failed`` (never accepted) or had uncertain attempts
(transport error, 5xx) may have been forwarded: their facts may appear. A request answered ``skipped`` (or
``rejected``) without an uncertain attempt must leave no trace.

**Content** of a messageId = the message without its envelope (``ENVELOPE_FIELDS``: ``context``, ``sentAt``, ...):
ids, type, event name, properties, traits and timestamp; all records of a messageId must carry one content.
Segment keeps the first record of a messageId and drops the rest, so the first content decides which facts
arrived (a link whose user only a dropped record carried is lost) and is the one whose values are checked.
They come from the event that sends it: its ``userId``, ``timestamp`` and conversion properties together from
one request of the fact; the variant from one request sent before the fact was known to be delivered (a
``duplicate`` answer, or a ``delivered`` answer listing the messageId) — the first variant.

**Parked records** carry their reason (``error_code``), with one exception the product cannot avoid: SQS's own
redrive policy moves a record after ``MaxReceiveCount`` receives without one when the function never finished its
last receive (a crash or a timeout). So a record without a reason is accepted only from a queue whose function
was killed during the run (``crashed``), and counted apart (``parked_by_sqs``).

Every rule a ``Violation`` can name is in ``RULES``.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

Kind = Literal["identify", "assignment", "conversion"]
Outcome = Literal["delivered", "duplicate", "skipped", "queued", "consumed", "failed", "rejected"]
Need = Literal["required", "optional", "forbidden"]

EXPERIMENT_VIEWED = "Experiment Viewed"
CONVERSION_TRIGGERED = "Conversion Triggered"
# Envelope fields: set per send (or by Segment), not part of what a messageId stands for.
ENVELOPE_FIELDS = frozenset(
    {"context", "sentAt", "receivedAt", "originalTimestamp", "integrations", "writeKey", "_metadata", "version"}
)
QUEUE_OUTCOMES = frozenset({"queued", "consumed"})  # accepted; delivery continues from a queue
ANSWERED_OUTCOMES = frozenset({"delivered", "duplicate"})
DENIED_OUTCOMES = frozenset({"skipped", "rejected"})  # answered without forwarding anything

LOST = "lost"
SPLIT = "fact_under_several_message_ids"
CONTENTS = "message_id_with_several_contents"
NOT_FIRST = "content_not_from_the_first_request"
MISMATCH = "content_from_no_request"
UNEXPECTED = "unexpected_message"
SKIPPED_SENT = "sent_for_a_skipped_event"
UNKNOWN_KEY = "unknown_write_key"
WRONG_REGION = "wrong_region_for_key"
TWO_WORKSPACES = "message_id_in_two_workspaces"
MALFORMED = "malformed_message"
ANSWER_MISSING = "answered_id_not_received"
ANSWER_MISMATCH = "answered_id_of_another_visitor"
PARKED_NO_REASON = "parked_without_reason"
PARKED_UNKNOWN = "parked_record_of_no_request"

RULES: dict[str, str] = {
    LOST: "a fact an accepted request implies never reached Segment (and its record was not parked)",
    SPLIT: "one fact reached Segment under more than one messageId",
    CONTENTS: "one messageId reached Segment with more than one content",
    NOT_FIRST: "a value (e.g. the variant) came from a request sent after the fact was already delivered",
    MISMATCH: "values that no single request of the fact gave",
    UNEXPECTED: "a message no request asked for",
    SKIPPED_SENT: "a message only events answered skipped (not connected) or rejected could have caused",
    UNKNOWN_KEY: "a message sent with a write key no workspace ever had",
    WRONG_REGION: "a message sent to a region its workspace never had with that write key",
    TWO_WORKSPACES: "one messageId sent with the keys of two workspaces",
    MALFORMED: "a message without messageId or anonymousId",
    ANSWER_MISSING: "a messageId a delivered answer listed never reached Segment",
    ANSWER_MISMATCH: "a messageId a delivered answer listed belongs to another workspace or visitor",
    PARKED_NO_REASON: "a dead-lettered record without its reason (error_code), of a function that never crashed",
    PARKED_UNKNOWN: "a dead-lettered record that no request accounts for",
}


# -- inputs ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """One request a producer made (with all its attempts), as the producer saw it.

    ``sent_at`` (first attempt) and ``answered_at`` (final answer; HTTP only) use the clock of ``Connection.at``.
    ``message_ids`` are a ``delivered`` answer's ids; ``uncertain_attempts`` counts the attempts that ended
    without an answer ruling out processing (transport error, 5xx): all of them for a ``failed`` request.
    ``label`` names the request in reports (and must be unique when given)::

        Request("conversion", body, "consumed", sent_at=12.5)                   # put on the ConversionQueue
        Request("identify", body, "delivered", 3.0, 3.1, ("m1",), uncertain_attempts=1)   # after a 502
    """

    kind: Kind
    body: Mapping[str, Any]
    outcome: Outcome
    sent_at: float = 0.0
    answered_at: float | None = None
    message_ids: tuple[str, ...] = ()
    uncertain_attempts: int = 0
    label: str = ""

    @property
    def workspace(self) -> str:
        """The body's workspace_id."""
        return str(self.body["workspace_id"])

    @property
    def visitor(self) -> str:
        """The body's visitor_id."""
        return str(self.body["visitor_id"])

    @property
    def user(self) -> str | None:
        """The body's user_id, if any."""
        user = self.body.get("user_id")
        return None if user is None else str(user)


@dataclass(frozen=True, slots=True)
class Connection:
    """From ``at`` on, ``workspace`` is connected with ``write_key`` in ``region``; both None: disconnected.

    A workspace is disconnected before its first Connection: give the initial state ``at=float("-inf")``.
    """

    workspace: str
    write_key: str | None
    region: str | None
    at: float = -math.inf


@dataclass(frozen=True, slots=True)
class Parked:
    """A record found in a dead-letter queue: the kind of its queue, its body text, its message attributes."""

    kind: Kind
    body: str
    attributes: Mapping[str, str]


# -- outputs ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant: the rule (a key of ``RULES``), the fact, the messageIds involved, the evidence."""

    rule: str
    fact: str
    message_ids: tuple[str, ...] = ()
    detail: str = ""

    def __str__(self) -> str:
        ids = f" [{', '.join(self.message_ids)}]" if self.message_ids else ""
        return f"{self.rule}: {self.fact}{ids}{' — ' + self.detail if self.detail else ''}"


@dataclass(slots=True)
class Evaluation:
    """What ``evaluate`` found: the violations and the counts a report shows."""

    violations: list[Violation] = field(default_factory=list)
    deliveries: int = 0  # sink records
    message_ids: int = 0  # distinct messageIds received
    repeats: int = 0  # records beyond the first of their messageId (Segment drops them)
    facts_required: int = 0
    facts_optional: int = 0  # facts of parked, possibly skipped, failed or uncertain requests only
    parked: int = 0
    parked_with_reason: int = 0
    parked_by_sqs: int = 0  # without a reason, from a queue whose function was killed: SQS's redrive policy

    @property
    def ok(self) -> bool:
        """True when no invariant is broken."""
        return not self.violations

    def by_rule(self) -> dict[str, int]:
        """Number of violations per rule, by rule name."""
        return dict(sorted(Counter(v.rule for v in self.violations).items()))


# -- values ----------------------------------------------------------------------------------------------------


def timestamp_ms(value: object) -> int | None:
    """An ISO-8601 timestamp with a zone as milliseconds since the epoch (truncated), else None.

    >>> timestamp_ms("2026-01-01T01:00:00.1239+01:00") == timestamp_ms("2026-01-01T00:00:00.123Z")
    True
    """
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return (moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def content_of(message: Mapping[str, Any]) -> str:
    """The content a messageId stands for, as canonical JSON: the message without its envelope fields.

    >>> content_of({"type": "identify", "anonymousId": "v", "context": {"ip": "192.0.2.1"}, "sentAt": "..."})
    '{"anonymousId":"v","type":"identify"}'
    """
    kept = {key: value for key, value in message.items() if key not in ENVELOPE_FIELDS}
    return json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


ABSENT: Any = _Marker("<absent>")  # the field is not in the message / the request does not give it
_ANY: Any = _Marker("<any>")  # a request without timestamp: the time of receipt, any value

Offer = Callable[["Request"], Sequence[object]]  # the values one request allows for one field


def _message_value(message: Mapping[str, Any], name: str) -> object:
    if name.startswith("properties."):
        props = message.get("properties")
        return props.get(name.removeprefix("properties."), ABSENT) if isinstance(props, Mapping) else ABSENT
    value = message.get(name, ABSENT)
    return timestamp_ms(value) if name == "timestamp" and value is not ABSENT else value


def _timestamp(request: Request) -> Sequence[object]:
    raw = request.body.get("timestamp")
    return [_ANY] if raw is None else [timestamp_ms(raw)]


def _user(request: Request) -> Sequence[object]:
    return [ABSENT if request.user is None else request.user]


def _body(name: str) -> Offer:
    return lambda request: [request.body.get(name, ABSENT)]


def _body_or_absent(name: str) -> Offer:
    """Optional names: absent, or the request's (a resend under another request's variant drops them)."""
    return lambda request: [request.body.get(name, ABSENT), ABSENT]


type _Group = Mapping[str, Offer]  # fields that one request must give together

_SENDER: _Group = {"userId": _user, "timestamp": _timestamp}
_IDENTIFY_GROUPS: tuple[_Group, ...] = (_SENDER,)
_ASSIGNMENT_GROUPS: tuple[_Group, ...] = (
    _SENDER,
    {"properties.test_id": _body("test_id"), "properties.experiment_id": _body("test_id")},
    {"properties.test_name": _body_or_absent("test_name"), "properties.experiment_name": _body_or_absent("test_name")},
    {
        "properties.variant_id": _body("variant_id"),
        "properties.variation_id": _body("variant_id"),
        "properties.variant_name": _body_or_absent("variant_name"),
        "properties.variation_name": _body_or_absent("variant_name"),
    },
)
_CONVERSION_GROUPS: tuple[_Group, ...] = (
    {
        **_SENDER,
        "properties.conversion_id": _body("conversion_id"),
        "properties.conversion_type": _body("conversion_type"),
        "properties.origin_url": _body("origin_url"),
    },
)


def _gives(request: Request, group: _Group, message: Mapping[str, Any]) -> bool:
    """True when ``request`` gives every value of ``group`` that ``message`` carries."""
    for name, offer in group.items():
        offered = offer(request)
        if _ANY not in offered and _message_value(message, name) not in offered:
            return False
    return True


def _same_body(request: Mapping[str, Any], parked: Mapping[str, Any]) -> bool:
    """A parked body is the request's (a queued HTTP event gains the time of receipt as its timestamp)."""
    if {k: v for k, v in request.items() if k != "timestamp"} != {k: v for k, v in parked.items() if k != "timestamp"}:
        return False
    return "timestamp" not in request or timestamp_ms(request["timestamp"]) == timestamp_ms(parked.get("timestamp"))


def _short(message: Mapping[str, Any]) -> str:
    name = message.get("event") or message.get("type")
    return f"{name} anon={message.get('anonymousId')} user={message.get('userId', '-')}"


# -- facts -----------------------------------------------------------------------------------------------------

_NEED_RANK: dict[Need, int] = {"required": 2, "optional": 1, "forbidden": 0}


@dataclass(slots=True)
class _Fact:
    """An expected fact of one workspace and visitor and the requests that imply it."""

    workspace: str
    visitor: str
    kind: str  # identify, link, assign, conv, event, call
    key: str  # user id, test id, conversion id, event id, or the call's label; "" for identify
    conversion: str | None = None  # conv / event / call: the conversion_id
    sources: list[tuple[Request, Need]] = field(default_factory=list)
    extra_slots: int = 0  # call: messages its uncertain attempts may have caused

    @property
    def need(self) -> Need:
        """The strongest need of any source (required > optional > forbidden)."""
        return max((need for _r, need in self.sources), key=_NEED_RANK.__getitem__, default="forbidden")

    @property
    def live(self) -> list[Request]:
        """Requests that may have sent this fact (not the skipped or rejected ones)."""
        return [request for request, need in self.sources if need != "forbidden"]

    def describe(self) -> str:
        """``demo/v-1 assign t-1``."""
        return f"{self.workspace}/{self.visitor} {self.kind}{' ' + self.key if self.key else ''}"


@dataclass(slots=True)
class _Received:
    """Every record of one messageId."""

    records: int = 0
    contents: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # canonical content -> one message
    workspaces: set[str] = field(default_factory=set)

    @property
    def messages(self) -> list[Mapping[str, Any]]:
        """One message per distinct content, in the order they first arrived."""
        return list(self.contents.values())

    @property
    def kept(self) -> Mapping[str, Any]:
        """The content Segment keeps: the first to arrive (it drops later records of the messageId)."""
        return next(iter(self.contents.values()))


def _augment[A, B](start: A, edges: Mapping[A, Sequence[B]], mate: dict[A, B], back: dict[B, A], seen: set[B]) -> bool:
    """Kuhn's augmenting path from ``start``: a vertex of one side matched before stays matched (to another)."""
    for other in edges[start]:
        if other not in seen:
            seen.add(other)
            if other not in back or _augment(back[other], edges, mate, back, seen):
                mate[start], back[other] = other, start
                return True
    return False


def _match(items: Sequence[str], compatible: Mapping[str, Sequence[int]], required: Sequence[int]) -> dict[str, int]:
    """A maximum matching of items to slots that covers as many ``required`` slots as any matching can.

    Augmenting paths keep matched vertices matched, so the required slots matched first stay matched while the
    remaining items are matched to any slot.
    """
    items_of: dict[int, list[str]] = defaultdict(list)
    for item in items:
        for slot in compatible[item]:
            items_of[slot].append(item)
    slot_of: dict[str, int] = {}
    item_in: dict[int, str] = {}
    for slot in required:
        _augment(slot, items_of, item_in, slot_of, set())
    for item in items:
        if item not in slot_of:
            _augment(item, compatible, slot_of, item_in, set())
    return dict(slot_of)


class _Evaluator:
    """One evaluation; ``run`` returns the Evaluation."""

    def __init__(
        self,
        requests: Sequence[Request],
        sink_events: Sequence[Mapping[str, Any]],
        connections: Sequence[Connection],
        parked: Sequence[Parked],
        cache_s: float,
        crashed: Collection[str] = (),
    ) -> None:
        self.requests = list(requests)
        self.sink_events = sink_events
        self.connections = sorted(connections, key=lambda c: c.at)
        self.parked = parked
        self.crashed = frozenset(crashed)
        self.cache_s = cache_s
        self.result = Evaluation()
        self.parked_requests: set[int] = set()
        self.facts: dict[tuple[str, str], dict[tuple[str, str], _Fact]] = defaultdict(dict)  # (ws, v) -> facts
        self.received: dict[str, _Received] = {}
        self.delivered_at: dict[str, float] = {}  # messageId -> first delivered answer listing it
        # (ws, v) -> identify messageIds; (ws, v, test_id) / (ws, v, conversion_id) -> track messageIds
        self.identifies: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.viewed: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        self.converted: dict[tuple[str, str, str], list[str]] = defaultdict(list)

    def run(self) -> Evaluation:
        self.match_parked()
        self.derive_facts()
        self.index_sink()
        self.check_answers()
        for workspace, visitor in sorted(set(self.facts) | set(self.identifies)):
            self.check_identities(workspace, visitor)
        for workspace, visitor, test in sorted(self.assignment_keys() | set(self.viewed)):
            self.check_assignment(workspace, visitor, test)
        for workspace, visitor, conversion in sorted(self.conversion_keys() | set(self.converted)):
            self.check_conversion(workspace, visitor, conversion)
        return self.result

    def violation(self, rule: str, fact: str, message_ids: Iterable[str] = (), detail: str = "") -> None:
        self.result.violations.append(Violation(rule, fact, tuple(sorted(set(message_ids))), detail))

    # -- connections -------------------------------------------------------------------------------------------

    def credentials(self) -> tuple[dict[str, str], dict[str, set[tuple[str, str]]]]:
        """Write key -> workspace, and every (write key, region) each workspace ever had."""
        owner: dict[str, str] = {}
        pairs: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for change in self.connections:
            if change.write_key is None or change.region is None:
                continue
            if owner.setdefault(change.write_key, change.workspace) != change.workspace:
                raise ValueError(f"a write key of {change.workspace} also belongs to {owner[change.write_key]}")
            pairs[change.workspace].add((change.write_key, change.region))
        return owner, pairs

    def may_be_skipped_after(self, workspace: str, moment: float) -> bool:
        """True when a function may have found ``workspace`` not connected at some time after ``moment``."""
        changes = [(c.at, c.write_key is not None) for c in self.connections if c.workspace == workspace]
        states = [(-math.inf, False), *changes]  # disconnected before the first connection
        ends = [at for at, _connected in changes] + [math.inf]
        # A disconnected period may be seen from its start until cache_s after its end.
        return any(
            not connected and end + self.cache_s > moment for (_at, connected), end in zip(states, ends, strict=True)
        )

    # -- requests -> facts -------------------------------------------------------------------------------------

    def match_parked(self) -> None:
        """Each parked record accounts for one request that went through a queue with the same body."""
        for record in self.parked:
            self.result.parked += 1
            reason = str(record.attributes.get("error_code") or "").strip()
            if reason:
                self.result.parked_with_reason += 1
            elif record.kind in self.crashed:
                self.result.parked_by_sqs += 1
            else:
                self.violation(PARKED_NO_REASON, f"{record.kind} record {record.body[:120]!r}")
            try:
                body = json.loads(record.body)
            except ValueError:
                body = None
            index = self.parked_request(record.kind, body) if isinstance(body, dict) else None
            if index is None:
                self.violation(PARKED_UNKNOWN, f"{record.kind} record {record.body[:120]!r}", detail=reason)
            else:
                self.parked_requests.add(index)

    def parked_request(self, kind: str, body: Mapping[str, Any]) -> int | None:
        """The request a parked record accounts for: one with the same body that reached a queue, preferably one
        the producer put there or was answered queued, else one with uncertain attempts, else an answered one (an
        HTTP call answered before all its facts were recorded may queue a copy of itself)."""
        candidates = [
            (request.outcome not in QUEUE_OUTCOMES, request.uncertain_attempts == 0, index)
            for index, request in enumerate(self.requests)
            if index not in self.parked_requests
            and request.kind == kind
            and (request.outcome not in DENIED_OUTCOMES or request.uncertain_attempts > 0)
            and _same_body(request.body, body)
        ]
        return min(candidates)[2] if candidates else None

    def need_of(self, index: int, request: Request) -> Need:
        if request.outcome in DENIED_OUTCOMES:
            return "optional" if request.uncertain_attempts else "forbidden"
        if index in self.parked_requests:
            return "optional"  # accounted for by its parked record (a delivered answer's ids are checked apart)
        if request.outcome in ANSWERED_OUTCOMES:
            return "required"
        if request.outcome in QUEUE_OUTCOMES:
            return "optional" if self.may_be_skipped_after(request.workspace, request.sent_at) else "required"
        return "optional"  # failed: never accepted, perhaps forwarded

    def fact(self, workspace: str, visitor: str, kind: str, key: str = "", conversion: str | None = None) -> _Fact:
        facts = self.facts[(workspace, visitor)]
        if (kind, key) not in facts:
            facts[(kind, key)] = _Fact(workspace, visitor, kind, key, conversion)
        return facts[(kind, key)]

    def derive_facts(self) -> None:
        for index, request in enumerate(self.requests):
            need = self.need_of(index, request)
            ws, visitor, body = request.workspace, request.visitor, request.body
            identity_need = need
            if need == "required" and request.outcome in ANSWERED_OUTCOMES:
                # An answered event may finish its identity facts from a queued copy, which a disconnection skips.
                identity_need = "optional" if self.may_be_skipped_after(ws, request.sent_at) else need
            implied = [(self.fact(ws, visitor, "identify"), identity_need)]
            if request.user is not None:
                implied.append((self.fact(ws, visitor, "link", request.user), identity_need))
            if request.kind == "assignment":
                implied.append((self.fact(ws, visitor, "assign", str(body["test_id"])), need))
            elif request.kind == "conversion":
                conversion = str(body["conversion_id"])
                if body.get("one_per_visitor"):
                    implied.append((self.fact(ws, visitor, "conv", conversion, conversion), need))
                elif "event_id" in body:
                    implied.append((self.fact(ws, visitor, "event", str(body["event_id"]), conversion), need))
                else:
                    call = self.fact(ws, visitor, "call", request.label or f"#{index}", conversion)
                    # Failed: every attempt was uncertain, one of them is the call's own slot.
                    extra = request.uncertain_attempts - (1 if request.outcome == "failed" else 0)
                    call.extra_slots += max(extra, 0)
                    implied.append((call, need))
            for fact, fact_need in implied:
                fact.sources.append((request, fact_need))
        for facts in self.facts.values():
            for fact in facts.values():
                if fact.need == "required":
                    self.result.facts_required += 1
                elif fact.need == "optional":
                    self.result.facts_optional += 1

    def assignment_keys(self) -> set[tuple[str, str, str]]:
        return {(ws, v, key) for (ws, v), facts in self.facts.items() for kind, key in facts if kind == "assign"}

    def conversion_keys(self) -> set[tuple[str, str, str]]:
        return {
            (ws, v, fact.conversion)
            for (ws, v), facts in self.facts.items()
            for fact in facts.values()
            if fact.conversion is not None
        }

    # -- what Segment received ---------------------------------------------------------------------------------

    def index_sink(self) -> None:
        owner, pairs = self.credentials()
        for record in self.sink_events:
            self.result.deliveries += 1
            message = record.get("message") or {}
            key, region = str(record.get("write_key")), str(record.get("region"))
            mid = message.get("messageId")
            if not isinstance(mid, str) or not mid or not isinstance(message.get("anonymousId"), str):
                self.violation(MALFORMED, content_of(message)[:200])
                continue
            workspace = owner.get(key)
            if workspace is None:
                self.violation(UNKNOWN_KEY, _short(message), [mid], f"sent to {region}")
                continue
            if (key, region) not in pairs[workspace]:
                regions = sorted(r for k, r in pairs[workspace] if k == key)
                detail = f"sent to {region}; with this key the workspace was in {regions}"
                self.violation(WRONG_REGION, f"{workspace} {_short(message)}", [mid], detail)
            received = self.received.setdefault(mid, _Received())
            received.records += 1
            received.contents.setdefault(content_of(message), message)
            received.workspaces.add(workspace)
        self.result.message_ids = len(self.received)
        self.result.repeats = sum(r.records - 1 for r in self.received.values())
        for mid, received in self.received.items():
            first = received.messages[0]
            if len(received.workspaces) > 1:
                self.violation(TWO_WORKSPACES, _short(first), [mid], str(sorted(received.workspaces)))
            if len(received.contents) > 1:
                self.violation(CONTENTS, _short(first), [mid], " | ".join(sorted(received.contents)))
            self.classify(min(received.workspaces), mid, first)

    def classify(self, workspace: str, mid: str, message: Mapping[str, Any]) -> None:
        visitor = str(message["anonymousId"])
        props = message.get("properties")
        props = props if isinstance(props, Mapping) else {}
        track = message.get("type") == "track"
        if message.get("type") == "identify":
            self.identifies[(workspace, visitor)].append(mid)
        elif track and message.get("event") == EXPERIMENT_VIEWED and "test_id" in props:
            self.viewed[(workspace, visitor, str(props["test_id"]))].append(mid)
        elif track and message.get("event") == CONVERSION_TRIGGERED and "conversion_id" in props:
            self.converted[(workspace, visitor, str(props["conversion_id"]))].append(mid)
        else:
            self.violation(UNEXPECTED, f"{workspace}/{visitor} {_short(message)}", [mid], "no message of this product")

    def check_answers(self) -> None:
        """Every id a delivered answer listed reached Segment, for that workspace and visitor."""
        for request in self.requests:
            if request.outcome != "delivered":
                continue
            where = f"{request.workspace}/{request.visitor} {request.kind} {request.label}".rstrip()
            for mid in request.message_ids:
                if request.answered_at is not None:
                    self.delivered_at[mid] = min(self.delivered_at.get(mid, math.inf), request.answered_at)
                received = self.received.get(mid)
                if received is None:
                    self.violation(ANSWER_MISSING, where, [mid])
                    continue
                visitors = {str(m["anonymousId"]) for m in received.messages}
                if received.workspaces != {request.workspace} or visitors != {request.visitor}:
                    detail = f"received for {sorted(received.workspaces)} {sorted(visitors)}"
                    self.violation(ANSWER_MISMATCH, where, [mid], detail)

    # -- facts vs messages -------------------------------------------------------------------------------------

    def unclaimed(self, fact: _Fact | None, where: str, mids: Sequence[str]) -> None:
        """Messages no live request explains: for a skipped event, or for nothing at all."""
        self.violation(SKIPPED_SENT if fact is not None and fact.sources else UNEXPECTED, where, mids)

    def check_once(self, fact: _Fact | None, where: str, mids: Sequence[str]) -> bool:
        """A one-message fact: present when required, never under two messageIds. True when it has a live source."""
        if fact is None or not fact.live:
            if mids:
                self.unclaimed(fact, where, mids)
            return False
        if not mids and fact.need == "required":
            self.violation(LOST, where)
        if len(mids) > 1:
            self.violation(SPLIT, where, mids)
        return True

    def check_identities(self, workspace: str, visitor: str) -> None:
        """The first-seen Identify once; each user link once, the first Identify's user included."""
        facts = self.facts.get((workspace, visitor), {})
        mids = self.identifies.get((workspace, visitor), [])
        first = facts.get(("identify", ""))
        where = f"{workspace}/{visitor}"
        if first is None or not first.live:
            if mids:
                self.unclaimed(first, f"{where} identify", mids)
            return
        # What Segment keeps decides which facts are there: a later content under the same id is dropped.
        anonymous = [m for m in mids if "userId" not in self.received[m].kept]
        by_user: dict[str, list[str]] = defaultdict(list)
        for mid in mids:
            if "userId" in self.received[mid].kept:
                by_user[str(self.received[mid].kept["userId"])].append(mid)
        links = {key: fact for (kind, key), fact in facts.items() if kind == "link"}
        present = bool(anonymous) or any(by_user[u] and links[u].live for u in links if u in by_user)
        if not present and first.need == "required":
            self.violation(LOST, f"{where} identify")
        if len(anonymous) > 1:
            self.violation(SPLIT, f"{where} identify", anonymous)
        for user in sorted(set(links) | set(by_user)):
            self.check_once(links.get(user), f"{where} link {user}", by_user.get(user, []))
        for mid in mids:
            user_id = self.received[mid].kept.get("userId")
            fact = first if user_id is None else links.get(str(user_id))
            if fact is not None and fact.live:
                self.check_content(fact, mid, _IDENTIFY_GROUPS, first.live)

    def check_assignment(self, workspace: str, visitor: str, test: str) -> None:
        fact = self.facts.get((workspace, visitor), {}).get(("assign", test))
        mids = self.viewed.get((workspace, visitor, test), [])
        if self.check_once(fact, f"{workspace}/{visitor} assign {test}", mids):
            assert fact is not None
            for mid in mids:
                self.check_content(fact, mid, _ASSIGNMENT_GROUPS, fact.live)

    def check_conversion(self, workspace: str, visitor: str, conversion: str) -> None:
        """Match one visitor's conversion messageIds to its facts: one slot each, more for uncertain calls."""
        facts = [f for f in self.facts.get((workspace, visitor), {}).values() if f.conversion == conversion]
        mids = self.converted.get((workspace, visitor, conversion), [])
        slots: list[tuple[_Fact, bool]] = []  # (fact, required)
        for fact in facts:
            if fact.live:
                slots.append((fact, fact.need == "required"))
                slots += [(fact, False)] * fact.extra_slots
        compatible = {
            mid: [i for i, (fact, _req) in enumerate(slots) if self.fits(self.senders(fact, mid), mid)] for mid in mids
        }
        owner = _match(mids, compatible, required=[i for i, (_fact, required) in enumerate(slots) if required])
        taken = set(owner.values())
        for index, (fact, required) in enumerate(slots):
            if required and index not in taken:
                self.violation(LOST, fact.describe())
        for mid in mids:
            if mid in owner:
                fact = slots[owner[mid]][0]
                self.check_content(fact, mid, _CONVERSION_GROUPS, fact.live)
            elif compatible[mid]:
                fact = slots[compatible[mid][0]][0]
                self.violation(SPLIT, fact.describe(), [mid, *(m for m, s in owner.items() if slots[s][0] is fact)])
            else:
                dead = [f for f in facts if not f.live and self.fits([r for r, _n in f.sources], mid)]
                self.unclaimed(dead[0] if dead else None, f"{workspace}/{visitor} conversion {conversion}", [mid])

    def senders(self, fact: _Fact, mid: str) -> list[Request]:
        """Requests that may have sent ``mid`` for ``fact``: a call's message comes from a call made before a
        delivered answer listed it (once-facts keep every live request: a late value is a NOT_FIRST finding)."""
        if fact.kind != "call":
            return fact.live
        delivered = self.delivered_at.get(mid, math.inf)
        return [r for r in fact.live if r.sent_at < delivered]

    def fits(self, requests: Sequence[Request], mid: str) -> bool:
        """True when the content Segment keeps for ``mid`` could be a conversion message of one of ``requests``."""
        kept = self.received[mid].kept
        return all(any(_gives(r, group, kept) for r in requests) for group in _CONVERSION_GROUPS)

    def check_content(self, fact: _Fact, mid: str, groups: Sequence[_Group], sources: Sequence[Request]) -> None:
        """Each group of values Segment keeps must come from one source sent before the fact was known delivered.

        (A later, different content of the messageId is a CONTENTS finding of its own.)
        """
        message = self.received[mid].kept
        done = self.done_at(fact, mid)
        first = [r for r in sources if done is None or r.sent_at < done]
        for group in groups:
            if any(_gives(r, group, message) for r in first):
                continue
            rule = NOT_FIRST if any(_gives(r, group, message) for r in sources) else MISMATCH
            values = {name: _message_value(message, name) for name in group}
            shown = ", ".join(f"{k.removeprefix('properties.')}={v!r}" for k, v in values.items() if v is not ABSENT)
            when = f" (delivered at {done:.3f})" if done is not None else ""
            self.violation(rule, fact.describe(), [mid], f"{shown}; {len(first)} request(s) before delivery{when}")

    def done_at(self, fact: _Fact, mid: str) -> float | None:
        """When the fact was known to be delivered: a delivered answer listing ``mid``, or a duplicate answer."""
        times = [self.delivered_at.get(mid)]
        if fact.kind in ("assign", "conv", "event"):  # the event's own fact: "already forwarded before"
            times += [r.answered_at for r, _need in fact.sources if r.outcome == "duplicate"]
        return min((t for t in times if t is not None), default=None)


def evaluate(
    requests: Sequence[Request],
    sink_events: Sequence[Mapping[str, Any]],
    connections: Sequence[Connection],
    parked: Sequence[Parked] = (),
    *,
    cache_s: float = 0.0,
    crashed: Collection[str] = (),
) -> Evaluation:
    """Check every invariant; see the module docstring. ``sink_events`` are the sink's ``GET /events`` records;
    ``crashed`` the kinds (``assignment``, ...) whose function had a worker killed during the run."""
    return _Evaluator(requests, sink_events, connections, parked, cache_s, crashed).run()
