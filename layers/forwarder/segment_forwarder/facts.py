"""The dedup core (pure: no AWS, no HTTP, no clock): what an event claims, and what each answer means.

Every event needs a few *facts*, each a "once" fact of one visitor that lives in one item of the dedup table:

============  =====================  ==========================================================================
kind          key                    delivered by
============  =====================  ==========================================================================
IDENTIFY      ``IDENTIFY``           the visitor's first Identify (any event kind; carries the user id if the
                                     first event had one)
LINK          ``IDENTIFY#U#<user>``  an Identify with ``userId``, once per (visitor, user) - or by the first
                                     Identify itself when that one recorded the same user id
ASSIGNMENT    ``ASSIGN#<test>``      "Experiment Viewed" with the first variant
CONVERSION    ``CONV#<conversion>``  "Conversion Triggered" of a one-per-visitor conversion
EVENT         ``EVENT#<event_id>``   "Conversion Triggered" of a conversion sent with an ``event_id``
============  =====================  ==========================================================================

A conversion with neither is always sent, under its delivery id. The first claim of a fact records its
*content* (the message without ``messageId`` and ``context``); every send of the fact, by any later event, sends
that recorded content under the fact's one message id (UUIDv5 of workspace, visitor and key).

The workspace's settings (``workspace_settings.WorkspaceSettings``, an input: ``settings`` maps a workspace id
to them, a workspace not in it has the defaults) shape what is claimed and sent, never a key or a message id:

* ``screen`` skips an event before anything is claimed: its own kind not forwarded (``not_forwarded``), or its
  context does not grant the consent category (``no_consent``); a later event is then still the first;
* ``needs_of`` leaves out the Identify and the link when Identify is not forwarded;
* ``anonymous_id`` and ``spec_names`` shape the *content* built for a claim (so a fact keeps what its first
  claim saw, whatever the settings are when it is resent); ``ip`` and ``user_agent`` shape the *context* of the
  sending event.

One call (an HTTP request or an SQS batch) goes through four steps; the caller does the I/O in between::

    events = [e for e in events if screen(e, settings[e.workspace_id]) is None]   # the others are skipped
    needs = needs_all(events, settings)             # each event's facts and contents, built once
    requests = claim_requests(events, settings, needs=needs)    # each distinct fact once, first event's content
    answers = {r.slot: store.claim(r) for r in requests}        # CLAIMED / SENT / IN_FLIGHT / UNAVAILABLE ...
    plan = plan_call(events, answers, settings, needs=needs)    # per event: deliveries, earlier ones it needs
    settled = settle(plan, results)                 # facts to mark SENT, to release, to forget
    outcomes = settled.final(marked=store.mark(settled.marks))  # each event's outcome, once the marks are written

What a claim answer means for an event:

* ``SENT``: delivered before - nothing to send for it.
* ``CLAIMED``: this call owns the fact and sends its recorded content - once, by the first event of the call
  that needs it; later events of the call that need it wait for that delivery.
* ``IN_FLIGHT``: another attempt holds it. For the event's *primary* fact (its own fact; for an identify event
  its Identify and link) the event is retried later, nothing sent; for a visitor's identity fact the Track goes
  ahead, and the event comes back later all the same (``complete`` is False) to make sure that fact was
  delivered: an event is done only when every fact it needs is recorded SENT.
* ``UNAVAILABLE`` / ``INVALID``: the table failed (retry later) or refused the request (never succeeds).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from .events import Event
from .messages import (
    MAX_MESSAGE_BYTES,
    Content,
    Message,
    conversion_triggered_content,
    experiment_viewed_content,
    identify_content,
    message_id,
    message_size,
    with_delivery,
)
from .workspace_settings import DEFAULT_SETTINGS, WorkspaceSettings

SettingsOf = Mapping[str, WorkspaceSettings]  # workspace id -> its settings (a workspace not in it: the defaults)
# The settings under which an event's messages are largest: the bridged anonymous id adds the visitor id; every
# other default already sends the most (all kinds, spec names, the context as given).
WIDEST_SETTINGS = WorkspaceSettings(anonymous_id="segment")
# What the context of a message too large with its whole context keeps, after ``consent`` (always kept) and while
# the message fits, in this order; ``library`` is always set.
FALLBACK_CONTEXT_KEYS = ("ip", "userAgent", "locale", "timezone")


class FactKind(enum.StrEnum):
    """The kinds of "once" facts; the value is the prefix of the fact's key."""

    IDENTIFY = "IDENTIFY"
    LINK = "IDENTIFY#U"
    ASSIGNMENT = "ASSIGN"
    CONVERSION = "CONV"
    EVENT = "EVENT"


@dataclass(frozen=True, slots=True)
class Fact:
    """A "once" fact about a visitor: a kind and the id it is about (user, test, conversion or event id)."""

    kind: FactKind
    name: str = ""

    @property
    def key(self) -> str:
        """The fact's key (``IDENTIFY``, ``IDENTIFY#U#u-42``, ``ASSIGN#t-1``, ...); message ids derive from it."""
        return self.kind.value if self.kind is FactKind.IDENTIFY else f"{self.kind.value}#{self.name}"

    @property
    def per_visitor(self) -> bool:
        """Whether the fact lives as long as visitor facts do (else as long as an ``event_id`` idempotency record)."""
        return self.kind is not FactKind.EVENT


IDENTIFY = Fact(FactKind.IDENTIFY)


@dataclass(frozen=True, slots=True)
class Slot:
    """One fact of one visitor of one workspace: one item of the dedup table, one message id forever."""

    workspace_id: str
    visitor_id: str
    fact: Fact

    @property
    def message_id(self) -> str:
        """The messageId every send of this fact carries while the visitor was never erased (generation 0)."""
        return message_id(self.workspace_id, self.visitor_id, self.fact.key)

    def message_id_in(self, generation: int) -> str:
        """The messageId of this fact in the visitor's ``generation`` (its number of erasures)."""
        return message_id(self.workspace_id, self.visitor_id, self.fact.key, generation)

    @property
    def identity(self) -> Slot:
        """The visitor's IDENTIFY slot: its item also holds the visitor's erasure (time and generation)."""
        return self if self.fact == IDENTIFY else Slot(self.workspace_id, self.visitor_id, IDENTIFY)


class ClaimState(enum.Enum):
    """What the dedup table answered to a claim."""

    CLAIMED = "claimed"  # this call owns the fact and must send it
    SENT = "sent"  # delivered before
    IN_FLIGHT = "in_flight"  # another attempt holds a live lease
    UNAVAILABLE = "unavailable"  # the table could not be reached or throttled: retry later
    INVALID = "invalid"  # the table refused the request itself: it never succeeds
    ERASED = "erased"  # IDENTIFY only: the visitor was erased after every event of the call that needs it
    ABSENT = "absent"  # IDENTIFY read (not claimed): no item, the visitor was never identified nor erased


@dataclass(frozen=True, slots=True)
class ClaimAnswer:
    """A claim's answer: the state and the content the fact records (this call's, if it created the fact).

    ``generation``: for IDENTIFY, the visitor's number of erasures (its messageIds derive from it); for another
    fact found SENT, the generation it was delivered in (a fact of an older generation is an erased one that
    the erase has not deleted yet). ``erased_at_ms``: for IDENTIFY, when the visitor was last erased (0: never).
    """

    state: ClaimState
    content: Content | None = None
    reason: str = ""
    generation: int = 0
    erased_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class Need:
    """A fact an event needs, the content the event would record for it, and whether it is the event's purpose."""

    slot: Slot
    content: Content
    primary: bool


def _slot(event: Event, fact: Fact) -> Slot:
    return Slot(event.workspace_id, event.visitor_id, fact)


def own_fact(event: Event) -> Fact | None:
    """The event's own fact, or None for a conversion that is forwarded on every call."""
    if event.kind == "assignment":
        return Fact(FactKind.ASSIGNMENT, event.test_id)
    if event.kind == "conversion":
        if event.one_per_visitor:
            return Fact(FactKind.CONVERSION, event.conversion_id)
        if event.event_id is not None:
            return Fact(FactKind.EVENT, event.event_id)
        return None
    return IDENTIFY


def _segment_anonymous_id(event: Event, settings: WorkspaceSettings) -> str | None:
    """The site's anonymous id to use as ``anonymousId``: only when the workspace bridges to it."""
    return event.segment_anonymous_id if settings.anonymous_id == "segment" else None


def track_content(event: Event, settings: WorkspaceSettings = DEFAULT_SETTINGS) -> Content:
    """The content of an assignment's or a conversion's Track, as this event would record it."""
    if event.kind == "assignment":
        return experiment_viewed_content(
            event.visitor_id,
            user_id=event.user_id,
            timestamp=event.timestamp,
            test_id=event.test_id,
            variant_id=event.variant_id,
            test_name=event.test_name,
            variant_name=event.variant_name,
            spec_names=settings.spec_names,
            segment_anonymous_id=_segment_anonymous_id(event, settings),
        )
    if event.kind == "conversion":
        return conversion_triggered_content(
            event.visitor_id,
            user_id=event.user_id,
            timestamp=event.timestamp,
            conversion_id=event.conversion_id,
            conversion_type=event.conversion_type,
            origin_url=event.origin_url,
            segment_anonymous_id=_segment_anonymous_id(event, settings),
        )
    raise ValueError("an identify event has no Track")


def needs_of(event: Event, settings: WorkspaceSettings = DEFAULT_SETTINGS) -> tuple[Need, ...]:
    """The facts an event needs, in the order their messages go out: Identify, link, then the Track's fact.

    Without Identify among the workspace's ``events`` a Track needs neither the Identify nor the link (they are
    not claimed, so once Identify is forwarded again the visitor's next event sends its first Identify). An
    event ``screen`` skips needs nothing; this function does not check that.
    """
    identify = event.kind == "identify"
    needs: list[Need] = []
    if settings.identifies:
        content = _identify(event, event.user_id, settings)  # the link's Identify is the same message
        needs.append(Need(_slot(event, IDENTIFY), content, primary=identify))
        if event.user_id is not None:
            link = Fact(FactKind.LINK, event.user_id)
            needs.append(Need(_slot(event, link), content, primary=identify))
    own = own_fact(event)
    if own is not None and own.kind is not FactKind.IDENTIFY:
        needs.append(Need(_slot(event, own), track_content(event, settings), primary=True))
    return tuple(needs)


def largest_message(event: Event) -> int:
    """Size (as Segment measures it) of the largest message this event could send, with its own content, under
    any workspace settings (``WIDEST_SETTINGS``: settings only ever make a message smaller, except the bridged
    anonymous id, which adds the visitor id).

    Checked at the edge, before anything is claimed (the workspace's settings are not known there): an event
    whose message would be over Segment's limit is refused (HTTP 413, SQS dead-letter queue) instead of failing
    later.
    """
    contents = [need.content for need in needs_of(event, WIDEST_SETTINGS)]
    if own_fact(event) is None:
        contents.append(track_content(event, WIDEST_SETTINGS))
    longest_id = "00000000-0000-0000-0000-000000000000"
    return max(message_size(with_delivery(content, longest_id, event.context)) for content in contents)


def _identify(event: Event, user_id: str | None, settings: WorkspaceSettings) -> Content:
    return identify_content(
        event.visitor_id,
        user_id=user_id,
        timestamp=event.timestamp,
        segment_anonymous_id=_segment_anonymous_id(event, settings),
    )


def settings_of(settings: SettingsOf | None, event: Event) -> WorkspaceSettings:
    """The settings of the event's workspace (the defaults when ``settings`` has none for it)."""
    return (settings or {}).get(event.workspace_id, DEFAULT_SETTINGS)


Needs = Sequence[Sequence[Need]]  # per event of a call, in order: what ``needs_of`` gives under its settings


def needs_all(events: Sequence[Event], settings: SettingsOf | None = None) -> tuple[tuple[Need, ...], ...]:
    """Each event's needs under its workspace's settings: built once per call, and given to ``claim_requests``
    and ``plan_call`` so that each message content is built once per event::

        needs = needs_all(events, settings)
        requests = claim_requests(events, settings, needs=needs)
        ...
        plan = plan_call(events, answers, settings, confirmed, needs=needs)
    """
    return tuple(needs_of(event, settings_of(settings, event)) for event in events)


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """One claim to make: a fact, and the content to record if the claim creates it.

    For IDENTIFY, ``received_ms`` is the latest receipt among the call's events of the visitor (an erasure
    after it refuses the claim: ``ERASED``), and ``probe`` asks to read the item, not to claim it (the
    workspace does not forward Identify, but the item holds the visitor's erasure)."""

    slot: Slot
    content: Content
    received_ms: int = 0
    probe: bool = False


def claim_requests(
    events: Sequence[Event], settings: SettingsOf | None = None, *, needs: Needs | None = None
) -> list[ClaimRequest]:
    """Each distinct fact the events need, once, with the content of the first event (in order) that needs it,
    built under its workspace's settings; and every visitor's IDENTIFY (claimed, or a ``probe``), which tells
    whether and when the visitor was erased. ``needs``: ``needs_all(events, settings)``, when the caller has it."""
    requests: dict[Slot, ClaimRequest] = {}
    received: dict[Slot, int] = {}
    for event, event_needs in zip(events, needs_all(events, settings) if needs is None else needs, strict=True):
        identity = _slot(event, IDENTIFY)
        received[identity] = max(received.get(identity, 0), event.received_ms)
        for need in event_needs:
            requests.setdefault(need.slot, ClaimRequest(need.slot, need.content))
        requests.setdefault(identity, ClaimRequest(identity, {}, probe=True))
    return [
        replace(request, received_ms=received[slot]) if slot in received else request
        for slot, request in requests.items()
    ]


def to_confirm(answers: Mapping[Slot, ClaimAnswer]) -> list[Slot]:
    """The IDENTIFY slots to read again (consistently) after the claims, before anything is sent: those this call
    does not hold while it claimed another fact of the visitor (an erase may have come between the two), and
    every probe that went with a claim. An erase cannot take an IDENTIFY this call holds (it answers
    ``in_flight``), and a call that claimed nothing records nothing."""
    claimed = {slot.identity for slot, answer in answers.items() if answer.state is ClaimState.CLAIMED}
    return [
        slot
        for slot, answer in answers.items()
        if slot.fact == IDENTIFY
        and slot in claimed
        and answer.state in (ClaimState.SENT, ClaimState.IN_FLIGHT, ClaimState.ABSENT)
    ]


Status = Literal["delivered", "duplicate", "skipped", "retry", "rejected"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one event.

    ``retry``: not delivered now, a later attempt may succeed (HTTP: queue it; SQS: the record comes back).
    ``rejected``: can never succeed as it is (SQS: the dead-letter queue, with ``reason``).
    ``complete`` False (with ``delivered`` or ``duplicate``): what this call could send went out, but a fact the
    event needs is not recorded SENT yet (another attempt holds it, or the marks could not be written); the
    event must come back later to make sure (HTTP: a copy is queued; SQS: the record is retried).
    ``retry_after``: seconds Segment (or the circuit breaker) asked to wait before a retry, if it said.
    """

    status: Status
    message_ids: tuple[str, ...] = ()
    reason: str = ""
    complete: bool = True
    retry_after: float | None = None


NOT_FORWARDED = Outcome("skipped", reason="not_forwarded")
NO_CONSENT = Outcome("skipped", reason="no_consent")
ERASED = Outcome("skipped", reason="erased")
ERASE_IN_PROGRESS = Outcome("retry", reason="erase_in_progress")


def screen(event: Event, settings: WorkspaceSettings) -> Outcome | None:
    """The outcome of an event its workspace's settings skip before anything is claimed, else None.

    ``skipped``/``not_forwarded``: the kind of message the event exists for is not among ``events`` (an identify
    event when Identify is not forwarded, an assignment without Experiment Viewed, a conversion without
    Conversion Triggered): nothing at all is sent for it, not even the visitor's first Identify.
    ``skipped``/``no_consent``: ``consent_category`` is set and the event's context does not grant it. Nothing
    is claimed either way, so a later event that is forwarded is still the visitor's first.
    """
    if not settings.forwards(event.kind):
        return NOT_FORWARDED
    if not settings.grants(event.context):
        return NO_CONSENT
    return None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message to send, and the facts it delivers (none for a conversion without a fact)."""

    message: Message
    slots: tuple[Slot, ...]

    @property
    def message_id(self) -> str:
        """The message's id."""
        return str(self.message["messageId"])


@dataclass(frozen=True, slots=True)
class EventPlan:
    """One event's part of a call: the deliveries it sends (in order), those of earlier events it needs, or a
    ``verdict`` reached without sending anything for it; ``waits`` when a fact it needs is held elsewhere;
    ``needs``: the facts it needs, so that its outcome can say whether they are all recorded (``Settlement``)."""

    deliveries: tuple[Delivery, ...] = ()
    depends_on: tuple[str, ...] = ()
    verdict: Outcome | None = None
    waits: bool = False
    needs: tuple[Slot, ...] = ()  # every fact the event needs (``needs_of``), whether sent now or not


@dataclass(frozen=True, slots=True)
class CallPlan:
    """What a call sends, per event, and the facts to settle without a send."""

    events: tuple[EventPlan, ...]
    mark_now: tuple[tuple[Slot, str], ...] = ()  # delivered already (by the message with that id)
    release_now: tuple[Slot, ...] = ()  # claimed by this call but not to be sent now
    forget_now: tuple[Slot, ...] = ()  # claimed by this call for erased events only: to delete, never record
    generations: Mapping[Slot, int] = field(default_factory=dict)  # per IDENTIFY slot: the visitor's generation


@dataclass(slots=True)
class _Draft:
    message: Message
    slots: list[Slot] = field(default_factory=list)


def _message(content: Content, message_id: str, event: Event, settings: WorkspaceSettings) -> Message:
    """The message of a fact: its recorded content, with the sending event's context as the settings shape it.

    The content may have been recorded by another event, so content and context were never measured together.
    Should they be over Segment's limit together, the message goes with a smaller context rather than being
    refused: ``consent`` always (Segment enforces consent downstream with it; a message never leaves without the
    consent it was given), then ``ip``, ``userAgent``, ``locale`` and ``timezone`` (``FALLBACK_CONTEXT_KEYS``),
    each as the settings shape it and only while the message stays within the limit, and ``library``; the rest
    (``page``, ``campaign``, ...) is left out. Were the consent alone too large beside the content, the message
    goes over the limit and Segment refuses it (the event is then rejected, never sent without its consent).
    """
    context = settings.shape_context(event.context)
    message = with_delivery(content, message_id, context)
    if message_size(message) <= MAX_MESSAGE_BYTES:
        return message
    fallback = {key: context[key] for key in ("consent",) if key in context}
    for key in FALLBACK_CONTEXT_KEYS:
        if key in context:
            candidate = {**fallback, key: context[key]}
            if message_size(with_delivery(content, message_id, candidate)) <= MAX_MESSAGE_BYTES:
                fallback = candidate
    return with_delivery(content, message_id, fallback)


def covers_link(identify: ClaimAnswer | None, user_id: str) -> bool:
    """Whether the visitor's first Identify, as recorded, carries ``user_id`` (and so is the link too)."""
    return identify is not None and identify.content is not None and identify.content.get("userId") == user_id


def _failure(answer: ClaimAnswer) -> Outcome | None:
    if answer.state is ClaimState.UNAVAILABLE:
        return Outcome("retry", reason=f"dedup_unavailable: {answer.reason}")
    if answer.state is ClaimState.INVALID:
        return Outcome("rejected", reason=f"dedup_refused: {answer.reason}")
    return None


def identity_of(slot: Slot, answers: Mapping[Slot, ClaimAnswer], confirmed: Mapping[Slot, ClaimAnswer]) -> ClaimAnswer:
    """What the call knows of the visitor's IDENTIFY item: the read made after the claims when there is one."""
    return confirmed.get(slot.identity) or answers[slot.identity]


def _verdict(
    event: Event, needs: Sequence[Need], answers: Mapping[Slot, ClaimAnswer], confirmed: Mapping[Slot, ClaimAnswer]
) -> Outcome | None:
    """The event's outcome when nothing is to be sent for it, else None. In order: the visitor's IDENTIFY could not
    be read (retry) or refused; the visitor was erased after the event was received (``skipped``/``erased``: never
    sent, nothing recorded); another fact failed; a fact found SENT belongs to an erased generation the erase has
    not deleted yet, or an erase came between the claims (``retry``: the event comes back); the event's own
    fact is held elsewhere."""
    identity_slot = _slot(event, IDENTIFY)
    identity = identity_of(identity_slot, answers, confirmed)
    failure = _failure(identity)
    if failure is not None:
        return failure
    if identity.state is ClaimState.ERASED or event.received_ms < identity.erased_at_ms:
        return ERASED
    for need in needs:
        failure = _failure(answers[need.slot])
        if failure is not None:
            return failure
    if identity.generation != answers[identity_slot].generation:
        return ERASE_IN_PROGRESS  # erased between the claims and the read after them (see the erased check)
    for need in needs:
        answer = answers[need.slot]
        if need.slot.fact != IDENTIFY and answer.state is ClaimState.SENT and answer.generation != identity.generation:
            return ERASE_IN_PROGRESS
    if any(need.primary and answers[need.slot].state is ClaimState.IN_FLIGHT for need in needs):
        return Outcome("retry", reason="in_flight")
    return None


def _erased(event: Event, answers: Mapping[Slot, ClaimAnswer], confirmed: Mapping[Slot, ClaimAnswer]) -> bool:
    identity = identity_of(_slot(event, IDENTIFY), answers, confirmed)
    return identity.state is ClaimState.ERASED or event.received_ms < identity.erased_at_ms


def _tainted(
    events: Sequence[Event], needs: Needs, answers: Mapping[Slot, ClaimAnswer], confirmed: Mapping[Slot, ClaimAnswer]
) -> set[Slot]:
    """Facts this call claimed with the content of an event received before the visitor's erasure (the first
    event that needs a fact gives its content, ``claim_requests``): never sent nor kept, whoever else needs
    them (a retry of a dropped event and a later event of the visitor in one batch)."""
    tainted: set[Slot] = set()
    seen: set[Slot] = set()
    for event, event_needs in zip(events, needs, strict=True):
        for need in event_needs:
            if need.slot in seen:
                continue
            seen.add(need.slot)
            answer = answers.get(need.slot)
            claimed = answer is not None and answer.state is ClaimState.CLAIMED and answer.content == need.content
            if claimed and _erased(event, answers, confirmed):
                tainted.add(need.slot)
    return tainted


def plan_call(
    events: Sequence[Event],
    answers: Mapping[Slot, ClaimAnswer],
    settings: SettingsOf | None = None,
    confirmed: Mapping[Slot, ClaimAnswer] | None = None,
    *,
    needs: Needs | None = None,
) -> CallPlan:
    """Decide, from the claim answers, which messages each event sends (``answers`` holds every slot of
    ``claim_requests(events, settings)``; ``confirmed`` the reads of ``to_confirm(answers)``; ``needs``:
    ``needs_all(events, settings)``, when the caller has it).

    Each fact claimed by this call is sent once, by the first event (in order) that needs it and has no
    verdict; a later event that needs it depends on that delivery. A link covered by the first Identify
    rides on it (or, when that Identify is already SENT, is marked delivered at once). Message ids are those of
    the visitor's generation (``ClaimAnswer.generation`` of its IDENTIFY). A fact claimed only for events of an
    erased visitor is forgotten (deleted), not released: nothing of an erased event stays in the table.
    """
    confirmed = confirmed or {}
    carriers: dict[Slot, _Draft] = {}  # the delivery of this call that carries each claimed fact
    plans: list[tuple[list[_Draft], list[_Draft], Outcome | None, bool, tuple[Slot, ...]]] = []
    mark_now: list[tuple[Slot, str]] = []
    kept: set[Slot] = set()  # slots needed by an event that is not erased
    generations: dict[Slot, int] = {}
    all_needs = needs_all(events, settings) if needs is None else needs
    tainted = _tainted(events, all_needs, answers, confirmed)
    for event, event_needs in zip(events, all_needs, strict=True):
        workspace_settings = settings_of(settings, event)
        verdict = _verdict(event, event_needs, answers, confirmed)
        if verdict is None and any(need.slot in tainted for need in event_needs):
            verdict = ERASE_IN_PROGRESS  # comes back without the erased event, and records its own content
        identity_slot = _slot(event, IDENTIFY)
        generation = identity_of(identity_slot, answers, confirmed).generation
        generations[identity_slot] = generation
        if verdict is not ERASED:
            kept.update(need.slot for need in event_needs)
        own: list[_Draft] = []
        earlier: list[_Draft] = []
        waits = False
        if verdict is None:
            for need in event_needs:
                answer = answers[need.slot]
                if answer.state is not ClaimState.CLAIMED:
                    waits = waits or answer.state is ClaimState.IN_FLIGHT  # not primary: the Track goes ahead
                    continue
                carrier = carriers.get(need.slot)
                if carrier is None and need.slot.fact.kind is FactKind.LINK:
                    identify_slot = _slot(event, IDENTIFY)
                    identify = answers[identify_slot]
                    if covers_link(identify, need.slot.fact.name):
                        if identify.state is ClaimState.CLAIMED:
                            carrier = carriers[identify_slot]  # the Identify this call sends carries the link
                            carrier.slots.append(need.slot)
                            carriers[need.slot] = carrier
                        elif identify.state is ClaimState.SENT:
                            if all(slot != need.slot for slot, _ in mark_now):  # once, whoever else needs it
                                mark_now.append((need.slot, identify_slot.message_id_in(generation)))
                        else:  # IN_FLIGHT: its claimer sends the Identify that links; released below
                            waits = True
                        continue
                if carrier is None:
                    content = answer.content if answer.content is not None else need.content
                    message = _message(content, need.slot.message_id_in(generation), event, workspace_settings)
                    carrier = _Draft(message, [need.slot])
                    carriers[need.slot] = carrier
                    own.append(carrier)
                elif carrier not in own and carrier not in earlier:
                    earlier.append(carrier)
            if own_fact(event) is None:
                if not event.delivery_id:
                    raise ValueError("a conversion without a dedup fact needs a delivery id")
                content = track_content(event, workspace_settings)
                own.append(_Draft(_message(content, event.delivery_id, event, workspace_settings)))
        plans.append((own, earlier, verdict, waits, tuple(need.slot for need in event_needs)))
    frozen: dict[int, Delivery] = {}

    def freeze(draft: _Draft) -> Delivery:
        return frozen.setdefault(id(draft), Delivery(draft.message, tuple(draft.slots)))

    event_plans = tuple(
        EventPlan(tuple(map(freeze, own)), tuple(freeze(d).message_id for d in earlier), verdict, waits, slots)
        for own, earlier, verdict, waits, slots in plans
    )
    marked = {slot for slot, _ in mark_now}
    unsent = [
        slot
        for slot, answer in answers.items()
        if answer.state is ClaimState.CLAIMED and slot not in carriers and slot not in marked
    ]
    # IDENTIFY is forgotten only when it recorded an erased event's content (it becomes the tombstone it was);
    # else released: its item holds the visitor's erasure (an erase cannot take it while held)
    forget = tuple(slot for slot in unsent if slot in tainted or (slot not in kept and slot.fact != IDENTIFY))
    release = tuple(slot for slot in unsent if slot not in forget)
    return CallPlan(event_plans, tuple(mark_now), release, forget, generations)


@dataclass(frozen=True, slots=True)
class SendResult:
    """What Segment made of one delivery: ``ok``, else whether a later attempt may succeed, why, and how long
    Segment asked to wait (seconds) if it said."""

    ok: bool
    retryable: bool = True
    reason: str = ""
    retry_after: float | None = None


NOT_SENT = SendResult(False, True, "not_sent")

# Segment's answers that refuse the write key itself (every message of the source would be refused alike).
KEY_REFUSED = frozenset({401, 403})
# Segment's answers that refuse a whole request for one message it cannot take.
SPOILED_BY_ONE = frozenset({400, 413, 422})
REFUSED_ALL = "segment_refused_all"


class Refusal(enum.Enum):
    """What Segment's answer to one request (of one workspace) means for its messages (``refusal``)."""

    NONE = "none"  # accepted, or failed in a way a later attempt may not (the result stands as answered)
    SOURCE = "source"  # the source refuses everything: retry every message of the workspace later, send no more
    SPLIT = "split"  # refused whole for some message: send each half to find it
    MESSAGE = "message"  # this message alone is refused: it can never be accepted


def refusal(status: int | None, *, ok: bool, messages: int) -> Refusal:
    """How to take an answer to a request of ``messages`` messages.

    401/403 refuse the write key: a configuration problem of the workspace, never a message's, so never split.
    400/413/422 refuse the request for one message: split it (``bisect``), until a message refused alone (its
    neighbours accepted) is found, which is then refused for good.
    """
    if ok or status is None:
        return Refusal.NONE
    if status in KEY_REFUSED:
        return Refusal.SOURCE
    if status in SPOILED_BY_ONE:
        return Refusal.SPLIT if messages > 1 else Refusal.MESSAGE
    return Refusal.NONE


def bisect(left: Refusal, right: Refusal, *, accepted: bool) -> Refusal:
    """What the answers to the two halves of a refused request mean together.

    Both halves refused, while the source has accepted nothing in this call (``accepted``), is the source
    refusing everything, not one bad message (a bad message is in one half only): SOURCE, so nothing is split
    further and the workspace's messages are retried later. Once the source has accepted something it works,
    and both halves are split further (two bad messages, or an event whose every message is refused). NONE
    otherwise: each half's answer is taken on its own.
    """
    if Refusal.SOURCE in (left, right):
        return Refusal.SOURCE
    if left is not Refusal.NONE and right is not Refusal.NONE and not accepted:
        return Refusal.SOURCE
    return Refusal.NONE


def refused_all(status: int | None) -> SendResult:
    """The result of each message of a workspace whose source refuses everything: not delivered, retried later
    with backoff (it is the workspace's configuration, not the message), with the reason its health shows."""
    return SendResult(False, True, f"{REFUSED_ALL}: {status}")


@dataclass(frozen=True, slots=True)
class Settlement:
    """The outcome of each event, and the facts to mark SENT (with the id of the message that delivered them)
    or to release (so that a retry can claim them at once)."""

    outcomes: tuple[Outcome, ...]
    marks: tuple[tuple[Slot, str], ...]
    releases: tuple[Slot, ...]
    forgets: tuple[Slot, ...] = ()
    generations: Mapping[Slot, int] = field(default_factory=dict)  # per IDENTIFY slot, as in ``CallPlan``
    needs_marks: tuple[bool, ...] = ()  # per event: whether it needs a fact among ``marks``

    def generation(self, slot: Slot) -> int:
        """The generation a fact is marked SENT in: its visitor's."""
        return self.generations.get(slot.identity, 0)

    def final(self, *, marked: bool) -> tuple[Outcome, ...]:
        """The outcomes once the marks were written (``marked``), or not: then every event that needs a fact
        among them is not ``complete`` (it comes back, and its resend, with the same ids and content, marks
        them)::

            recorded = write(settled.marks)
            outcomes = settled.final(marked=recorded)
        """
        if marked:
            return self.outcomes
        return tuple(
            replace(outcome, complete=False) if needs else outcome
            for outcome, needs in zip(self.outcomes, self.needs_marks, strict=True)
        )


def settle(plan: CallPlan, results: Mapping[str, SendResult]) -> Settlement:
    """Outcomes from what Segment answered per message id (a delivery without a result was not sent), as they
    are when the marks are written (``Settlement.final`` says what they are when not).

    An event is delivered when its own deliveries and those it depends on are; ``retry`` when one failed but a
    later attempt may succeed; ``rejected`` when one of its own can never be accepted; ``duplicate`` when it
    had nothing to send. A delivered or duplicate event that waits on a fact held elsewhere is not complete.
    """
    marks = list(plan.mark_now)
    releases = list(plan.release_now)
    outcomes: list[Outcome] = []
    for event in plan.events:
        for delivery in event.deliveries:
            if results.get(delivery.message_id, NOT_SENT).ok:
                marks.extend((slot, delivery.message_id) for slot in delivery.slots)
            else:
                releases.extend(delivery.slots)
        if event.verdict is not None:
            outcomes.append(event.verdict)
            continue
        own = [results.get(d.message_id, NOT_SENT) for d in event.deliveries]
        needed = [results.get(message_id, NOT_SENT) for message_id in event.depends_on]
        refused = next((r for r in own if not r.ok and not r.retryable), None)
        failed = next((r for r in own + needed if not r.ok), None)
        if refused is not None:
            outcomes.append(Outcome("rejected", reason=refused.reason))
        elif failed is not None:
            waits = [r.retry_after for r in own + needed if not r.ok and r.retry_after is not None]
            outcomes.append(Outcome("retry", reason=failed.reason, retry_after=max(waits, default=None)))
        elif event.deliveries:
            ids = tuple(d.message_id for d in event.deliveries)
            outcomes.append(Outcome("delivered", ids, complete=not event.waits))
        else:
            outcomes.append(Outcome("duplicate", complete=not event.waits))
    marked = {slot for slot, _ in marks}
    needs_marks = tuple(any(slot in marked for slot in event.needs) for event in plan.events)
    return Settlement(tuple(outcomes), tuple(marks), tuple(releases), plan.forget_now, plan.generations, needs_marks)
