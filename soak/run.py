"""The soak: the local stack driven like a busy platform drives production, through crashes, a flapping Segment and
a connection changed mid-run; then every invariant is checked from what the sink received.

::

    from soak.run import SoakConfig, run_soak

    report = run_soak(SoakConfig(clients=50, requests=2000, seed=7), out=print)   # starts its own LocalStack
    print(report.format())
    report.ok                       # no violation, every queue drained, every request answered

Phases, each with its share of the requests; in ``load`` all clients send as fast as they are answered, the others
spread their requests over at least ``min_phase_s`` so that their trouble makers have time to act:

1. ``load``: only the clients (HTTP and SQS, ~40% repeats, both workspaces);
2. ``neighbour-quiet`` then ``neighbour-failing`` (``soak.tenants``), warm: the clients paced, and a third
   workspace, the neighbour, sending over HTTP; Segment takes its source, then refuses it (429, 401, 400 in turn).
   The healthy workspaces' p95 answer time with the failing neighbour must stay within 2 x the quiet one + 500 ms;
3. ``kills``: + a random worker process of an ingest function SIGKILLed every ``kill_every_s``;
4. ``flaky-segment``: + the sink alternating failing (503/500/429), slow (over the HTTP budget) and healthy;
5. ``everything``: kills + flapping + connection changes: ``demo`` moves to a new write key in the other region,
   ``demo-eu`` is disconnected for a while and reconnected.

Throughout, DynamoDB's eventually consistent reads may be stale (up to ``stale_lag_ms``, with
``stale_probability``); in the chaos phases (3-5) DynamoDB is also busy by turns (every ``flap_every_s``): a share
``dynamodb_throttle`` of its item calls throttled, ``dynamodb_unprocessed`` of each batch's entries unprocessed.

Then the sink is healthy, and the soak waits until every ingest queue is empty (visible, in flight and delayed:
``settle``), reads the sink's ``GET /events`` and the dead-letter queues, and runs ``soak.invariants.evaluate``.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import urllib3
from botocore.config import Config

from local_stack.stack import DEMO_WORKSPACES, LocalStack

from .chaos import DynamoDbFaults, Killer, SegmentFlapper, dynamodb_switch
from .clients import HttpProducer, QueueProducer, Tally
from .invariants import Connection, Evaluation, Kind, Parked, Request, evaluate
from .netstat import listen_overflows
from .tenants import FAILING, NEIGHBOUR, NEIGHBOUR_REGION, QUIET, Neighbour, NeighbourFaults, TenantFigures
from .workload import Job, Workload

INGEST_FUNCTIONS = ("IdentifyFunction", "AssignmentFunction", "ConversionFunction")
QUEUES: dict[Kind, str] = {
    "identify": "IdentifyQueue",
    "assignment": "AssignmentQueue",
    "conversion": "ConversionQueue",
}
PHASES = ("load", QUIET, FAILING, "kills", "flaky-segment", "everything")

Out = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Timings:
    """The template's timings, shortened so that crashes and outages resolve within seconds.

    The lease outlives an invocation (a live attempt keeps its claim), and a redelivered record finds the lease of
    the crashed invocation that received it expired (visibility timeout >= function timeout + lease).
    """

    function_timeout_s: float = 10.0  # template: 30
    lease_s: int = 12  # template: 90
    visibility_timeout_s: int = 24  # template: 180
    http_budget_s: float = 1.0  # template: 3
    connection_cache_s: int = 2  # template: 60
    max_receive_count: int = 5  # template: 1000 (a safety net); the soak parks after 5 receives

    def __post_init__(self) -> None:
        # As in the template: a lease outlives the invocation that took it, and a record comes back only once
        # the lease of the invocation that received it has expired (visibility >= function timeout + lease).
        if not self.function_timeout_s < self.lease_s <= self.visibility_timeout_s - self.function_timeout_s:
            raise ValueError(f"timings must keep function timeout < lease <= visibility - function timeout: {self}")

    @property
    def slow_segment_s(self) -> float:
        """How long the sink stalls in the slow mode: over the HTTP budget, within the SQS path's time."""
        return self.http_budget_s + 0.5


@dataclass(frozen=True, slots=True)
class SoakConfig:
    """What ``make soak`` / ``python -m soak`` runs (see ``--help``)."""

    clients: int = 50
    requests: int = 3000
    duration_s: float = 900.0  # cap on the driving time; phases stop early when it is reached
    seed: int | None = None
    repeat_share: float = 0.4
    queue_share: float = 0.3
    kill_every_s: tuple[float, float] = (0.5, 2.0)
    flap_every_s: tuple[float, float] = (1.0, 3.0)
    slow_segment: bool = True  # the flapping includes Segment slower than the HTTP budget
    min_phase_s: float = 20.0  # the chaos phases spread their requests over at least this long (load: no pacing)
    settle_timeout_s: float = 300.0
    max_workers: int = 3  # execution environments per function
    stale_lag_ms: float = 1000.0  # eventually consistent reads may answer an item as it was this long ago (0: never)
    stale_probability: float = 0.5  # ... this often (per partition and read)
    dynamodb_throttle: float = 0.02  # in the chaos phases, while DynamoDB is busy: share of item calls throttled
    dynamodb_unprocessed: float = 0.05  # ... and share of each batch's entries left unprocessed (0 and 0: never busy)
    timings: Timings = field(default_factory=Timings)
    stack_log: Out | None = None  # the local stack's own log lines (a line per request), or nothing


QUICK_TIMINGS = Timings(
    function_timeout_s=5.0, lease_s=6, visibility_timeout_s=11, http_budget_s=0.6, connection_cache_s=1
)


def quick_config(**overrides: Any) -> SoakConfig:
    """A soak of under a minute (what ``make test`` runs): every phase, shorter timings and periods."""
    quick: dict[str, Any] = {
        "requests": 320,
        "duration_s": 30.0,
        "kill_every_s": (0.4, 1.2),
        "flap_every_s": (0.6, 1.4),
        "min_phase_s": 5.0,
        "settle_timeout_s": 45.0,
        "timings": QUICK_TIMINGS,
    }
    return SoakConfig(**(quick | overrides))


@dataclass(slots=True)
class SoakReport:
    """Everything a soak run measured, and the evaluator's verdict."""

    seed: int
    config: SoakConfig
    requests: list[Request] = field(default_factory=list)
    repeats_sent: int = 0
    paths: Counter[str] = field(default_factory=Counter)
    tally: Tally = field(default_factory=Tally)
    phase_s: dict[str, float] = field(default_factory=dict)
    phase_requests: dict[str, int] = field(default_factory=dict)
    kills: Counter[str] = field(default_factory=Counter)
    segment_periods: Counter[str] = field(default_factory=Counter)
    dynamodb_periods: Counter[str] = field(default_factory=Counter)
    dynamodb_counters: dict[str, int] = field(default_factory=dict)  # the engine's: stale reads, throttled, ...
    connection_changes: list[str] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    settle_s: float | None = None  # None: the queues did not drain in time
    parked_reasons: Counter[str] = field(default_factory=Counter)
    sink_requests: Counter[int] = field(default_factory=Counter)
    listen_overflows: int | None = None
    errors: list[str] = field(default_factory=list)  # the soak's own failures (a chaos step, a connection change)
    sink_events: list[dict[str, Any]] = field(default_factory=list)
    parked: list[Parked] = field(default_factory=list)
    evaluation: Evaluation = field(default_factory=Evaluation)
    wall_s: float = 0.0
    phase_windows: dict[str, tuple[float, float]] = field(default_factory=dict)  # the run's clock
    neighbour_requests: list[Request] = field(default_factory=list)
    neighbour_periods: Counter[str] = field(default_factory=Counter)

    @property
    def tenants(self) -> TenantFigures:
        """The healthy workspaces' answer times with a quiet and with a failing neighbour."""
        return TenantFigures.of(self.requests, self.phase_windows, self.neighbour_requests)

    def evidence(self) -> dict[str, Any]:
        """The evaluator's whole input as JSON-ready data (``soak.evidence`` writes and re-reads it)."""
        return {
            "seed": self.seed,
            "cache_s": self.config.timings.connection_cache_s,
            "requests": [asdict(r) for r in self.requests + self.neighbour_requests],
            "sink_events": self.sink_events,
            "connections": [asdict(c) for c in self.connections],
            "parked": [asdict(p) for p in self.parked],
            "crashed": self.crashed,
        }

    @property
    def crashed(self) -> list[Kind]:
        """The kinds whose function had a worker killed (SQS may park their records without a reason)."""
        return [kind for kind, queue in QUEUES.items() if self.kills[queue.replace("Queue", "Function")]]

    @property
    def write_keys(self) -> list[str]:
        """Every write key of the run (for leak checks; never printed)."""
        return sorted({c.write_key for c in self.connections if c.write_key})

    @property
    def ok(self) -> bool:
        """No violation, the queues drained, every request got an answer below 500 or reached its queue."""
        answered = not self.tally.outcomes.get("failed")
        isolated = self.tenants.ok
        return self.evaluation.ok and self.settle_s is not None and answered and not self.errors and isolated

    def format(self, max_violations: int = 40) -> str:
        """The report as printed by ``make soak``."""
        t, ev = self.tally, self.evaluation
        lines = [
            f"Soak report (seed {self.seed}, {self.config.clients} clients, {self.config.requests} requests planned, "
            f"{self.config.max_workers} workers per function)",
            "  phases        "
            + ", ".join(f"{p} {self.phase_s.get(p, 0):.1f}s/{self.phase_requests.get(p, 0)} req" for p in PHASES),
            f"  requests      {len(self.requests)} ({self.paths['http']} HTTP, {self.paths['sqs']} SQS), "
            f"{self.repeats_sent} repeats of an earlier body",
            "  answers      " + _counts(t.http_statuses) + "   (every HTTP attempt)",
            "  outcomes     " + _counts(t.outcomes),
            f"  transport     {t.transport_errors.total()} errors{_counts(t.transport_errors, '')}; "
            f"{t.retries} retries; kernel ListenOverflows +{self.listen_overflows}",
            f"  kills         {self.kills.total()} SIGKILL{_counts(self.kills, '')}",
            f"  segment      {_counts(self.segment_periods)} periods; sink answered{_counts(self.sink_requests)}",
            f"  dynamodb     {_counts(self.dynamodb_periods)} periods; engine{_counts(Counter(self.dynamodb_counters))}"
            f" (stale reads up to {self.config.stale_lag_ms:g} ms, p {self.config.stale_probability:g})",
            f"  neighbour     {len(self.neighbour_requests)} requests{_counts(self.neighbour_periods, '')}",
            f"  tenants       {self.tenants.format()}",
            "  connections   " + ("; ".join(self.connection_changes) or "unchanged"),
            "  settle        "
            + (f"{self.settle_s:.1f}s until every queue was empty" if self.settle_s is not None else "NOT DRAINED"),
            f"  deliveries    {ev.deliveries} records, {ev.message_ids} messageIds, {ev.repeats} repeats",
            f"  facts         {ev.facts_required} required, {ev.facts_optional} optional (parked, possibly skipped "
            "or never accepted)",
            f"  parked        {ev.parked}, {ev.parked_with_reason} with a reason{_counts(self.parked_reasons, '')}"
            + (f", {ev.parked_by_sqs} moved by SQS after a killed last receive" if ev.parked_by_sqs else ""),
            f"  violations    {len(ev.violations)}{_counts(Counter(ev.by_rule()), '')}",
            f"  wall time     {self.wall_s:.1f}s",
        ]
        lines += [f"  SOAK ERROR    {error}" for error in self.errors]
        for violation in ev.violations[:max_violations]:
            lines.append(f"    {violation}")
        if len(ev.violations) > max_violations:
            lines.append(f"    ... and {len(ev.violations) - max_violations} more")
        lines.append("PASS" if self.ok else "FAIL")
        return "\n".join(lines)


def _counts(counter: Counter[Any], empty: str = "none") -> str:
    """`` (a: 1, b: 2)`` (with its leading space), or ``empty``."""
    if not counter:
        return empty
    return " (" + ", ".join(f"{key}: {count}" for key, count in sorted(counter.items(), key=str)) + ")"


class _Dispatcher:
    """Hands the clients their jobs, one phase at a time."""

    def __init__(self, workload: Workload) -> None:
        self._workload = workload
        self._cond = threading.Condition()
        self._left = 0
        self._busy = 0
        self._finished = False
        self.taken = 0  # jobs handed out in the current phase
        self._reserved = 0  # jobs promised to a client (it may still wait for the job's paced start)
        self.in_phase = False
        self._phase_start = 0.0
        self._interval_s = 0.0  # pacing: job n of a phase starts n intervals after the phase began

    def take(self) -> Job | None:
        """The next job (not before its paced start); blocks between phases; None when the run is over."""
        with self._cond:
            self._cond.wait_for(lambda: self._left > 0 or self._finished)
            if self._finished:
                return None
            self._left -= 1
            self._busy += 1
            self._reserved += 1
            not_before = self._phase_start + self._reserved * self._interval_s
        time.sleep(max(not_before - time.monotonic(), 0))
        with self._cond:
            self.taken += 1
        return self._workload.next_job(datetime.now(UTC))

    def done(self) -> None:
        """A job was answered."""
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def run_phase(self, budget: int, deadline: float, spread_s: float = 0.0) -> None:
        """Hand out ``budget`` jobs over at least ``spread_s``; return once they are answered and ``spread_s`` is
        over (at ``deadline`` no more jobs are handed out; those out are waited for)."""
        with self._cond:
            self.taken, self._reserved, self._left, self.in_phase = 0, 0, budget, True
            self._phase_start, self._interval_s = time.monotonic(), spread_s / max(budget, 1)
            self._cond.notify_all()
            left_s = max(deadline - time.monotonic(), 0)
            self._cond.wait_for(lambda: self._left == 0 and self._busy == 0, timeout=left_s)
            self._left = 0
            self._cond.wait_for(lambda: self._busy == 0)
            self.in_phase = False
        time.sleep(max(self._phase_start + spread_s - time.monotonic(), 0))

    def finish(self) -> None:
        """No more jobs: every waiting client gets None."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()


class _Run:
    """One soak over one started LocalStack."""

    def __init__(self, stack: LocalStack, config: SoakConfig, seed: int, out: Out) -> None:
        self.stack = stack
        self.config = config
        self.out = out
        self.rng = random.Random(seed)
        self.started = time.monotonic()
        self.report = SoakReport(seed=seed, config=config)
        self.lock = threading.Lock()
        self.dispatcher = _Dispatcher(
            Workload(random.Random(seed), repeat_share=config.repeat_share, queue_share=config.queue_share)
        )
        self.http = HttpProducer(stack.api_url, stack.token, Tally(), self.clock, random.Random(seed + 1))
        self.neighbour = Neighbour(stack.api_url, stack.token, self.clock, random.Random(seed + 2))

    def clock(self) -> float:
        """Seconds since the run began (requests, answers and connection changes share it)."""
        return time.monotonic() - self.started

    # -- clients ---------------------------------------------------------------------------------------------

    def client(self, index: int) -> None:
        rng = random.Random(f"{self.report.seed}-{index}")
        http = HttpProducer(self.stack.api_url, self.stack.token, self.report.tally, self.clock, rng)
        sqs = self.stack.client("sqs", config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=20))
        urls = {kind: self.stack.queue_url(queue) for kind, queue in QUEUES.items()}
        queue = QueueProducer(sqs, urls, self.report.tally, self.clock, rng)
        while (job := self.dispatcher.take()) is not None:
            try:
                request = (http if job.path == "http" else queue).send(job)
            finally:
                self.dispatcher.done()
            with self.lock:
                self.report.requests.append(request)
                self.report.paths[job.path] += 1
                self.report.repeats_sent += job.repeat

    # -- phases ----------------------------------------------------------------------------------------------

    def run(self) -> SoakReport:
        config, report = self.config, self.report
        report.connections = [
            Connection(workspace, self.stack.write_key(workspace), region)
            for workspace, region in self.stack.connected_workspaces().items()
        ]
        self.connect_neighbour()
        overflows_before = listen_overflows()
        dynamodb_switch(
            self.stack.aws_endpoint,
            {
                "stale_reads": {"lag_ms": config.stale_lag_ms, "probability": config.stale_probability},
                "faults": {"throttle": 0, "unprocessed": 0},
                "reset_counters": True,
            },
        )
        clients = [
            threading.Thread(target=self.client, args=(i,), name=f"soak-client-{i}", daemon=True)
            for i in range(config.clients)
        ]
        for thread in clients:
            thread.start()
        end_of_driving = time.monotonic() + config.duration_s
        budgets = _split(config.requests, len(PHASES))
        try:
            for index, (phase, budget) in enumerate(zip(PHASES, budgets, strict=True)):
                began = time.monotonic()
                phase_end = began + (end_of_driving - began) / (len(PHASES) - index)  # a fair share of the time left
                self.out(f"soak: phase {phase}: {budget} requests ...")
                spread_s = 0.0 if phase == "load" else config.min_phase_s
                window_start = self.clock()
                with self.chaos(phase):
                    self.dispatcher.run_phase(budget, max(phase_end, began + spread_s), spread_s)
                report.phase_windows[phase] = (window_start, self.clock())
                report.phase_s[phase] = time.monotonic() - began
                report.phase_requests[phase] = self.dispatcher.taken
        finally:
            self.dispatcher.finish()
            for thread in clients:
                thread.join(timeout=120)
        self.out("soak: settling (waiting for every queue to drain) ...")
        report.settle_s = self.settle()
        report.listen_overflows = _delta(overflows_before, listen_overflows())
        self.out("soak: evaluating ...")
        report.parked = self.parked()
        report.sink_requests = Counter(r["status"] for r in self._get_json("/requests"))
        engine = dynamodb_switch(self.stack.aws_endpoint)["counters"]
        report.dynamodb_counters = dict(engine) if isinstance(engine, dict) else {}
        report.sink_events = self._get_json("/events")
        report.evaluation = evaluate(
            report.requests + report.neighbour_requests,
            report.sink_events,
            report.connections,
            report.parked,
            cache_s=config.timings.connection_cache_s,
            crashed=report.crashed,
        )
        return report

    @contextlib.contextmanager
    def chaos(self, phase: str) -> Iterator[None]:
        """Start the phase's trouble makers; stop them (and leave the sink healthy) when it ends."""
        config, rng = self.config, self.rng
        killer = flapper = changer = busy = neighbour_faults = None
        if phase not in ("load", QUIET, FAILING) and (config.dynamodb_throttle or config.dynamodb_unprocessed):
            busy = DynamoDbFaults(
                self.stack.aws_endpoint,
                random.Random(rng.random()),
                config.flap_every_s,
                throttle=config.dynamodb_throttle,
                unprocessed=config.dynamodb_unprocessed,
            )
            busy.start()
        if phase in (QUIET, FAILING):
            self.neighbour.start()
        if phase == FAILING:
            neighbour_faults = NeighbourFaults(
                self.stack.sink.url, self.neighbour.write_key, random.Random(rng.random()), config.flap_every_s
            )
            neighbour_faults.start()
        if phase in ("kills", "everything"):
            killer = Killer(self.stack.worker_pids, INGEST_FUNCTIONS, random.Random(rng.random()), config.kill_every_s)
            killer.start()
        if phase in ("flaky-segment", "everything"):
            slow = config.timings.slow_segment_s if config.slow_segment else None
            flapper = SegmentFlapper(self.stack.sink.url, random.Random(rng.random()), config.flap_every_s, slow)
            flapper.start()
        if phase == "everything":
            changer = threading.Thread(target=self.changing_connections, name="soak-connections", daemon=True)
            changer.start()
        try:
            yield
        finally:
            if neighbour_faults is not None:
                neighbour_faults.stop()
                self.report.neighbour_periods += neighbour_faults.periods
                self.report.errors += neighbour_faults.errors
            if phase in (QUIET, FAILING):
                self.neighbour.stop()
                self.report.neighbour_requests = list(self.neighbour.requests)
            if changer is not None:
                changer.join()
            if killer is not None:
                killer.stop()
                self.report.kills += killer.kills
                self.report.errors += killer.errors
            if flapper is not None:
                flapper.stop()
                self.report.segment_periods += flapper.periods
                self.report.errors += flapper.errors
            if busy is not None:
                busy.stop()
                self.report.dynamodb_periods += busy.periods
                self.report.errors += busy.errors

    def changing_connections(self) -> None:
        """``change_connections`` in a thread: a failure is reported, not lost with the thread."""
        try:
            self.change_connections()
        except Exception as exc:
            self.report.errors.append(f"connection change: {type(exc).__name__}: {exc}")

    def change_connections(self) -> None:
        """``demo`` to a new key in the other region at once; ``demo-eu`` off at 1/3 of the phase, on at 2/3."""
        budget = self.config.requests // len(PHASES)
        demo_region = "eu" if DEMO_WORKSPACES["demo"] == "us" else "us"
        self.connect("demo", f"soak-{secrets.token_hex(8)}", demo_region)
        self.wait_for_jobs(budget // 3)
        sent_at = self.clock()
        status, _body = self.http.request("DELETE", "/v1/workspaces/demo-eu/segment")
        if status != 204:
            raise RuntimeError(f"disconnecting demo-eu answered {status}")
        self.report.connections.append(Connection("demo-eu", None, None, at=sent_at))
        self.report.connection_changes.append(f"demo-eu disconnected at {sent_at:.1f}s")
        self.wait_for_jobs(2 * budget // 3)
        self.connect("demo-eu", self.stack.write_key("demo-eu"), DEMO_WORKSPACES["demo-eu"])

    def connect_neighbour(self) -> None:
        """Connect the neighbour workspace before the run (not a connection change of the run)."""
        key = self.neighbour.write_key
        status, _answer = self.http.request(
            "PUT", f"/v1/workspaces/{NEIGHBOUR}/segment", {"write_key": key, "region": NEIGHBOUR_REGION}
        )
        if status != 200:
            raise RuntimeError(f"connecting {NEIGHBOUR} answered {status}")
        self.report.connections.append(Connection(NEIGHBOUR, key, NEIGHBOUR_REGION, at=self.clock()))

    def connect(self, workspace: str, write_key: str, region: str) -> None:
        """PUT the connection; it counts from the answer (the latest moment it can take effect)."""
        body = {"write_key": write_key, "region": region}
        status, _answer = self.http.request("PUT", f"/v1/workspaces/{workspace}/segment", body)
        if status != 200:
            raise RuntimeError(f"connecting {workspace} answered {status}")
        at = self.clock()
        self.report.connections.append(Connection(workspace, write_key, region, at=at))
        self.report.connection_changes.append(f"{workspace} connected ({region}, key …{write_key[-4:]}) at {at:.1f}s")

    def wait_for_jobs(self, count: int) -> None:
        """Until ``count`` jobs of the phase were handed out, or the phase is over."""
        while self.dispatcher.taken < count and self.dispatcher.in_phase:
            time.sleep(0.05)

    # -- after the load --------------------------------------------------------------------------------------

    def settle(self) -> float | None:
        """Seconds until every ingest queue is empty twice in a row, or None at the timeout."""
        began = time.monotonic()
        sqs = self.stack.client("sqs")
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        names.append("ApproximateNumberOfMessagesDelayed")
        empty_in_a_row = 0
        while time.monotonic() - began < self.config.settle_timeout_s:
            depth = 0
            for queue in QUEUES.values():
                attributes = sqs.get_queue_attributes(QueueUrl=self.stack.queue_url(queue), AttributeNames=names)
                depth += sum(int(v) for v in attributes["Attributes"].values())
            empty_in_a_row = empty_in_a_row + 1 if depth == 0 else 0
            if empty_in_a_row >= 2:
                return time.monotonic() - began
            time.sleep(0.5)
        return None

    def parked(self) -> list[Parked]:
        """Every record of the dead-letter queues, with its message attributes."""
        sqs = self.stack.client("sqs")
        found: list[Parked] = []
        for kind, queue in QUEUES.items():
            url = self.stack.dlq_url(queue)
            while messages := sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"]
            ).get("Messages", []):
                for message in messages:
                    attributes = {k: v.get("StringValue", "") for k, v in message.get("MessageAttributes", {}).items()}
                    found.append(Parked(kind, message["Body"], attributes))
                    self.report.parked_reasons[attributes.get("error_code", "no reason")] += 1
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return found

    def _get_json(self, path: str) -> Any:
        answer = urllib3.request("GET", self.stack.sink.url + path, timeout=60)
        return json.loads(answer.data)


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _delta(before: int | None, after: int | None) -> int | None:
    return None if before is None or after is None else after - before


def stack_for(config: SoakConfig) -> LocalStack:
    """The LocalStack a soak runs on (free ports, a random token, the soak's timings)."""
    timings = config.timings
    return LocalStack(
        api_port=0,
        sink_port=0,
        aws_port=0,
        token=f"soak-{secrets.token_hex(8)}",
        parameters={
            # with a log: the line of every event that did not go well
            "ApplicationLogLevel": "INFO" if config.stack_log else "WARN",
            "HttpDeliveryBudgetSeconds": str(timings.http_budget_s),
            "ConnectionCacheSeconds": str(timings.connection_cache_s),
            "MaxReceiveCount": str(timings.max_receive_count),
        },
        environment={"LEASE_SECONDS": str(timings.lease_s)},
        visibility_timeout_s=timings.visibility_timeout_s,
        function_timeout_s=timings.function_timeout_s,
        max_workers=config.max_workers,
        log=config.stack_log,
        function_logs=config.stack_log is not None,
    )


def run_soak(config: SoakConfig, out: Out = print) -> SoakReport:
    """Start a LocalStack, soak it, stop it; the report (``report.ok`` tells whether it passed)."""
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(1_000_000)
    began = time.monotonic()
    out(f"soak: starting the local stack (seed {seed}) ...")
    with stack_for(config) as stack:
        report = _Run(stack, config, seed, out).run()
    report.wall_s = time.monotonic() - began
    return report
