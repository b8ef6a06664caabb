"""Move parked messages from a kind's dead-letter queue back to its source queue, so that a redriven event is
delivered once, under the messageId its first attempt used (``make redrive``)::

    make redrive KIND=conversion DRY_RUN=1               # local stack: counts by reason, nothing moved or deleted
    make redrive KIND=conversion                         # local stack: move them back
    make redrive KIND=identify STACK=segment-forwarder   # a deployed stack (credentials and region: environment)
    python -m ops.redrive assignment --dry-run --endpoint http://127.0.0.1:4566

The local stack is found at ``http://127.0.0.1:$LOCAL_AWS_PORT`` (default 4566) with its queue names; a deployed
stack's queue URLs come from its outputs (``<Kind>QueueUrl``, ``<Kind>DeadLetterQueueUrl``).

Each moved message keeps its body and its attributes except the reason (``error_code``, ``error_message``,
``error_field``, ``receive_count``), and carries:

* ``delivery_id``: kept; when absent, derived from ``source_message_id`` (else from the DLQ message's id, which
  SQS keeps when its redrive policy moves a message) exactly as the function derives it from an SQS message id,
  so a conversion without ``event_id`` is sent under the messageId of its first attempt;
* ``source_message_id`` (kept, else the DLQ message's id), ``source_kind`` (kept, else the kind),
  ``first_received_at`` (kept when present);
* ``retry_since``: now, in milliseconds since the epoch: a redrive starts a new retry horizon.

A message is deleted from the dead-letter queue only after SQS accepted its copy on the source queue, so an
interrupted run loses nothing: at worst a message is on both queues, and both copies carry the same delivery id
(the function deduplicates). Only messages parked before the run started are moved; one parked again during the
run (it still fails) stays for the next run. A dry run hides each message it looks at for at most
``PEEK_VISIBILITY_S`` and makes it visible again as soon as the scan ends.

Exit status: 0 done, 1 a message could not be moved or the queues could not be reached, 2 bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
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
from segment_forwarder.events import sqs_delivery_id

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
REASON_ATTRIBUTES = ("error_code", "error_message", "error_field", "receive_count")
EXAMPLES_PER_REASON = 3

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
    """What a run saw and did. ``by_reason`` counts the messages looked at (dry run) or moved, by ``error_code``."""

    dry_run: bool
    by_reason: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[Message]] = field(default_factory=dict)
    moved: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # DLQ message id -> why it was not moved
    not_deleted: int = 0  # copied to the source queue, but still in the DLQ too (harmless: same delivery id)
    parked_during_run: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed and not self.not_deleted


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


# -- the message a redrive sends ------------------------------------------------------------------------------------


def _string(message: Message, name: str) -> str | None:
    value = message.get("MessageAttributes", {}).get(name, {})
    return value.get("StringValue") if value.get("DataType", "").startswith(("String", "Number")) else None


def redriven_attributes(message: Message, kind: str, now_ms: int) -> dict[str, dict[str, Any]]:
    """The message attributes of a parked message's copy on its source queue (see the module docstring)."""
    kept: dict[str, dict[str, Any]] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        if name in REASON_ATTRIBUTES:
            continue
        copy = {"DataType": value["DataType"]}
        for part in ("StringValue", "BinaryValue"):
            if part in value:
                copy[part] = value[part]
        kept[name] = copy
    source_id = _string(message, "source_message_id") or str(message["MessageId"])
    derived = {
        "delivery_id": _string(message, "delivery_id") or sqs_delivery_id(source_id),
        "source_message_id": source_id,
        "source_kind": _string(message, "source_kind") or kind,
        "retry_since": str(now_ms),
    }
    kept.update({name: {"DataType": "String", "StringValue": value} for name, value in derived.items()})
    return kept


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


def _note(report: Report, message: Message) -> None:
    reason = _string(message, "error_code") or "(no error_code: moved by SQS after MaxReceiveCount receives)"
    report.by_reason[reason] += 1
    examples = report.examples.setdefault(reason, [])
    if len(examples) < EXAMPLES_PER_REASON:
        examples.append(message)


def dry_run(sqs: Any, queues: QueuePair) -> Report:
    """Count the DLQ's messages by reason, keeping a few examples; nothing is moved or deleted."""
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
    finally:
        _release(sqs, queues.dlq_url, seen.values())
    return report


def redrive(
    sqs: Any, queues: QueuePair, *, now_ms: Callable[[], int] | None = None, limit: int | None = None
) -> Report:
    """Move the DLQ's messages (those parked before the call) back to the source queue; see the module docstring."""
    clock = now_ms or (lambda: int(time.time() * 1000))
    started_ms = clock()
    report = Report(dry_run=False)
    handled: set[str] = set()
    held: list[Message] = []  # received but not moved (parked during the run, or refused): released at the end
    try:
        while limit is None or report.moved + len(report.failed) < limit:
            batch = _receive(sqs, queues.dlq_url, MOVE_VISIBILITY_S)
            fresh = [m for m in batch if m["MessageId"] not in handled]
            if not fresh:
                break
            handled.update(m["MessageId"] for m in fresh)
            eligible = [m for m in fresh if int(m.get("Attributes", {}).get("SentTimestamp", "0")) <= started_ms]
            if limit is not None:
                eligible = eligible[: limit - report.moved - len(report.failed)]
            later = [m for m in fresh if m not in eligible]
            report.parked_during_run += sum(
                int(m.get("Attributes", {}).get("SentTimestamp", "0")) > started_ms for m in later
            )
            held.extend(later)
            if eligible:
                held.extend(_move(sqs, queues, eligible, clock(), report))
    finally:
        _release(sqs, queues.dlq_url, held)
    return report


def _move(sqs: Any, queues: QueuePair, messages: list[Message], now_ms: int, report: Report) -> list[Message]:
    """Copy messages to the source queue, then delete those copied from the DLQ; return the ones not copied."""
    entries = [
        {
            "Id": str(index),
            "MessageBody": message["Body"],
            "MessageAttributes": redriven_attributes(message, queues.kind, now_ms),
        }
        for index, message in enumerate(messages)
    ]
    try:
        answer = sqs.send_message_batch(QueueUrl=queues.source_url, Entries=entries)
    except (ClientError, BotoCoreError) as exc:
        why = exc.response["Error"].get("Message", str(exc)) if isinstance(exc, ClientError) else str(exc)
        report.failed.update({m["MessageId"]: why for m in messages})
        return messages
    refused = {int(e["Id"]): str(e.get("Message") or e.get("Code") or "refused") for e in answer.get("Failed", [])}
    copied = [m for i, m in enumerate(messages) if i not in refused]
    report.failed.update({messages[i]["MessageId"]: why for i, why in refused.items()})
    for message in copied:
        _note(report, message)
    report.moved += len(copied)
    deletes = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(copied)]
    if deletes:
        try:
            deleted = sqs.delete_message_batch(QueueUrl=queues.dlq_url, Entries=deletes)
            report.not_deleted += len(deleted.get("Failed", []))
        except (ClientError, BotoCoreError):
            report.not_deleted += len(deletes)
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
            message = " ".join((_string(example, "error_message") or "").split())[:160]
            field_name = _string(example, "error_field")
            lines.append(
                f"      e.g. {message!r}{f' (field {field_name})' if field_name else ''}; source message "
                f"{_string(example, 'source_message_id') or example['MessageId']}, first received "
                f"{_when(_string(example, 'first_received_at'))}, receives {_string(example, 'receive_count') or '-'}"
            )
    if report.failed:
        lines.append(f"NOT MOVED: {len(report.failed)} message(s) stay in the DLQ:")
        lines += [f"  {message_id}: {why}" for message_id, why in list(report.failed.items())[:10]]
    if report.not_deleted:
        lines.append(
            f"WARNING: {report.not_deleted} message(s) were copied but could not be deleted from the DLQ; a later run "
            "moves them again (harmless: the copies share their delivery id)."
        )
    if report.parked_during_run:
        lines.append(f"{report.parked_during_run} message(s) parked during the run were left for the next run.")
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
    args = parser.parse_args(argv)
    try:
        if args.stack:
            sqs, queues = stack_queues(args.kind, args.stack, template=template)
        else:
            sqs, queues = local_queues(args.kind, args.endpoint, template)
        depth = _depth(sqs, queues.dlq_url)
        report = dry_run(sqs, queues) if args.dry_run else redrive(sqs, queues, limit=args.limit)
    except RedriveError as exc:
        print(f"redrive: error: {exc}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as exc:
        print(f"redrive: error: {exc}", file=sys.stderr)
        return 1
    for line in render(report, queues, depth):
        out(line)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
