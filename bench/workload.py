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

Two more workloads (``generate_workload(name, ...)``, ``WORKLOADS``) start from 20 known visitors per workspace,
created by ``workload.warmup`` (each identified, assigned two tests, converted once), which the benchmark runs
first and does not measure:

- ``steady`` (returning visitors): ~80% of the records repeat a known fact, ~10% are new visitors, the rest new
  facts of known visitors;
- ``launch`` (a new test goes live): ~10% repeats, ~30% new visitors, the rest known visitors' first assignment to
  the new test ``t-launch`` (or a new conversion; identify records identify known visitors again).

A repeat of an assignment or a conversion is its earlier body sent again as it was, so that the typical stack
(keyed on the body's hash) recognises it as the forwarder does (keyed on the fact); an identify repeat is a new
body of a known visitor (both key it on the visitor).
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
    """A stream and its expected outcome, computed with the product's dedup rules (``warmup``: batches to run
    before it, unmeasured, that create the facts it finds known)."""

    name: str = "mixed"
    warmup: list[Batch] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    events: int = 0
    new_visitors: int = 0  # events of a visitor not identified before
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


def _expect(workload: Workload, batches: list[Batch], facts: set[tuple[str, str, str]]) -> None:
    """Add ``batches`` to ``workload`` with their expected outcome, given the ``facts`` already recorded (updated)."""
    for batch in batches:
        workload.batches.append(batch)
        sending: set[str] = set()
        for body in batch.bodies:
            workload.events += 1
            workspace, visitor, user = body["workspace_id"], body["visitor_id"], body.get("user_id")
            own = _own_fact(batch.kind, body)
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
                workload.new_visitors += 1
                messages += 1  # one Identify, which also links the user id
            if messages == 0:
                workload.duplicates += 1
            else:
                workload.messages += messages
                sending.add(workspace)
        workload.segment_floor += len(sending)


def _kinds(rng: random.Random, batches: int) -> list[str]:
    """Batch kinds: shuffled rounds of the three kinds."""
    kinds: list[str] = []
    while len(kinds) < batches:
        cycle = list(KINDS)
        rng.shuffle(cycle)
        kinds.extend(cycle)
    return kinds[:batches]


def generate(
    seed: int = 7,
    tag: str = "run",
    batches: int = 30,
    batch_size: int = 10,
    duplicate_share: float = 0.15,
) -> Workload:
    """A deterministic stream (the same for every ``tag``) and its expected outcome: the ``mixed`` workload."""
    gen = _Generator(seed, tag, duplicate_share)
    workload = Workload("mixed")
    stream = [Batch(kind, [gen.body(kind) for _ in range(batch_size)]) for kind in _kinds(gen.rng, batches)]
    _expect(workload, stream, set())
    return workload


def priming(seed: int, tag: str) -> Workload:
    """One batch per kind with one new visitor of every workspace: run first, unmeasured, it leaves each function's
    environment warm (every workspace's connection cached, pools open) as a busy environment is."""
    gen = _Generator(seed, tag, 0.0)
    workload = Workload("priming")
    stream = []
    for kind in KINDS:
        bodies = []
        for n, workspace in enumerate(WORKSPACES):
            body = gen.common(workspace, f"{tag}-{kind}-{n}", None)
            if kind == "assignment":
                body.update(test_id=TESTS[0], variant_id="a")
            elif kind == "conversion":
                body.update(
                    conversion_id=ONCE_CONVERSIONS[0],
                    conversion_type=CONVERSION_TYPES[0],
                    origin_url="https://shop.example.com/",
                    one_per_visitor=True,
                )
            bodies.append(body)
        stream.append(Batch(kind, bodies))
    _expect(workload, stream, set())
    return workload


# -- steady state and launch ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Profile:
    """A workload that starts from known visitors (created by a warm-up that is not measured).

    Each measured record: with ``repeat_share`` a repeat of a known fact (an assignment or conversion sent again
    as it was, an identify of a known visitor); with ``new_visitor_share`` a visitor never seen; otherwise a new
    fact of a known visitor (a test not yet assigned, ``new_test`` first; a new conversion; an identify has no new
    fact of a known visitor: it identifies a known visitor again), or a new visitor where a known one has no
    test left.
    """

    name: str
    repeat_share: float
    new_visitor_share: float
    new_test: str | None = None
    known_per_workspace: int = 20


PROFILES = {
    "steady": Profile("steady", repeat_share=0.80, new_visitor_share=0.10),
    "launch": Profile("launch", repeat_share=0.10, new_visitor_share=0.30, new_test="t-launch"),
}
WORKLOADS = ("mixed", *PROFILES)


class _ProfileGenerator(_Generator):
    def __init__(self, seed: int, tag: str, profile: Profile) -> None:
        super().__init__(seed, tag, 0.0)
        self.rng = random.Random(f"{seed}-{profile.name}")
        self.profile = profile
        self.known = [
            (w, f"{tag}-k{n:03d}", self.users.get((w, n))) for w in WORKSPACES for n in range(VISITORS_PER_WORKSPACE)
        ]
        self.known = self.known[: profile.known_per_workspace * len(WORKSPACES)]
        self.new_visitors = 0
        self.pool: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}  # bodies a repeat sends again

    def warmup(self, batch_size: int) -> list[Batch]:
        """Each known visitor: identified, assigned two tests, one conversion; batches by kind."""
        bodies: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        for workspace, visitor, user in self.known:
            bodies["identify"].append(self.common(workspace, visitor, user))
            for test in self.rng.sample(TESTS, 2):
                bodies["assignment"].append(self.assignment(workspace, visitor, user, test))
            bodies["conversion"].append(self.conversion(workspace, visitor, user))
        batches: list[Batch] = []
        for kind in KINDS:
            self.rng.shuffle(bodies[kind])
            self.pool[kind].extend(bodies[kind])
            batches.extend(
                Batch(kind, bodies[kind][i : i + batch_size]) for i in range(0, len(bodies[kind]), batch_size)
            )
        return batches

    def assignment(self, workspace: str, visitor: str, user: str | None, test: str) -> dict[str, Any]:
        self.assigned.add((workspace, visitor, test))
        return {**self.common(workspace, visitor, user), "test_id": test, "variant_id": self.rng.choice(("a", "b"))}

    def conversion(self, workspace: str, visitor: str, user: str | None) -> dict[str, Any]:
        body = {
            **self.common(workspace, visitor, user),
            "conversion_type": self.rng.choice(CONVERSION_TYPES),
            "origin_url": f"https://shop.example.com/checkout?step={self.counter % 5}",
        }
        unused = [c for c in ONCE_CONVERSIONS if (workspace, visitor, c) not in self.once_converted]
        if unused and self.rng.random() < 0.4:
            self.once_converted.add((workspace, visitor, unused[0]))
            return {**body, "conversion_id": unused[0], "one_per_visitor": True}
        return {
            **body,
            "conversion_id": self.rng.choice(REPEATABLE_CONVERSIONS),
            "event_id": f"{self.tag}-e{self.counter}",
        }

    def fresh(self, kind: str, workspace: str, visitor: str, user: str | None) -> dict[str, Any] | None:
        """A body with a new fact of this visitor; None when it has none left of this kind."""
        if kind == "identify":
            return None
        if kind == "conversion":
            return self.conversion(workspace, visitor, user)
        tests = [self.profile.new_test] if self.profile.new_test else []
        tests += [t for t in self.rng.sample(TESTS, len(TESTS)) if t not in tests]
        for test in tests:
            if (workspace, visitor, test) not in self.assigned:
                return self.assignment(workspace, visitor, user, test)
        return None

    def new_visitor(self, kind: str) -> dict[str, Any]:
        self.new_visitors += 1
        workspace = self.rng.choice(list(WORKSPACES))
        visitor = f"{self.tag}-n{self.new_visitors:04d}"
        user = f"user-{visitor}" if self.rng.random() < USER_SHARE else None
        self.known.append((workspace, visitor, user))
        return self.fresh(kind, workspace, visitor, user) or self.common(workspace, visitor, user)

    def measured(self, kind: str) -> dict[str, Any]:
        draw = self.rng.random()
        new_fact = draw >= self.profile.repeat_share + self.profile.new_visitor_share
        if draw < self.profile.repeat_share or (new_fact and kind == "identify"):
            if kind == "identify":
                return self.common(*self.rng.choice(self.known))
            return self.rng.choice(self.pool[kind])
        if new_fact:
            body = self.fresh(kind, *self.rng.choice(self.known))
            if body is not None:
                self.pool[kind].append(body)
                return body
        body = self.new_visitor(kind)
        self.pool[kind].append(body)
        return body


def generate_workload(name: str, seed: int = 7, tag: str = "run", batches: int = 30, batch_size: int = 10) -> Workload:
    """The named workload (``WORKLOADS``): ``mixed`` is ``generate``; ``steady`` and ``launch`` come with their
    ``warmup`` batches (to run first, unmeasured) and the expected outcome of the measured batches after them."""
    if name == "mixed":
        return generate(seed, tag, batches, batch_size)
    gen = _ProfileGenerator(seed, tag, PROFILES[name])
    warmup = gen.warmup(batch_size)
    facts: set[tuple[str, str, str]] = set()
    _expect(Workload("warmup"), warmup, facts)
    stream = [Batch(kind, [gen.measured(kind) for _ in range(batch_size)]) for kind in _kinds(gen.rng, batches)]
    workload = Workload(name, warmup=warmup)
    _expect(workload, stream, facts)
    return workload
