"""Move parked messages from a kind's dead-letter queue back to its source queue, so that a redriven event is
delivered once, under the messageId its first attempt used (``make redrive``)::

    make redrive KIND=conversion DRY_RUN=1               # local stack: counts by reason, nothing moved or deleted
    make redrive KIND=conversion                         # local stack: move back what can succeed
    make redrive KIND=conversion INCLUDE_PERMANENT=1     # ... and what cannot (after fixing the cause)
    make redrive KIND=identify STACK=segment-forwarder   # a deployed stack (credentials and region: environment)
    python -m ops.redrive assignment --dry-run --endpoint http://127.0.0.1:4566
    python -m ops.redrive conversion --include-permanent --wait 120

The local stack is found at ``http://127.0.0.1:$LOCAL_AWS_PORT`` (default 4566) with its queue names; a deployed
stack's queue URLs come from its outputs (``<Kind>QueueUrl``, ``<Kind>DeadLetterQueueUrl``).

**What is moved.** By default only what can succeed once moved back: a message parked as ``retries_exhausted`` or
``unexpected_error``, or moved by SQS's redrive policy (no ``error_code``), *and* whose body still passes the
function's own validation (``parse_body``, and the Segment message it builds within Segment's limit). Everything
else stays in the DLQ and is counted in the report by why: a permanent reason (``invalid_json``,
``invalid_value``, ..., ``rejected``: Segment refused the message itself), or a body that no longer validates.
Moved back, such a message would be parked again and page again. ``--include-permanent`` (``INCLUDE_PERMANENT=1``)
moves them too: after fixing the cause (a workspace's write key, a newer version that accepts the body).

**What a moved message carries.** Its body, and at most 10 message attributes (SQS's limit): ours, without the
reason (``error_code``, ``error_message``, ``error_field``, ``receive_count``):

* ``delivery_id``: kept; when absent, derived from ``source_message_id`` (else from the DLQ message's id, which
  SQS keeps when its redrive policy moves a message) exactly as the function derives it from an SQS message id,
  so a conversion without ``event_id`` is sent under the messageId of its first attempt;
* ``source_message_id`` (kept, else the DLQ message's id), ``source_kind`` (kept, else the kind),
  ``first_received_at`` (kept when present);
* ``retry_since``: now, in milliseconds since the epoch: a redrive starts a new retry horizon.

Any other attribute (a producer's own) is kept as it is when everything fits in 10; else all of them are folded
into one ``producer_attributes`` String attribute (JSON ``{name: {"DataType", "StringValue" | "BinaryValue"
(base64)}}``) when that is at most ``FOLD_LIMIT_BYTES`` and the message stays within the queue's size; else they
are dropped. The report counts the messages whose producer attributes were folded or dropped.

**Interrupted runs.** A message is deleted from the dead-letter queue only after SQS accepted its copy on the
source queue (a failed delete is retried), so an interrupted run loses nothing: at worst a message is on both
queues, and a later run moves it again. Both copies carry the same ``delivery_id``. An identify, an assignment,
a one-per-visitor conversion and a conversion with an ``event_id`` are facts the function deduplicates: sent once.
A conversion *without* ``event_id`` has no fact: each copy is sent to Segment, under the same messageId (its
delivery id), and Segment drops a repeated messageId only within about 24 hours: run again the same day.

**Others' messages.** Only messages parked before the run started are moved; one parked again during the run (it
still fails) stays for the next run. A message another reader holds (a dry run or a redrive still running, or one
interrupted less than ``MOVE_VISIBILITY_S`` ago) is invisible: the run waits for such messages up to ``--wait``
seconds (default ``DEFAULT_WAIT_S``), printing its progress, moves them when they reappear, and else reports how
many are still in flight and says to run again. A dry run hides each message it looks at for at most
``PEEK_VISIBILITY_S`` and makes it visible again as soon as the scan ends.

Exit status: 0 done, 1 a message could not be moved (or deleted) or the queues could not be reached, 2 bad usage,
3 messages still in flight when the run ended (run again).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from local_stack.template import Template
from segment_forwarder.errors import PayloadTooLargeError, RequestError
from segment_forwarder.events import SCHEMAS, Event, Kind, sqs_delivery_id
from segment_forwarder.facts import largest_message
from segment_forwarder.messages import MAX_MESSAGE_BYTES
from segment_forwarder.records import DELIVERY_ID as DELIVERY_ID_ATTRIBUTE
from segment_forwarder.records import DELIVERY_NONCE as DELIVERY_NONCE_ATTRIBUTE
from segment_forwarder.records import (
    ERROR_CODE,
    ERROR_FIELD,
    ERROR_MESSAGE,
    FIRST_RECEIVED_AT,
    RECEIVE_COUNT,
    RETRY_SINCE,
)
from segment_forwarder.records import SOURCE_KIND as SOURCE_KIND_ATTRIBUTE
from segment_forwarder.records import SOURCE_MESSAGE_ID as SOURCE_MESSAGE_ID_ATTRIBUTE
from segment_forwarder.validation import parse_body

from .stacks import (
    CLIENT_CONFIG,
    LOCAL_CLIENT_CONFIG,
    StackError,
    local_endpoint,
    local_session,
    output_key,
    required,
    stack_outputs,
)

PEEK_VISIBILITY_S = 30  # a dry run hides a message this long at most (it is made visible again when the scan ends)
MOVE_VISIBILITY_S = 60  # time to copy a batch to the source queue and delete it from the DLQ
DEFAULT_WAIT_S = 75.0  # how long a run waits for messages another reader holds (an interrupted run's: 60 s)
POLL_S = 5.0  # how often a waiting run looks again
MAX_RESCANS = 3  # scans in a row for messages that became visible just after a scan
DELETE_ATTEMPTS = 3  # a copied message's delete from the DLQ is tried this often before the run reports it
REASON_ATTRIBUTES = (ERROR_CODE, ERROR_MESSAGE, ERROR_FIELD, RECEIVE_COUNT)
OWN_ATTRIBUTES = (
    DELIVERY_ID_ATTRIBUTE,
    DELIVERY_NONCE_ATTRIBUTE,
    SOURCE_MESSAGE_ID_ATTRIBUTE,
    SOURCE_KIND_ATTRIBUTE,
    FIRST_RECEIVED_AT,
    RETRY_SINCE,
)
PRODUCER_ATTRIBUTES = "producer_attributes"  # a producer's own attributes, folded into one when they do not fit
MAX_ATTRIBUTES = 10  # SQS's limit per message
FOLD_LIMIT_BYTES = 4096
# Parked for a reason a later attempt may not have: an outage that outlasted the horizon, a bug in the function.
# No error_code: SQS's redrive policy moved it (the function could not even read or park it).
RETRYABLE_CODES = frozenset({"retries_exhausted", "unexpected_error"})
EXAMPLES_PER_REASON = 3
NO_ERROR_CODE = "(no error_code: moved by SQS after MaxReceiveCount receives)"

Message = dict[str, Any]
Out = Callable[[str], None]


RedriveError = StackError  # the queues cannot be found or reached; the message says which and why


@dataclass(frozen=True, slots=True)
class QueuePair:
    """A kind's source queue and dead-letter queue, and where they are (for the report)."""

    kind: str
    source_url: str
    dlq_url: str
    where: str


@dataclass(slots=True)
class Report:
    """What a run saw and did. ``by_reason`` counts the messages looked at (dry run) or moved, by ``error_code``;
    ``skipped`` those a run leaves (or a dry run would leave) in the DLQ because they cannot succeed, by why."""

    dry_run: bool
    by_reason: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[Message]] = field(default_factory=dict)
    moved: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failed: dict[str, str] = field(default_factory=dict)  # DLQ message id -> why it was not moved
    not_deleted: int = 0  # copied to the source queue, but still in the DLQ too
    parked_during_run: int = 0
    folded: int = 0  # moved with their producer attributes folded into PRODUCER_ATTRIBUTES
    dropped: int = 0  # moved without their producer attributes (they could not fit)
    in_flight: int | None = 0  # held invisible by another reader when the run ended (None: unknown)
    include_permanent: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed and not self.not_deleted

    @property
    def exit_status(self) -> int:
        """0 done, 1 something could not be moved or deleted, 3 messages still in flight (run again)."""
        if not self.ok:
            return 1
        return 3 if self.in_flight else 0


# -- where the queues are ---------------------------------------------------------------------------------------


def local_queues(kind: str, endpoint: str, template: Template | None = None) -> tuple[Any, QueuePair]:
    """An SQS client of the local stack and the kind's queues there (``make run`` names them from the template)."""
    template = template or Template.load()
    source, dlq = template.queues_of(kind)
    sqs = local_session().client("sqs", endpoint_url=endpoint, config=LOCAL_CLIENT_CONFIG)
    try:
        urls = [sqs.get_queue_url(QueueName=template.physical_name(q))["QueueUrl"] for q in (source, dlq)]
    except ClientError as exc:
        missing = exc.response["Error"].get("Message")
        raise RedriveError(f"the local stack at {endpoint} has no queue {missing}") from None
    except BotoCoreError as exc:
        raise RedriveError(f"the local stack is not reachable at {endpoint} ({exc}); is `make run` running?") from None
    return sqs, QueuePair(kind, urls[0], urls[1], f"the local stack at {endpoint}")


def stack_queues(
    kind: str, stack_name: str, session: Any | None = None, template: Template | None = None
) -> tuple[Any, QueuePair]:
    """An SQS client and the kind's queues of a deployed stack, from its CloudFormation outputs."""
    session = session or boto3.session.Session()
    template = template or Template.load()
    source, dlq = template.queues_of(kind)
    outputs = stack_outputs(stack_name, session)
    source_url, dlq_url = required(outputs, stack_name, output_key(template, source), output_key(template, dlq))
    region = session.region_name or "the default region"
    where = f"stack {stack_name} ({region})"
    return session.client("sqs", config=CLIENT_CONFIG), QueuePair(kind, source_url, dlq_url, where)


# -- can it succeed? --------------------------------------------------------------------------------------------


def body_problem(kind: str, body: str) -> RequestError | None:
    """Why the function would park ``body`` at once as a ``kind`` record (its own validation), or None.

    >>> body_problem("conversion", "{").code
    'invalid_json'
    """
    try:
        parsed = parse_body(SCHEMAS[_kind(kind)], body.encode("utf-8", "surrogatepass"))
        event = Event.from_body(_kind(kind), parsed, datetime.now(UTC), delivery_id="redrive-check")
        if largest_message(event) > MAX_MESSAGE_BYTES:
            message = f"the Segment message built from the body is over {MAX_MESSAGE_BYTES} bytes"
            return PayloadTooLargeError(message, "body")
    except RequestError as exc:
        return exc
    return None


def _kind(kind: str) -> Kind:
    if kind not in SCHEMAS:
        raise ValueError(f"unknown kind {kind!r}")
    return kind


def why_permanent(message: Message, kind: str) -> str | None:
    """Why a parked message cannot succeed once moved back (a line of the report), or None when it can: parked
    for a reason a later attempt may not have (``RETRYABLE_CODES``, or by SQS without a reason) and its body still
    valid."""
    code = _string(message, ERROR_CODE)
    problem = body_problem(kind, str(message.get("Body", "")))
    if code == "rejected":
        return "rejected (Segment refused the message itself)"
    if code is not None and code not in RETRYABLE_CODES:
        if problem is None:
            return f"{code} (its body is valid now: a newer version accepts it; --include-permanent moves it)"
        return f"{code} (the body can never succeed)"
    if problem is not None:
        where = f", field {problem.field}" if problem.field else ""
        return f"{code or 'no error_code'}, but the body does not validate: {problem.code}{where}"
    return None


# -- the message a redrive sends ------------------------------------------------------------------------------------


def _string(message: Message, name: str) -> str | None:
    value = message.get("MessageAttributes", {}).get(name, {})
    return value.get("StringValue") if value.get("DataType", "").startswith(("String", "Number")) else None


@dataclass(frozen=True, slots=True)
class Copy:
    """A parked message's copy for its source queue: its attributes, and what became of a producer's own."""

    attributes: dict[str, dict[str, Any]]
    producer: str  # "none", "kept", "folded" or "dropped"


def _attribute_bytes(name: str, value: Mapping[str, Any]) -> int:
    """An attribute's size as SQS counts it toward the message size (name, data type, value)."""
    payload = value.get("StringValue")
    size = len(payload.encode("utf-8")) if isinstance(payload, str) else len(value.get("BinaryValue") or b"")
    return len(name.encode("utf-8")) + len(str(value["DataType"]).encode("utf-8")) + size


def _folded(producer: Mapping[str, Mapping[str, Any]]) -> str:
    def one(value: Mapping[str, Any]) -> dict[str, str]:
        if "BinaryValue" in value:
            raw = value["BinaryValue"]
            return {"DataType": value["DataType"], "BinaryValue": base64.b64encode(bytes(raw)).decode("ascii")}
        return {"DataType": value["DataType"], "StringValue": str(value.get("StringValue", ""))}

    return json.dumps({name: one(value) for name, value in sorted(producer.items())}, separators=(",", ":"))


def redriven_copy(message: Message, kind: str, now_ms: int, max_message_bytes: int | None = None) -> Copy:
    """The message attributes of a parked message's copy on its source queue (see the module docstring):
    ours, and a producer's own kept, folded or dropped so that the copy has at most 10 and fits the queue."""
    ours: dict[str, dict[str, Any]] = {}
    producer: dict[str, dict[str, Any]] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        if name in REASON_ATTRIBUTES:
            continue
        copy = {"DataType": value["DataType"]}
        for part in ("StringValue", "BinaryValue"):
            if part in value:
                copy[part] = value[part]
        (ours if name in OWN_ATTRIBUTES else producer)[name] = copy
    source_id = _string(message, SOURCE_MESSAGE_ID_ATTRIBUTE) or str(message["MessageId"])
    derived = {
        DELIVERY_ID_ATTRIBUTE: _string(message, DELIVERY_ID_ATTRIBUTE) or sqs_delivery_id(source_id),
        SOURCE_MESSAGE_ID_ATTRIBUTE: source_id,
        SOURCE_KIND_ATTRIBUTE: _string(message, SOURCE_KIND_ATTRIBUTE) or kind,
        RETRY_SINCE: str(now_ms),
    }
    sent = str(message.get("Attributes", {}).get("SentTimestamp", ""))
    if FIRST_RECEIVED_AT not in ours and sent.isdigit():  # moved by SQS's redrive policy: first sent then
        derived[FIRST_RECEIVED_AT] = sent
    ours.update({name: {"DataType": "String", "StringValue": value} for name, value in derived.items()})
    if not producer:
        return Copy(ours, "none")
    if len(ours) + len(producer) <= MAX_ATTRIBUTES:
        return Copy({**producer, **ours}, "kept")
    folded = {PRODUCER_ATTRIBUTES: {"DataType": "String", "StringValue": _folded(producer)}}
    size = len(str(message.get("Body", "")).encode("utf-8"))
    size += sum(_attribute_bytes(name, value) for name, value in {**ours, **folded}.items())
    fits = max_message_bytes is None or size <= max_message_bytes
    if (
        PRODUCER_ATTRIBUTES not in ours
        and fits
        and _attribute_bytes(PRODUCER_ATTRIBUTES, folded[PRODUCER_ATTRIBUTES]) <= FOLD_LIMIT_BYTES
    ):
        return Copy({**ours, **folded}, "folded")
    return Copy(ours, "dropped")


def redriven_attributes(message: Message, kind: str, now_ms: int) -> dict[str, dict[str, Any]]:
    """The message attributes of a parked message's copy on its source queue (``redriven_copy``)."""
    return redriven_copy(message, kind, now_ms).attributes


# -- scanning and moving ----------------------------------------------------------------------------------------


def _receive(sqs: Any, url: str, visibility_s: int) -> list[Message]:
    answer = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=1,
        VisibilityTimeout=visibility_s,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    return list(answer.get("Messages", []))


def _chunks(items: list[Any], size: int = 10) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _release(sqs: Any, url: str, messages: Iterable[Message]) -> None:
    """Make messages this run received visible again at once (best effort: else they return after their timeout)."""
    for chunk in _chunks(list(messages)):
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(chunk)
        ]
        with contextlib.suppress(ClientError, BotoCoreError):
            sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)


def _counts(sqs: Any, url: str) -> tuple[int, int] | None:
    """The queue's ``ApproximateNumberOfMessages`` and ``...NotVisible`` (in flight); None when unreadable."""
    try:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        visible, in_flight = (int(attributes.get(name, 0)) for name in names)
    except (ClientError, BotoCoreError, ValueError):
        return None
    return visible, in_flight


def _max_message_bytes(sqs: Any, url: str) -> int | None:
    try:
        name = "MaximumMessageSize"
        return int(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[name])["Attributes"][name])
    except (ClientError, BotoCoreError, KeyError, ValueError):
        return None


def _note(report: Report, message: Message) -> None:
    reason = _string(message, ERROR_CODE) or NO_ERROR_CODE
    report.by_reason[reason] += 1
    examples = report.examples.setdefault(reason, [])
    if len(examples) < EXAMPLES_PER_REASON:
        examples.append(message)


def dry_run(sqs: Any, queues: QueuePair) -> Report:
    """Count the DLQ's messages by reason, keeping a few examples, and those a redrive would skip (they cannot
    succeed); nothing is moved or deleted."""
    report = Report(dry_run=True)
    seen: dict[str, Message] = {}
    try:
        while True:
            batch = _receive(sqs, queues.dlq_url, PEEK_VISIBILITY_S)
            new = [m for m in batch if m["MessageId"] not in seen]
            if not new:  # empty, or only messages seen before (their visibility ran out during a long scan)
                break
            for message in new:
                seen[message["MessageId"]] = message
                _note(report, message)
                why = why_permanent(message, queues.kind)
                if why is not None:
                    report.skipped[why] += 1
        counts = _counts(sqs, queues.dlq_url)
        report.in_flight = None if counts is None else max(counts[1] - len(seen), 0)
    finally:
        _release(sqs, queues.dlq_url, seen.values())
    return report


@dataclass(slots=True)
class _Run:
    """One redrive's state: what it handled, what it holds invisible, what it must still delete."""

    sqs: Any
    queues: QueuePair
    report: Report
    clock: Callable[[], int]
    started_ms: int
    limit: int | None
    include_permanent: bool
    visibility_s: int
    max_message_bytes: int | None
    monotonic: Callable[[], float] = time.monotonic
    handled: set[str] = field(default_factory=set)
    hidden_until: dict[str, float] = field(default_factory=dict)  # when a message this run received is visible
    held: dict[str, Message] = field(default_factory=dict)  # received, not moved: released at the end
    undeleted: dict[str, Message] = field(default_factory=dict)  # copied, still in the DLQ

    def room(self) -> int | None:
        return None if self.limit is None else self.limit - self.report.moved - len(self.report.failed)

    def scan(self) -> None:
        """Receive until the DLQ shows nothing new; move what may be moved."""
        while (room := self.room()) is None or room > 0:
            batch = _receive(self.sqs, self.queues.dlq_url, self.visibility_s)
            until = self.monotonic() + self.visibility_s
            self.hidden_until.update((m["MessageId"], until) for m in batch)
            for again in (m for m in batch if m["MessageId"] in self.handled):
                self._seen_again(again)
            fresh = [m for m in batch if m["MessageId"] not in self.handled]
            if not fresh:
                break
            self.handled.update(m["MessageId"] for m in fresh)
            eligible: list[Message] = []
            for message in fresh:
                if int(message.get("Attributes", {}).get("SentTimestamp", "0")) > self.started_ms:
                    self.report.parked_during_run += 1
                elif room is not None and len(eligible) >= room:
                    pass
                elif not self.include_permanent and (why := why_permanent(message, self.queues.kind)) is not None:
                    self.report.skipped[why] += 1
                else:
                    eligible.append(message)
                    continue
                self.held[message["MessageId"]] = message
            if eligible:
                for message in _move(self, eligible):
                    self.held[message["MessageId"]] = message

    def _seen_again(self, message: Message) -> None:
        """A message handled earlier in this run, received again (its visibility ran out): hidden again by us."""
        message_id = message["MessageId"]
        if message_id in self.undeleted:  # copied already: delete it now, never copy it twice
            if not _delete(self.sqs, self.queues.dlq_url, [message]):
                del self.undeleted[message_id]
                self.hidden_until.pop(message_id, None)
                self.report.not_deleted -= 1
            else:
                self.undeleted[message_id] = message
        else:  # skipped, refused or parked during the run: its new receipt handle, to release it at the end
            self.held[message_id] = message

    def ours(self) -> int:
        """How many of the DLQ's in-flight messages this run holds (received, not deleted, still hidden)."""
        now = self.monotonic()
        return sum(until > now for until in self.hidden_until.values())


def redrive(
    sqs: Any,
    queues: QueuePair,
    *,
    now_ms: Callable[[], int] | None = None,
    limit: int | None = None,
    include_permanent: bool = False,
    wait_s: float = 0.0,
    poll_s: float = POLL_S,
    out: Out | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    visibility_s: int = MOVE_VISIBILITY_S,
) -> Report:
    """Move the DLQ's messages (those parked before the call, and by default only those that can succeed) back
    to the source queue; wait up to ``wait_s`` for messages another reader holds, printing progress to ``out``.
    See the module docstring."""
    clock = now_ms or (lambda: int(time.time() * 1000))
    run = _Run(
        sqs,
        queues,
        Report(dry_run=False, include_permanent=include_permanent),
        clock,
        clock(),
        limit,
        include_permanent,
        visibility_s,
        _max_message_bytes(sqs, queues.source_url),
        monotonic,
    )
    deadline = monotonic() + wait_s
    rescans = 0
    try:
        while True:
            run.scan()
            if (room := run.room()) is not None and room <= 0:
                break
            counts = _counts(sqs, queues.dlq_url)
            if counts is None:
                run.report.in_flight = None
                break
            visible, in_flight = counts
            if visible and rescans < MAX_RESCANS:  # became visible after the last receive: look again at once
                rescans += 1
                continue
            rescans = 0
            others = max(in_flight - run.ours(), 0)
            run.report.in_flight = others + visible
            left = deadline - monotonic()
            if not others or left <= 0:
                break
            if out is not None:
                out(
                    f"waiting for {others} message(s) another reader holds in flight (up to {left:.0f} s more; "
                    f"moved {run.report.moved} so far)"
                )
            sleep(min(poll_s, left))
    finally:
        _release(sqs, queues.dlq_url, run.held.values())
    return run.report


def _delete(sqs: Any, url: str, messages: list[Message]) -> list[Message]:
    """Delete messages from the DLQ, retrying what failed; return those still not deleted."""
    left = list(messages)
    for attempt in range(DELETE_ATTEMPTS):
        if attempt:
            time.sleep(0.2 * attempt)
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(left)]
        try:
            answer = sqs.delete_message_batch(QueueUrl=url, Entries=entries)
        except (ClientError, BotoCoreError):
            continue
        left = [left[int(entry["Id"])] for entry in answer.get("Failed", [])]
        if not left:
            break
    return left


def _move(run: _Run, messages: list[Message]) -> list[Message]:
    """Copy messages to the source queue, then delete those copied from the DLQ; return the ones not copied."""
    report, now_ms = run.report, run.clock()
    copies = [redriven_copy(message, run.queues.kind, now_ms, run.max_message_bytes) for message in messages]
    entries = [
        {"Id": str(index), "MessageBody": message["Body"], "MessageAttributes": copy.attributes}
        for index, (message, copy) in enumerate(zip(messages, copies, strict=True))
    ]
    try:
        answer = run.sqs.send_message_batch(QueueUrl=run.queues.source_url, Entries=entries)
    except (ClientError, BotoCoreError) as exc:
        why = exc.response["Error"].get("Message", str(exc)) if isinstance(exc, ClientError) else str(exc)
        report.failed.update({m["MessageId"]: why for m in messages})
        return messages
    refused = {int(e["Id"]): str(e.get("Message") or e.get("Code") or "refused") for e in answer.get("Failed", [])}
    copied = [m for i, m in enumerate(messages) if i not in refused]
    report.failed.update({messages[i]["MessageId"]: why for i, why in refused.items()})
    for index, message in enumerate(messages):
        if index not in refused:
            _note(report, message)
            report.folded += copies[index].producer == "folded"
            report.dropped += copies[index].producer == "dropped"
    report.moved += len(copied)
    if copied:
        not_deleted = {m["MessageId"]: m for m in _delete(run.sqs, run.queues.dlq_url, copied)}
        for message in copied:
            if message["MessageId"] not in not_deleted:
                run.hidden_until.pop(message["MessageId"], None)
        run.undeleted.update(not_deleted)
        report.not_deleted += len(not_deleted)
    return [messages[i] for i in refused]


# -- the report -------------------------------------------------------------------------------------------------


def _when(ms: str | None) -> str:
    if not ms or not ms.isdigit():
        return "-"
    return datetime.fromtimestamp(int(ms) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def render(report: Report, queues: QueuePair, dlq_depth: int | None = None) -> list[str]:
    """The lines ``make redrive`` prints."""
    lines = [f"{queues.kind}: {queues.dlq_url} -> {queues.source_url} ({queues.where})"]
    total = sum(report.by_reason.values())
    if report.dry_run:
        depth = f" of ~{dlq_depth} in the DLQ" if dlq_depth is not None else ""
        lines.append(
            f"DRY RUN: nothing moved or deleted. {total} message(s) looked at{depth}; each was hidden for at most "
            f"{PEEK_VISIBILITY_S} s and made visible again when the scan ended."
        )
    else:
        lines.append(f"moved {report.moved} message(s) back to the source queue (retry_since = now: a new horizon)")
    for reason, count in report.by_reason.most_common():
        lines.append(f"  {reason:<24} {count:>7}")
        for example in report.examples.get(reason, []) if report.dry_run else []:
            message = " ".join((_string(example, ERROR_MESSAGE) or "").split())[:160]
            field_name = _string(example, ERROR_FIELD)
            lines.append(
                f"      e.g. {message!r}{f' (field {field_name})' if field_name else ''}; source message "
                f"{_string(example, 'source_message_id') or example['MessageId']}, first received "
                f"{_when(_string(example, 'first_received_at'))}, receives {_string(example, 'receive_count') or '-'}"
            )
    skipped = sum(report.skipped.values())
    if skipped:
        verb = "a redrive would skip" if report.dry_run else "SKIPPED (left in the DLQ):"
        lines.append(
            f"{verb} {skipped} message(s) that cannot succeed: moved back they would be parked again and page again. "
            "Fix the cause, then INCLUDE_PERMANENT=1 (--include-permanent) moves them anyway:"
        )
        lines += [f"  {why:<24} {count:>7}" for why, count in report.skipped.most_common()]
    if report.folded or report.dropped:
        lines.append(
            f"producer attributes: folded into {PRODUCER_ATTRIBUTES} on {report.folded} message(s), dropped from "
            f"{report.dropped} (SQS takes at most {MAX_ATTRIBUTES} attributes; ours are kept)"
        )
    if report.failed:
        lines.append(f"NOT MOVED: {len(report.failed)} message(s) stay in the DLQ:")
        lines += [f"  {message_id}: {why}" for message_id, why in list(report.failed.items())[:10]]
    if report.not_deleted:
        lines.append(
            f"WARNING: {report.not_deleted} message(s) were copied but could not be deleted from the DLQ: they are on "
            "both queues, and a later run moves them again. Identify, assignment, one-per-visitor conversions and "
            "conversions with an event_id are deduplicated by the function; a conversion without event_id is sent "
            "again under the same messageId, which Segment drops only within about 24 hours: run again today."
        )
    if report.parked_during_run:
        lines.append(f"{report.parked_during_run} message(s) parked during the run were left for the next run.")
    if report.in_flight:
        lines.append(
            f"IN FLIGHT: {report.in_flight} message(s) of the DLQ were held invisible by another reader (a dry run or "
            "a redrive still running, or one interrupted in the last minute) and were not "
            f"{'looked at' if report.dry_run else 'moved'}: run again in a minute."
        )
    elif report.in_flight is None:
        lines.append("could not read how many messages of the DLQ are in flight (invisible); run again to be sure.")
    return lines


def _depth(sqs: Any, url: str) -> int | None:
    try:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(attributes.get(name, 0)) for name in names)
    except (ClientError, BotoCoreError):
        return None


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ, out: Out = print) -> int:
    """Run ``python -m ops.redrive``; see the module docstring."""
    template = Template.load()
    parser = argparse.ArgumentParser(prog="python -m ops.redrive", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("kind", choices=template.kinds(), help="the function whose dead-letter queue is redriven")
    parser.add_argument("--dry-run", action="store_true", help="count by reason, move and delete nothing")
    parser.add_argument("--stack", help="a deployed stack's name (default: the local stack of `make run`)")
    parser.add_argument(
        "--endpoint",
        default=local_endpoint(environ),
        help="AWS endpoint of the local stack (default http://127.0.0.1:$LOCAL_AWS_PORT, port 4566)",
    )
    parser.add_argument("--limit", type=int, help="move at most this many messages")
    parser.add_argument(
        "--include-permanent",
        action="store_true",
        help="also move messages that cannot succeed as they are (a permanent reason, or a body that does not "
        "validate): after fixing the cause",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_S,
        help=f"seconds to wait for messages another reader holds in flight (default {DEFAULT_WAIT_S:.0f}; 0: none)",
    )
    args = parser.parse_args(argv)
    try:
        if args.stack:
            sqs, queues = stack_queues(args.kind, args.stack, template=template)
        else:
            sqs, queues = local_queues(args.kind, args.endpoint, template)
        depth = _depth(sqs, queues.dlq_url)
        if args.dry_run:
            report = dry_run(sqs, queues)
        else:
            report = redrive(
                sqs,
                queues,
                limit=args.limit,
                include_permanent=args.include_permanent,
                wait_s=max(args.wait, 0.0),
                out=out,
            )
    except RedriveError as exc:
        print(f"redrive: error: {exc}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as exc:
        print(f"redrive: error: {exc}", file=sys.stderr)
        return 1
    for line in render(report, queues, depth):
        out(line)
    return report.exit_status


if __name__ == "__main__":
    sys.exit(main())
