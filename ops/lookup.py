"""What happened to visitor X (``make lookup``): the visitor's facts as the dedup table holds them, and the Logs
Insights query that finds its log lines::

    make lookup WORKSPACE=demo VISITOR=v-1                          # the local stack of `make run`
    make lookup WORKSPACE=acme VISITOR=v-1 STACK=segment-forwarder  # a deployed stack (credentials: environment)
    python -m ops.lookup demo v-1 --json                            # the same, as JSON

Each fact: its kind and key, ``SENT`` or ``PENDING`` (claimed, not yet known delivered: in flight, or its
delivery failed and it waits for a retry), when it was first attempted and delivered, the messageId it reached
Segment under, how many attempts claimed it, and what it recorded (the user id, the variant, the conversion).
A fact absent from the list was never seen (or was erased, or expired).

Exit status: 0 done (also when the visitor is unknown), 1 the table could not be read, 2 bad usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from local_stack.template import Template
from segment_forwarder.facts import FactKind
from segment_forwarder.table import DedupUnavailableError
from segment_forwarder.visitor_facts import FactRecord, VisitorFacts

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

INGEST_FUNCTIONS = ("IdentifyFunction", "AssignmentFunction", "ConversionFunction")
Out = Callable[[str], None]


def _when(seconds: int | None) -> str:
    return "-" if seconds is None else datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def recorded(fact: FactRecord) -> str:
    """What a fact recorded, in a few words (the variant, the user id, the conversion...)."""
    content = fact.content or {}
    properties = content.get("properties") or {}
    parts = []
    if content.get("event") == "Experiment Viewed":
        parts.append(f"variant {properties.get('variant_id')}")
    if content.get("event") == "Conversion Triggered":
        parts.append(f"{properties.get('conversion_type')} on {properties.get('origin_url')}")
    if content.get("userId"):
        parts.append(f"user {content['userId']}")
    if content.get("timestamp"):
        parts.append(f"at {content['timestamp']}")
    return ", ".join(parts) or "-"


KIND_WORDS = {  # the link first: its key starts with the first sighting's
    FactKind.LINK: "link to a user id",
    FactKind.IDENTIFY: "first sighting",
    FactKind.ASSIGNMENT: "assignment",
    FactKind.CONVERSION: "one-per-visitor conversion",
    FactKind.EVENT: "conversion (event_id)",
}


def kind_of(key: str) -> str:
    """The fact's kind, in words (its key is the kind's prefix, then ``#`` and the id, but for the first sighting)."""
    for kind, words in KIND_WORDS.items():
        if key == kind.value or key.startswith(f"{kind.value}#"):
            return words
    return "?"


def logs_insights_query(workspace_id: str, visitor_id: str) -> str:
    """The Logs Insights query that finds the visitor's log lines in the ingest functions' log groups.

    Delivered and duplicate events are logged at INFO only for a sample (``DeliveredLogSampleRate``, 0 by default:
    not at all); failures always are. The facts above are the complete record.
    """
    return (
        "fields @timestamp, kind, message, path, correlation_id, reason, message_ids\n"
        f"| filter workspace_id = {json.dumps(workspace_id)} and visitor_id = {json.dumps(visitor_id)}\n"
        "| sort @timestamp asc"
    )


def render(workspace_id: str, visitor_id: str, facts: list[FactRecord], where: str, log_groups: list[str]) -> list[str]:
    """The report, as lines."""
    lines = [f"visitor {visitor_id!r} of workspace {workspace_id!r} in {where}: {len(facts)} fact(s)"]
    if facts:
        rows = [("fact", "kind", "status", "first attempt", "delivered", "attempts", "messageId", "recorded")]
        rows += [
            (
                fact.key,
                kind_of(fact.key),
                fact.status,
                _when(fact.first_attempt_at),
                _when(fact.delivered_at),
                str(fact.attempts),
                fact.message_id,
                recorded(fact),
            )
            for fact in sorted(facts, key=lambda f: (f.first_attempt_at or 0, f.key))
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        lines += [
            "  " + "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]) for row in rows
        ]
    else:
        lines.append("  no fact: never seen, erased, or expired")
    lines.append("")
    lines.append("Logs Insights" + (f" (log groups: {', '.join(log_groups)})" if log_groups else "") + ":")
    lines += ["  " + line for line in logs_insights_query(workspace_id, visitor_id).splitlines()]
    return lines


def _log_groups(stack_name: str, session: Any) -> list[str]:
    cloudformation = session.client("cloudformation", config=CLIENT_CONFIG)
    groups = []
    for logical_id in INGEST_FUNCTIONS:
        try:
            resource = cloudformation.describe_stack_resource(StackName=stack_name, LogicalResourceId=logical_id)
        except (ClientError, BotoCoreError):
            continue
        groups.append(f"/aws/lambda/{resource['StackResourceDetail']['PhysicalResourceId']}")
    return groups


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ, out: Out = print) -> int:
    """Run ``python -m ops.lookup``; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m ops.lookup", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("workspace_id")
    parser.add_argument("visitor_id")
    parser.add_argument("--stack", help="a deployed stack's name (default: the local stack of `make run`)")
    parser.add_argument("--endpoint", default=local_endpoint(environ), help="AWS endpoint of the local stack")
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")
    args = parser.parse_args(argv)
    template = Template.load()
    try:
        if args.stack:
            session = boto3.session.Session()
            [table] = required(stack_outputs(args.stack, session), args.stack, output_key(template, "DedupTable"))
            client = session.client("dynamodb", config=CLIENT_CONFIG)
            where, log_groups = f"stack {args.stack} ({session.region_name})", _log_groups(args.stack, session)
        else:
            table = template.physical_name("DedupTable")
            client = local_session().client("dynamodb", endpoint_url=args.endpoint, config=LOCAL_CLIENT_CONFIG)
            where, log_groups = f"the local stack at {args.endpoint}", []
        facts = VisitorFacts(client, table).list(args.workspace_id, args.visitor_id)
    except (StackError, DedupUnavailableError, ClientError, BotoCoreError) as exc:
        print(f"lookup: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        out(json.dumps([dataclasses.asdict(fact) for fact in facts], indent=2))
    else:
        for line in render(args.workspace_id, args.visitor_id, facts, where, log_groups):
            out(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
