"""The benchmark's input: a deterministic stream of SQS batches and what a correct forwarder must make of it.

::

    workload = generate(seed=7, tag="r1")          # 30 batches of 10 records, 3 workspaces
    workload.batches[0].kind, workload.batches[0].bodies
    workload.new_facts, workload.messages, workload.segment_floor

Each batch holds one kind (each function has its own queue) and records of several workspaces. About a quarter
of the records are duplicates: exact repeats of an earlier body (a producer retry or an SQS redelivery) and
identifies of visitors already identified. Every other record creates new facts, so both stacks must
deliver exactly the same Segment messages. Conversions always carry a dedup key (``event_id`` or
``one_per_visitor``): a conversion without one is forwarded on every call by design, which would make the
duplicate share differ between the stacks.

``tag`` prefixes visitor ids and event ids, so each run starts from fresh dedup state while the workspaces'
connections stay cached.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

KINDS = ("identify", "assignment", "conversion")
WORKSPACES = {"bench-acme": "us", "bench-globex": "us", "bench-initech": "eu"}
TESTS = ("t-checkout", "t-pricing", "t-hero", "t-onboarding")
ONCE_CONVERSIONS = ("c-signup", "c-trial")
REPEATABLE_CONVERSIONS = ("c-purchase", "c-add-to-cart")
CONVERSION_TYPES = ("CLICK", "PAGE_VIEW", "PROGRAMMATIC")
VISITORS_PER_WORKSPACE = 60
USER_SHARE = 1 / 3  # visitors that carry the site's own user id (always the same one)


@dataclass(frozen=True, slots=True)
class Batch:
    """One SQS batch for one function."""

    kind: str
    bodies: list[dict[str, Any]]


@dataclass(slots=True)
class Workload:
    """A stream and its expected outcome, computed with the product's dedup rules."""

    batches: list[Batch] = field(default_factory=list)
    events: int = 0
    duplicates: int = 0  # records that must send nothing
    new_facts: int = 0  # "once" facts first seen (IDENTIFY, IDENTIFY#U#, ASSIGN#, CONV#, EVENT#)
    messages: int = 0  # Segment messages a correct forwarder sends
    segment_floor: int = 0  # sum over batches of the workspaces that have something to send

    @property
    def workspaces(self) -> int:
        """Distinct workspaces in the stream."""
        return len({body["workspace_id"] for batch in self.batches for body in batch.bodies})


class _Generator:
    def __init__(self, seed: int, tag: str, duplicate_share: float) -> None:
        self.rng = random.Random(f"{seed}")  # the same stream for every tag
        self.tag = tag
        self.duplicate_share = duplicate_share
        self.base_time = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
        self.sent: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        self.assigned: set[tuple[str, str, str]] = set()
        self.once_converted: set[tuple[str, str, str]] = set()
        self.counter = 0
        users = {}
        for workspace in WORKSPACES:
            for n in range(VISITORS_PER_WORKSPACE):
                if self.rng.random() < USER_SHARE:
                    users[(workspace, n)] = f"user-{tag}-{workspace}-{n}"
        self.users = users

    def visitor(self) -> tuple[str, str, str | None]:
        workspace = self.rng.choice(list(WORKSPACES))
        n = self.rng.randrange(VISITORS_PER_WORKSPACE)
        return workspace, f"{self.tag}-v{n:03d}", self.users.get((workspace, n))

    def common(self, workspace: str, visitor: str, user: str | None) -> dict[str, Any]:
        self.counter += 1
        body: dict[str, Any] = {"workspace_id": workspace, "visitor_id": visitor}
        if user:
            body["user_id"] = user
        moment = self.base_time + timedelta(milliseconds=37 * self.counter)
        body["timestamp"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        body["context"] = {
            "ip": f"203.0.113.{self.counter % 250 + 1}",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
            "locale": "en-US",
            "page": {"url": f"https://shop.example.com/p/{self.counter % 40}", "path": f"/p/{self.counter % 40}"},
        }
        return body

    def new_body(self, kind: str) -> dict[str, Any]:
        for _ in range(100):
            workspace, visitor, user = self.visitor()
            body = self.common(workspace, visitor, user)
            if kind == "identify":
                return body
            if kind == "assignment":
                test = self.rng.choice(TESTS)
                if (workspace, visitor, test) in self.assigned:
                    continue
                self.assigned.add((workspace, visitor, test))
                return {**body, "test_id": test, "variant_id": self.rng.choice(("a", "b"))}
            conversion = {
                "conversion_type": self.rng.choice(CONVERSION_TYPES),
                "origin_url": f"https://shop.example.com/checkout?step={self.counter % 5}",
            }
            if self.rng.random() < 0.4:
                conversion_id = self.rng.choice(ONCE_CONVERSIONS)
                if (workspace, visitor, conversion_id) in self.once_converted:
                    continue
                self.once_converted.add((workspace, visitor, conversion_id))
                return {**body, "conversion_id": conversion_id, **conversion, "one_per_visitor": True}
            conversion_id = self.rng.choice(REPEATABLE_CONVERSIONS)
            return {**body, "conversion_id": conversion_id, **conversion, "event_id": f"{self.tag}-e{self.counter}"}
        raise RuntimeError("workload: no unused fact left; raise VISITORS_PER_WORKSPACE")

    def body(self, kind: str) -> dict[str, Any]:
        earlier = self.sent[kind]
        if earlier and self.rng.random() < self.duplicate_share:
            return self.rng.choice(earlier)
        body = self.new_body(kind)
        earlier.append(body)
        return body


def _own_fact(kind: str, body: dict[str, Any]) -> str | None:
    if kind == "assignment":
        return f"ASSIGN#{body['test_id']}"
    if kind == "conversion":
        return f"CONV#{body['conversion_id']}" if body.get("one_per_visitor") else f"EVENT#{body['event_id']}"
    return None


def generate(
    seed: int = 7,
    tag: str = "run",
    batches: int = 30,
    batch_size: int = 10,
    duplicate_share: float = 0.15,
) -> Workload:
    """A deterministic stream (the same for every ``tag``) and its expected outcome."""
    gen = _Generator(seed, tag, duplicate_share)
    workload = Workload()
    facts: set[tuple[str, str, str]] = set()
    kinds: list[str] = []
    while len(kinds) < batches:
        cycle = list(KINDS)
        gen.rng.shuffle(cycle)
        kinds.extend(cycle)
    for kind in kinds[:batches]:
        bodies = [gen.body(kind) for _ in range(batch_size)]
        workload.batches.append(Batch(kind, bodies))
        sending: set[str] = set()
        for body in bodies:
            workload.events += 1
            workspace, visitor, user = body["workspace_id"], body["visitor_id"], body.get("user_id")
            own = _own_fact(kind, body)
            if own is not None and (workspace, visitor, own) in facts:
                workload.duplicates += 1  # the visitor's user id never changes: nothing else to send
                continue
            messages = 0
            if own is not None:
                facts.add((workspace, visitor, own))
                workload.new_facts += 1
                messages += 1  # the Track
            if (workspace, visitor, "IDENTIFY") not in facts:
                facts.add((workspace, visitor, "IDENTIFY"))
                workload.new_facts += 1 + (user is not None)  # IDENTIFY (+ IDENTIFY#U#<user>)
                messages += 1  # one Identify, which also links the user id
            if messages == 0:
                workload.duplicates += 1
            else:
                workload.messages += messages
                sending.add(workspace)
        workload.segment_floor += len(sending)
    return workload
